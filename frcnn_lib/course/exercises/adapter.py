"""Check of the dataset-adapter exercise: COCO annotations to training targets.

Source of truth: :func:`frcnn_lib.datasets.coco.load` on the same annotations written to a
temporary file: one record per image, sorted by image id; ``[x, y, w, h]`` becomes xyxy,
clipped to the image; category ids, sorted, become labels ``1..K``; ``iscrowd`` boxes are
not training targets.
Shape glossary: ``G`` boxes of one image.
"""
import copy
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np

from frcnn_lib.datasets import coco as coco_reader
from frcnn_lib.course.exercises._report import as_array, call, checker, fail, passed


def coco_to_targets(coco):
    """The library's answer in the exercise's signature: ``[{"boxes": (G, 4), "labels": (G,)},
    ...]``, one per image in image-id order, by :func:`frcnn_lib.datasets.coco.load`."""
    return _targets_reference(coco)


def _targets_reference(coco):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "instances.json"
        path.write_text(json.dumps(coco))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = coco_reader.load(path, tmp, check_files=False)
    return [{"boxes": r.boxes, "labels": r.labels} for r in data.records]


def _targets_np(coco, xywh=False, raw_ids=False, zero_based=False, file_order=False,
                keep_crowd=False, clip=True):
    images = list(coco["images"]) if file_order else sorted(coco["images"], key=lambda i: i["id"])
    cats = sorted(c["id"] for c in coco["categories"])
    label_of = {c: (c if raw_ids else i + (0 if zero_based else 1)) for i, c in enumerate(cats)}
    out = []
    for info in images:
        boxes, labels = [], []
        for ann in coco["annotations"]:
            if ann["image_id"] != info["id"] or (ann.get("iscrowd", 0) and not keep_crowd):
                continue
            x, y, w, h = ann["bbox"]
            b = np.array([x, y, w, h] if xywh else [x, y, x + w, y + h], np.float64)
            if clip:
                b = np.clip(b, 0, [info["width"], info["height"]] * 2)
            if b[2] <= b[0] or b[3] <= b[1]:
                continue
            boxes.append(b)
            labels.append(label_of[ann["category_id"]])
        out.append({"boxes": np.array(boxes).reshape(-1, 4), "labels": np.array(labels)})
    return out


_ADAPTER_VARIANTS = [
    ("the boxes are still [x, y, w, h]: COCO's bbox is the top-left corner and the size, so "
     "x2 = x + w, y2 = y + h.", lambda c: _targets_np(c, xywh=True)),
    ("the labels are COCO's category ids: renumber the sorted ids to 1..K (COCO's ids have gaps; "
     "the model's classes are consecutive).", lambda c: _targets_np(c, raw_ids=True)),
    ("the labels start at 0: 0 is background, object classes are 1..K.",
     lambda c: _targets_np(c, zero_based=True)),
    ("the images are in file order: sort them by image id.", lambda c: _targets_np(c, file_order=True)),
    ("you kept the iscrowd boxes as training targets: leave out annotations with iscrowd = 1 (they "
     "mark a crowd region, not one object).", lambda c: _targets_np(c, keep_crowd=True)),
    ("a box sticking out of its image is not clipped: clip x to [0, width] and y to "
     "[0, height], and drop boxes left with no area.", lambda c: _targets_np(c, clip=False)),
]


def _canonical(targets):
    """A list of ``(G, 5)`` [label, x1, y1, x2, y2] arrays, rows sorted; None if malformed."""
    try:
        out = []
        for t in targets:
            boxes = as_array(t["boxes"]).reshape(-1, 4)
            labels = as_array(t["labels"]).reshape(-1, 1)
            rows = np.concatenate([labels, boxes], axis=1)
            out.append(rows[np.lexsort(rows.T[::-1])] if len(rows) else rows)
        return out
    except Exception:  # noqa: BLE001 -- anything the learner returned
        return None


def _first_difference(expected, got):
    """None if equal, else ``(image_index, reason)``."""
    if got is None:
        return 0, "expected a list of dicts with 'boxes' (G, 4) and 'labels' (G,)"
    if len(got) != len(expected):
        return 0, f"expected {len(expected)} images, got {len(got)}"
    for i, (e, g) in enumerate(zip(expected, got)):
        if e.shape != g.shape:
            return i, f"image {i}: expected {len(e)} boxes, got {len(g)}"
        if not np.allclose(e, g, atol=1e-3):
            return i, f"image {i}: labels or boxes differ"
    return None


def _example(num_images=2, seed=0, crowd=False, outside=False, shuffled=False):
    rng = np.random.default_rng(seed)
    cats = [{"id": 3, "name": "cat"}, {"id": 17, "name": "dog"}, {"id": 60, "name": "bird"}]
    images = [{"id": 10 + 5 * i, "file_name": f"img{i}.png", "width": 120, "height": 90}
              for i in range(num_images)]
    if shuffled:
        images = images[::-1]
    anns, k = [], 1
    for info in images:
        for _ in range(int(rng.integers(1, 4))):
            x, y = rng.uniform(0, 60), rng.uniform(0, 40)
            anns.append({"id": k, "image_id": info["id"], "iscrowd": 0, "area": 1.0,
                         "category_id": int(rng.choice([3, 17, 60])),
                         "bbox": [round(x, 1), round(y, 1), round(rng.uniform(5, 50), 1),
                                  round(rng.uniform(5, 40), 1)]})
            k += 1
    if crowd:
        anns.append({"id": k, "image_id": images[0]["id"], "iscrowd": 1, "area": 1.0,
                     "category_id": 17, "bbox": [5.0, 5.0, 30.0, 20.0]})
        k += 1
    if outside:
        anns.append({"id": k, "image_id": images[0]["id"], "iscrowd": 0, "area": 1.0,
                     "category_id": 60, "bbox": [100.0, 70.0, 40.0, 30.0]})
    return {"images": images, "annotations": anns, "categories": cats}


@checker("coco_to_targets", reference=coco_to_targets, library=coco_reader.load)
def check_coco_to_targets(fn):
    """Check ``fn(coco: dict) -> [{"boxes": (G, 4) xyxy, "labels": (G,)}, ...]``, one per image
    in image-id order (the order of boxes within an image does not matter)."""
    title = "coco_to_targets"
    cases = [
        ("one image, one box", {"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 80}],
                                "annotations": [{"id": 1, "image_id": 1, "iscrowd": 0, "area": 600.0,
                                                 "category_id": 17, "bbox": [10.0, 20.0, 30.0, 25.0]}],
                                "categories": [{"id": 3, "name": "cat"}, {"id": 17, "name": "dog"}]}),
        ("three images listed out of id order (seeded)", _example(3, seed=1, shuffled=True)),
        ("a crowd region among the boxes", _example(2, seed=2, crowd=True)),
        ("a box sticking out of its image", _example(2, seed=3, outside=True)),
    ]
    for case, coco in cases:
        expected = _canonical(_targets_reference(coco))
        got_raw = call(title, case, fn, copy.deepcopy(coco))
        got = _canonical(got_raw) if isinstance(got_raw, (list, tuple)) else None
        diff = _first_difference(expected, got)
        if diff is None:
            continue
        index, reason = diff
        hint = None
        for text, variant in _ADAPTER_VARIANTS:
            if got is not None and _first_difference(_canonical(variant(coco)), got) is None:
                hint = text
                break
        show = (lambda t: t[index] if t is not None and index < len(t) else t)
        fail(title, case, reason, show(expected), show(got), hint or
             "per image (sorted by id): boxes [x, y, x + w, y + h] clipped to the image, labels "
             "1..K in sorted category-id order, no iscrowd boxes.",
             {"images": [i["id"] for i in coco["images"]],
              "categories": [c["id"] for c in coco["categories"]]})
    return passed(title, f"{len(cases)} cases agree with frcnn_lib.datasets.coco.load ("
                  + ", ".join(c for c, _ in cases) + "); rows shown as [label, x1, y1, x2, y2]")
