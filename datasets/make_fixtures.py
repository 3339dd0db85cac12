"""Write the tiny test fixtures under ``datasets/fixtures/`` (deterministic; outputs are in git).

    python datasets/make_fixtures.py

- ``voc_mini/VOC2007/``: 4 JPEGs (landscape, portrait, square), VOC XML with a
  multi-object image and one ``difficult`` box, ``ImageSets/Main/{trainval,test}.txt``.
- ``coco_mini/``: ``annotations.json`` with non-contiguous category ids listed out of
  order, one ``iscrowd`` box, an image without annotations, plus 4 PNGs.

Objects are flat rectangles and ellipses on a plain background, drawn so that each
annotated box is exactly the drawn extent: VOC's 1-based inclusive ``xmin..xmax`` covers
0-based pixels ``xmin - 1 .. xmax - 1``; COCO's ``[x, y, w, h]`` covers pixels
``x .. x + w - 1``.
"""
import json
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"

# (image id, (width, height), background, [(class, xmin, ymin, xmax, ymax, difficult, shape, colour)])
# VOC coordinates: 1-based, inclusive.
VOC_IMAGES = [
    ("000001", (120, 80), (200, 210, 220), [
        ("person", 10, 12, 40, 70, 0, "rect", (200, 30, 30)),
        ("dog", 50, 40, 100, 75, 0, "ellipse", (30, 120, 30)),
        ("car", 90, 5, 115, 30, 1, "rect", (30, 30, 180)),
    ]),
    ("000002", (64, 96), (90, 90, 90), [
        ("cat", 8, 20, 56, 90, 0, "ellipse", (240, 200, 40)),
    ]),
    ("000003", (100, 72), (240, 240, 230), [
        ("person", 5, 5, 30, 60, 0, "rect", (150, 40, 150)),
        ("bicycle", 40, 30, 95, 70, 0, "rect", (20, 160, 200)),
    ]),
    ("000004", (80, 80), (30, 60, 90), [
        ("dog", 20, 15, 60, 70, 0, "ellipse", (220, 120, 40)),
    ]),
]
VOC_SPLITS = {"trainval": ["000001", "000002", "000003"], "test": ["000004"]}

COCO_CATEGORIES = [  # deliberately unsorted and with gaps
    {"id": 11, "name": "kite", "supercategory": "sports"},
    {"id": 2, "name": "bicycle", "supercategory": "vehicle"},
    {"id": 5, "name": "bus", "supercategory": "vehicle"},
]
# (image id, file name, (width, height), background, [(ann id, cat id, [x, y, w, h], iscrowd)])
COCO_IMAGES = [
    (7, "a.png", (64, 48), (210, 220, 230), [(101, 2, [4, 6, 20, 30], 0),
                                            (102, 11, [30, 10, 30, 20], 0)]),
    (3, "b.png", (48, 64), (60, 60, 60), [(103, 5, [10, 8, 28, 40], 0),
                                          (104, 2, [0, 50, 48, 14], 1)]),
    (12, "sub/c.png", (40, 40), (240, 230, 200), [(105, 11, [5, 5, 30, 30], 0)]),
    (20, "d.png", (32, 24), (100, 150, 200), []),
]
COCO_COLOURS = {2: (200, 30, 30), 5: (30, 30, 200), 11: (30, 160, 30)}


def draw(size, background, shapes):
    """An RGB image of ``size`` with filled shapes; each ``(x0, y0, x1, y1)`` inclusive."""
    image = Image.new("RGB", size, background)
    d = ImageDraw.Draw(image)
    for kind, box, colour in shapes:
        (d.rectangle if kind == "rect" else d.ellipse)(box, fill=colour)
    return image


def make_voc(root):
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for image_id, (w, h), background, objects in VOC_IMAGES:
        shapes = [(kind, (x0 - 1, y0 - 1, x1 - 1, y1 - 1), colour)
                  for _, x0, y0, x1, y1, _, kind, colour in objects]
        draw((w, h), background, shapes).save(root / "JPEGImages" / f"{image_id}.jpg",
                                              quality=80, optimize=True)
        xml = [
            "<annotation>",
            "\t<folder>VOC2007</folder>",
            f"\t<filename>{image_id}.jpg</filename>",
            "\t<source><database>frcnn fixtures</database></source>",
            f"\t<size><width>{w}</width><height>{h}</height><depth>3</depth></size>",
            "\t<segmented>0</segmented>",
        ]
        for name, x0, y0, x1, y1, difficult, _, _ in objects:
            xml += [
                "\t<object>",
                f"\t\t<name>{name}</name>",
                "\t\t<pose>Unspecified</pose>",
                "\t\t<truncated>0</truncated>",
                f"\t\t<difficult>{difficult}</difficult>",
                f"\t\t<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
                f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>",
                "\t</object>",
            ]
        xml.append("</annotation>")
        (root / "Annotations" / f"{image_id}.xml").write_text("\n".join(xml) + "\n")
    for split, ids in VOC_SPLITS.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")


def make_coco(root):
    images, annotations = [], []
    for image_id, file_name, (w, h), background, anns in COCO_IMAGES:
        path = root / "images" / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        shapes = [("rect", (x, y, x + bw - 1, y + bh - 1), COCO_COLOURS[cat])
                  for _, cat, (x, y, bw, bh), _ in anns]
        draw((w, h), background, shapes).save(path, optimize=True)
        images.append({"id": image_id, "file_name": file_name, "width": w, "height": h})
        for ann_id, cat, (x, y, bw, bh), crowd in anns:
            annotations.append({
                "id": ann_id, "image_id": image_id, "category_id": cat,
                "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": crowd,
                "segmentation": [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]],
            })
    dataset = {"info": {"description": "frcnn coco_mini fixture"}, "licenses": [],
               "images": images, "annotations": annotations, "categories": COCO_CATEGORIES}
    (root / "annotations.json").write_text(json.dumps(dataset, indent=1) + "\n")


if __name__ == "__main__":
    make_voc(FIXTURES / "voc_mini" / "VOC2007")
    make_coco(FIXTURES / "coco_mini")
    print(f"fixtures written under {FIXTURES}")
