"""Pascal VOC: a VOCdevkit year folder (``Annotations/``, ``ImageSets/Main/``, ``JPEGImages/``).

Shape glossary: ``n`` objects of one image.

Coordinates: VOC stores 1-based inclusive pixel indices.  They become continuous xyxy with
``(xmin - 1, ymin - 1, xmax, ymax)``, so that IoU on the converted boxes equals the VOC
devkit's ``+1`` IoU on the raw ones.  ``difficult`` is kept (evaluation ignores those
boxes; the pipeline leaves them out of training by default).

Rules for bad annotations (every error is a FrcnnError naming the file and field):

- XML is parsed with ``defusedxml``: entity declarations (billion laughs), external
  entities and DTD tricks raise FrcnnError; so does malformed XML.
- Required per object: ``name`` (one of ``class_names``) and ``bndbox`` with numeric,
  finite ``xmin ymin xmax ymax``.  ``difficult`` is optional (default 0) but must be 0/1.
- ``size/width`` and ``size/height`` are optional: if missing or 0 the image header is
  read instead (some tools write 0); if present they must be positive integers.
- ``filename`` is optional (default ``<id>.jpg``) and is resolved under ``JPEGImages/``;
  an absolute path or a ``..`` component is refused.  Image ids from the ImageSets file
  must be plain names.
- A box sticking out of the image is clipped to it and a box of zero or negative size
  (after clipping) is dropped; both with a ``warnings.warn`` naming the file and box.
- Every referenced image must exist (checked at load time).
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as DET
import numpy as np
from defusedxml import DefusedXmlException

from frcnn_lib.datasets.imageio import image_size
from frcnn_lib.datasets.records import DetectionData, ImageRecord, file_exists, safe_join
from frcnn_lib.runtime.errors import FrcnnError

CLASS_NAMES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]


def load(root, split="trainval", class_names=None, check_files=True) -> DetectionData:
    """Read the images listed in ``root/ImageSets/Main/{split}.txt``.

    Args:
      root: a VOCdevkit year folder, e.g. ``datasets/data/VOCdevkit/VOC2007``.
      split: ``"train"``, ``"val"``, ``"trainval"``, ``"test"`` or any list in ImageSets/Main.
      class_names: the classes in label order (default: the 20 VOC classes), or
        ``"auto"``: the sorted unique object names of the split's annotations (see
        :func:`annotation_class_names`; for Pascal VOC itself that is the 20 classes in
        the same order).  A custom dataset in VOC layout needs one of the two: with the
        default, an object name outside the 20 VOC classes raises FrcnnError naming
        ``class_names="auto"``.  (Not read from the annotations silently: a split that
        lacks a class would then number the others differently from another split.)
      check_files: check at load time that every image file exists.

    Returns:
      DetectionData with one record per listed image, in list order.
    """
    root = Path(root)
    defaulted = class_names is None
    if isinstance(class_names, str) and class_names == "auto":
        class_names = annotation_class_names(root, split)
    class_names = list(CLASS_NAMES if class_names is None else class_names)
    if not class_names or len(set(class_names)) != len(class_names):
        raise FrcnnError(f"{root}: class names {class_names!r}: expected a non-empty list without duplicates")
    label_of = {name: i + 1 for i, name in enumerate(class_names)}
    if not root.is_dir():
        raise FrcnnError(f"{root}: VOC folder not found; expected a VOCdevkit year folder "
                         "with Annotations/, ImageSets/Main/ and JPEGImages/")
    if not isinstance(split, str) or not split or "/" in split or "\\" in split or ".." in split:
        raise FrcnnError(f"{root}: split {split!r} must be a plain list name such as 'trainval'")
    list_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not list_file.is_file():
        raise FrcnnError(f"{list_file}: image list not found (split {split!r})")
    records = [
        _read_annotation(root, image_id, f"{list_file}:{line_no}", label_of, check_files, defaulted)
        for line_no, image_id in _read_list(list_file)
    ]
    return DetectionData(records, class_names, name=f"voc:{root}:{split}")


def annotation_class_names(root, split="trainval"):
    """Sorted unique ``object/name`` values over the annotations listed in ``split``.

    Raises FrcnnError if the split has no object at all (then the classes must be given).
    """
    root = Path(root)
    list_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not list_file.is_file():
        raise FrcnnError(f"{list_file}: image list not found (split {split!r})")
    names = set()
    for line_no, image_id in _read_list(list_file):
        xml_path = root / "Annotations" / f"{image_id}.xml"
        if not file_exists(xml_path):
            raise FrcnnError(f"{xml_path}: annotation file not found (listed at {list_file}:{line_no})")
        try:
            ann = DET.parse(xml_path, forbid_dtd=True).getroot()
        except DefusedXmlException as e:
            raise FrcnnError(f"{xml_path}: refused unsafe XML ({type(e).__name__}: {e})") from None
        except (ParseError, OSError, ValueError) as e:
            raise FrcnnError(f"{xml_path}: malformed XML ({e})") from None
        for k, obj in enumerate(ann.findall("object")):
            names.add(_text(obj, "name", f"{xml_path}: object {k}"))
    if not names:
        raise FrcnnError(f"{list_file}: no object in split {split!r}; give the class names "
                         f"(--classes a,b,c) instead of reading them from the annotations")
    return sorted(names)


def _read_list(list_file):
    """``[(line number, image id)]`` from an ImageSets file (blank lines skipped)."""
    try:
        text = list_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise FrcnnError(f"{list_file}: cannot read image list ({e})") from None
    out = []
    for line_no, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        image_id = fields[0]  # class lists (aeroplane_train.txt) add a second column
        if image_id in (".", "..") or any(c in image_id for c in "/\\:\x00"):
            raise FrcnnError(f"{list_file}:{line_no}: image id {image_id!r} must be a plain "
                             "file stem (no path separators or '..')")
        out.append((line_no, image_id))
    return out


def _read_annotation(root, image_id, listed_at, label_of, check_files, defaulted=False) -> ImageRecord:
    xml_path = root / "Annotations" / f"{image_id}.xml"
    if not file_exists(xml_path):
        raise FrcnnError(f"{xml_path}: annotation file not found (listed at {listed_at})")
    try:
        tree = DET.parse(xml_path, forbid_dtd=True)
    except DefusedXmlException as e:
        raise FrcnnError(f"{xml_path}: refused unsafe XML ({type(e).__name__}: {e})") from None
    except ParseError as e:
        raise FrcnnError(f"{xml_path}: malformed XML ({e})") from None
    except (OSError, ValueError) as e:
        raise FrcnnError(f"{xml_path}: cannot read annotation ({e})") from None
    ann = tree.getroot()

    filename = _text(ann, "filename", xml_path, required=False) or f"{image_id}.jpg"
    image_path = safe_join(root / "JPEGImages", filename, f"{xml_path}: field 'filename'")
    if check_files and not file_exists(image_path):
        raise FrcnnError(f"{image_path}: image file not found (named by {xml_path})")
    height, width = _size(ann, xml_path, image_path)

    boxes, labels, difficult = [], [], []
    for k, obj in enumerate(ann.findall("object")):
        where = f"{xml_path}: object {k}"
        name = _text(obj, "name", where)
        if name not in label_of:
            if defaulted:
                raise FrcnnError(
                    f"{where}: field 'name' is {name!r}, not one of the 20 Pascal VOC classes "
                    f"(the default class_names); for your own classes pass "
                    f"class_names=\"auto\" (the sorted object names of the annotations) or "
                    f"class_names=[...] in label order (frcnn: --classes)")
            raise FrcnnError(f"{where}: field 'name' is {name!r}, not one of the "
                             f"{len(label_of)} known classes ({', '.join(label_of)}); "
                             f"class_names=\"auto\" reads them from the annotations")
        flag = _text(obj, "difficult", where, required=False) or "0"
        if flag not in ("0", "1"):
            raise FrcnnError(f"{where}: field 'difficult' is {flag!r}, expected 0 or 1")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise FrcnnError(f"{where}: missing field 'bndbox'")
        xmin, ymin, xmax, ymax = (_number(bndbox, f, where)
                                  for f in ("xmin", "ymin", "xmax", "ymax"))
        box = _clip_or_drop([xmin - 1, ymin - 1, xmax, ymax], height, width,
                            f"{where} ({name}, raw {xmin:g} {ymin:g} {xmax:g} {ymax:g})")
        if box is None:
            continue
        boxes.append(box)
        labels.append(label_of[name])
        difficult.append(flag == "1")
    return ImageRecord(image=str(image_path), boxes=np.array(boxes, np.float32).reshape(-1, 4),
                       labels=np.array(labels, np.int32), difficult=np.array(difficult, bool),
                       image_id=image_id, height=height, width=width)


def _text(node, field, where, required=True):
    """Stripped text of child ``field`` of ``node``; FrcnnError if required and missing."""
    child = node.find(field)
    if child is None or child.text is None or not child.text.strip():
        if required:
            raise FrcnnError(f"{where}: missing field '{field}'")
        return None
    return child.text.strip()


def _number(node, field, where):
    text = _text(node, field, where)
    try:
        value = float(text)
    except ValueError:
        raise FrcnnError(f"{where}: field '{field}' is {text!r}, expected a number") from None
    if not math.isfinite(value):
        raise FrcnnError(f"{where}: field '{field}' is {text!r}, expected a finite number")
    return value


def _size(ann, xml_path, image_path):
    """``(height, width)`` from ``<size>``, or from the image header when absent or 0."""
    size = ann.find("size")
    values = []
    for field in ("height", "width"):
        text = None if size is None else _text(size, field, xml_path, required=False)
        if text is None:
            values.append(0)
            continue
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not (math.isfinite(value) and value >= 0 and value == int(value)):
            raise FrcnnError(f"{xml_path}: field 'size/{field}' is {text!r}, "
                             "expected a non-negative integer")
        values.append(int(value))
    if min(values) > 0:
        return values[0], values[1]
    if not file_exists(image_path):
        raise FrcnnError(f"{xml_path}: field 'size' missing or 0 and image {image_path} "
                         "not found to read it from")
    return image_size(image_path)


def _clip_or_drop(box, height, width, where):
    """Clip ``box`` (continuous xyxy) into the image; None (with a warning) if degenerate."""
    clipped = [min(max(box[0], 0.0), width), min(max(box[1], 0.0), height),
               min(max(box[2], 0.0), width), min(max(box[3], 0.0), height)]
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        warnings.warn(f"{where}: dropped a box of zero or negative size "
                      f"(xyxy {box[0]:g} {box[1]:g} {box[2]:g} {box[3]:g} in a "
                      f"{width}x{height} image)", stacklevel=2)
        return None
    if clipped != box:
        warnings.warn(f"{where}: box xyxy {box[0]:g} {box[1]:g} {box[2]:g} {box[3]:g} "
                      f"clipped to the {width}x{height} image", stacklevel=2)
    return clipped
