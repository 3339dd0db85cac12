"""COCO: an instances annotation JSON plus an image folder, indexed with pycocotools.

Shape glossary: ``n`` boxes of one image, ``c`` crowd regions of one image, ``K``
categories.

- Category ids (COCO's run 1..90 with gaps) map to contiguous labels ``1..K`` sorted by id;
  ``DetectionData.label_to_category_id`` maps back (needed to write COCO results).
- ``bbox [x, y, w, h]`` becomes xyxy ``(x, y, x + w, y + h)`` (COCO boxes are already
  continuous).
- ``iscrowd = 1`` regions are not training targets; they are kept in
  ``ImageRecord.crowd_boxes`` so that evaluation can ignore detections on them.
- Errors (FrcnnError naming the file and the field path, e.g. ``annotations[12].bbox``):
  unreadable or non-JSON file; missing ``images``/``annotations``/``categories`` or a
  missing or mistyped field; duplicate image, annotation or category ids; annotations
  whose ``image_id`` or ``category_id`` is unknown; non-finite numbers; a ``file_name``
  that leaves ``image_dir`` (absolute or ``..``); and, with ``check_files``, an image file
  that does not exist.
- Boxes partly outside the image are clipped and boxes of zero size (after clipping) are
  dropped; one ``warnings.warn`` per file counts them and names the first few ids
  (COCO train2017 has a handful of such boxes).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from pathlib import Path

import numpy as np

from frcnn_lib.datasets.records import DetectionData, ImageRecord, file_exists, safe_join
from frcnn_lib.runtime.errors import FrcnnError


def load(annotation_file, image_dir, check_files=True) -> DetectionData:
    """Read a COCO-style instances file.

    Args:
      annotation_file: e.g. ``annotations/instances_val2017.json``.
      image_dir: the folder ``file_name`` entries are relative to (e.g. ``val2017/``).
      check_files: check at load time that every image file exists.

    Returns:
      DetectionData, one record per entry of ``images`` sorted by image id, with
      ``label_to_category_id`` set.
    """
    annotation_file, image_dir = Path(annotation_file), Path(image_dir)
    dataset = _read_json(annotation_file)
    f = str(annotation_file)
    categories = _validated_categories(dataset, f)
    images = _validated_images(dataset, f, image_dir, check_files)
    annotations = _validated_annotations(dataset, f, images, categories)

    coco = _index(dataset)
    category_ids = sorted(categories)
    label_of = {cat: i + 1 for i, cat in enumerate(category_ids)}

    clipped, dropped = [], []
    records = []
    for image_id in sorted(images):
        info = images[image_id]
        height, width = info["height"], info["width"]
        boxes, labels, crowd_boxes, crowd_labels = [], [], [], []
        for ann_id in coco.getAnnIds(imgIds=[image_id]):
            ann = annotations[ann_id]
            x, y, w, h = ann["bbox"]
            raw = [x, y, x + w, y + h]
            box = [min(max(raw[0], 0.0), width), min(max(raw[1], 0.0), height),
                   min(max(raw[2], 0.0), width), min(max(raw[3], 0.0), height)]
            if box[2] <= box[0] or box[3] <= box[1]:
                dropped.append(ann_id)
                continue
            if box != raw:
                clipped.append(ann_id)
            if ann["iscrowd"]:
                crowd_boxes.append(box)
                crowd_labels.append(label_of[ann["category_id"]])
            else:
                boxes.append(box)
                labels.append(label_of[ann["category_id"]])
        records.append(ImageRecord(
            image=str(info["path"]), boxes=np.array(boxes, np.float32).reshape(-1, 4),
            labels=np.array(labels, np.int32), difficult=np.zeros(len(boxes), bool),
            image_id=image_id, height=height, width=width,
            crowd_boxes=np.array(crowd_boxes, np.float32).reshape(-1, 4),
            crowd_labels=np.array(crowd_labels, np.int32)))
    if clipped:
        warnings.warn(f"{f}: clipped {len(clipped)} boxes sticking out of their image "
                      f"(annotation ids {_first(clipped)})", stacklevel=2)
    if dropped:
        warnings.warn(f"{f}: dropped {len(dropped)} boxes of zero or negative size "
                      f"(annotation ids {_first(dropped)})", stacklevel=2)
    class_names = [categories[c] for c in category_ids]
    return DetectionData(records, class_names, name=f"coco:{annotation_file}:{image_dir}",
                         label_to_category_id={label: cat for cat, label in label_of.items()})


def _first(ids, k=5):
    return ", ".join(str(i) for i in ids[:k]) + (", ..." if len(ids) > k else "")


def _read_json(path):
    try:
        with open(path, "rb") as fh:
            dataset = json.loads(fh.read().decode("utf-8"))
    except FileNotFoundError:
        raise FrcnnError(f"{path}: annotation file not found") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise FrcnnError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(dataset, dict):
        raise FrcnnError(f"{path}: expected a JSON object with 'images', 'annotations' and "
                         f"'categories', got a {type(dataset).__name__}")
    return dataset


def _list(dataset, key, f):
    if key not in dataset:
        raise FrcnnError(f"{f}: missing key '{key}'")
    if not isinstance(dataset[key], list):
        raise FrcnnError(f"{f}: '{key}' must be a list, got {type(dataset[key]).__name__}")
    return dataset[key]


def _field(entry, key, where, kind):
    """``entry[key]`` checked to be of ``kind`` ('id', 'size', 'str', 'flag' or 'bbox')."""
    if not isinstance(entry, dict):
        raise FrcnnError(f"{where}: expected a JSON object, got {type(entry).__name__}")
    if key not in entry:
        if kind == "flag":
            return 0
        raise FrcnnError(f"{where}: missing key '{key}'")
    value = entry[key]

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    def is_number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if kind == "id" and is_int(value):
        return value
    if kind == "size" and is_int(value) and value > 0:
        return value
    if kind == "str" and isinstance(value, str) and value:
        return value
    if kind == "flag" and value in (0, 1) and not isinstance(value, float):
        return int(value)
    if (kind == "bbox" and isinstance(value, list) and len(value) == 4
            and all(map(is_number, value))):
        return [float(v) for v in value]
    expected = {"id": "an integer", "size": "a positive integer", "str": "a non-empty string",
                "flag": "0 or 1", "bbox": "[x, y, width, height] of 4 finite numbers"}[kind]
    raise FrcnnError(f"{where}.{key}: expected {expected}, got {json.dumps(value)[:60]}")


def _validated_categories(dataset, f):
    categories = {}
    for i, cat in enumerate(_list(dataset, "categories", f)):
        where = f"{f}: categories[{i}]"
        cat_id = _field(cat, "id", where, "id")
        if cat_id in categories:
            raise FrcnnError(f"{where}.id: duplicate category id {cat_id}")
        categories[cat_id] = _field(cat, "name", where, "str")
    if not categories:
        raise FrcnnError(f"{f}: 'categories' is empty; expected at least one category")
    return categories


def _validated_images(dataset, f, image_dir, check_files):
    images = {}
    for i, img in enumerate(_list(dataset, "images", f)):
        where = f"{f}: images[{i}]"
        image_id = _field(img, "id", where, "id")
        if image_id in images:
            raise FrcnnError(f"{where}.id: duplicate image id {image_id}")
        file_name = _field(img, "file_name", where, "str")
        path = safe_join(image_dir, file_name, f"{where}.file_name")
        if check_files and not file_exists(path):
            raise FrcnnError(f"{path}: image file not found (named by {where}.file_name)")
        images[image_id] = {"path": path, "height": _field(img, "height", where, "size"),
                            "width": _field(img, "width", where, "size")}
    return images


def _validated_annotations(dataset, f, images, categories):
    annotations = {}
    for i, ann in enumerate(_list(dataset, "annotations", f)):
        where = f"{f}: annotations[{i}]"
        ann_id = _field(ann, "id", where, "id")
        if ann_id in annotations:
            raise FrcnnError(f"{where}.id: duplicate annotation id {ann_id}")
        image_id = _field(ann, "image_id", where, "id")
        if image_id not in images:
            raise FrcnnError(f"{where}.image_id: {image_id} is not the id of any image")
        category_id = _field(ann, "category_id", where, "id")
        if category_id not in categories:
            raise FrcnnError(f"{where}.category_id: {category_id} is not one of the category "
                             f"ids {sorted(categories)}")
        annotations[ann_id] = {"image_id": image_id, "category_id": category_id,
                               "bbox": _field(ann, "bbox", where, "bbox"),
                               "iscrowd": _field(ann, "iscrowd", where, "flag")}
    return annotations


def _index(dataset):
    """A pycocotools ``COCO`` index over the (already validated) dataset, built quietly."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress
        coco.createIndex()
    return coco
