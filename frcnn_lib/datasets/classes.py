"""What a model knows about its classes: names and the dataset's own category ids.

Shape glossary: ``K`` object classes (background excluded), ``n`` detections of one image.

A ``FasterRCNN`` predicts internal labels ``1..K`` (``0`` is background).  The dataset it
was trained on may name them (``class_names[k - 1]``) and number them its own way
(``category_ids[k - 1]``: COCO's ids are not contiguous, e.g. 1..90 for 80 classes).  Both
are optional constructor arguments of the model, stored in its config and its ``.keras``
file, so that ``detect``, ``frcnn predict`` and ``frcnn evaluate`` can speak the dataset's
language without the user typing the names again (torchvision and keras-hub models carry
their category names the same way).
"""
from __future__ import annotations

import numbers

import numpy as np

from frcnn_lib.runtime.errors import FrcnnError


def validate_classes(num_classes, class_names=None, category_ids=None):
    """Check and normalise the class metadata of a model with ``num_classes`` classes.

    Args:
      num_classes: ``K``.
      class_names: ``None`` or a sequence of ``K`` distinct, non-empty ``str``.
      category_ids: ``None`` or a sequence of ``K`` distinct ``int`` (not bool).

    Returns:
      ``(class_names, category_ids)`` as tuples (or ``None`` when not given).

    Raises:
      FrcnnError naming the argument, on a wrong length, type or a duplicate.
    """
    return (_checked("class_names", class_names, num_classes, _is_name, "non-empty strings"),
            _checked("category_ids", category_ids, num_classes, _is_int, "whole numbers"))


def _is_name(value):
    return isinstance(value, str) and bool(value.strip())


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _checked(argument, values, num_classes, ok, expected):
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise FrcnnError(f"{argument}={values!r}: expected a list of {num_classes} {expected}")
    values = list(values)
    if len(values) != num_classes:
        raise FrcnnError(f"{argument}: got {len(values)} entries, expected num_classes={num_classes}")
    for i, value in enumerate(values):
        if not ok(value):
            raise FrcnnError(f"{argument}[{i}]={value!r}: expected {expected}")
    seen = {}
    for i, value in enumerate(values):
        if value in seen:
            raise FrcnnError(f"{argument}[{i}]={value!r}: duplicate of {argument}[{seen[value]}]")
        seen[value] = i
    return tuple(int(v) for v in values) if ok is _is_int else tuple(values)


def name_detections(model, detections):
    """Add ``"names"`` (``(n,)`` str) and ``"category_ids"`` (``(n,)`` int64) to each detection
    dict, from ``model.class_names`` / ``model.category_ids`` where the model has them.

    ``detections``: a dict or list of dicts with ``labels (n,)`` in ``1..K``; changed in
    place and returned.
    """
    names = getattr(model, "class_names", None)
    ids = getattr(model, "category_ids", None)
    for det in [detections] if isinstance(detections, dict) else detections:
        index = np.asarray(det["labels"], np.int64) - 1
        if names is not None:
            det["names"] = np.asarray(names, dtype=str)[index] if len(index) else np.zeros(0, str)
        if ids is not None:
            det["category_ids"] = np.asarray(ids, np.int64)[index]
    return detections


def label_names(model_or_names, num_classes=None):
    """Names of labels ``1..K``: the model's ``class_names``, or ``"class k"`` when it has none."""
    names = getattr(model_or_names, "class_names", model_or_names)
    if names is not None:
        return list(names)
    k = num_classes if num_classes is not None else model_or_names.num_classes
    return [f"class {i}" for i in range(1, k + 1)]


def data_classes(data):
    """The ``class_names`` / ``category_ids`` constructor arguments for a model trained on
    ``data`` (a DetectionData): its names, and COCO's category ids where it has them."""
    ids = data.label_to_category_id
    return {"class_names": list(data.class_names),
            "category_ids": None if ids is None else [int(ids[k]) for k in range(1, data.num_classes + 1)]}


def saved_classes(path):
    """``(class_names, category_ids)`` stored in a ``.keras`` file's config, read without
    TensorFlow (``None`` for what a model saved without them lacks)."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json")).get("config", {})
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None, None  # loading the model will report what is wrong with the file
    return config.get("class_names"), config.get("category_ids")


def parse_class_list(text, what="--classes"):
    """Class names from a command-line value: ``a,b,c``, or the path of a text file with
    one name a line (blank lines and lines starting with ``#`` skipped)."""
    import os

    if os.path.isfile(text):
        try:
            with open(text, encoding="utf-8") as f:
                names = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
        except (OSError, UnicodeDecodeError) as err:
            raise FrcnnError(f"{what} {text}: cannot read the class list ({err})") from None
    else:
        names = [name.strip() for name in text.split(",")]
    if not names or not all(names):
        raise FrcnnError(f"{what} {text!r}: expected comma-separated non-empty names or a file "
                         f"with one name a line")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise FrcnnError(f"{what} {text!r}: duplicate class name(s) {', '.join(duplicates)}")
    return names


def select_classes(data, names, what="--classes"):
    """``data`` restricted to the classes ``names``, in that label order.

    The rule (the same in training, validation and evaluation, so that a model trained on a
    subset is measured on the same subset): label ``k`` becomes ``names[k - 1]``; boxes of
    any other class are dropped, from the training targets and from the ground truth alike
    (they are background to the model, as in torchvision's and Detectron2's class-subset
    datasets); images left without boxes stay, as images with no object; COCO crowd regions
    of other classes are dropped too, and ``label_to_category_id`` keeps the dataset's ids of
    the selected classes.

    Args:
      data: a DetectionData.
      names: class names, each one of ``data.class_names``, no duplicates.
      what: the option to name in errors.

    Returns:
      a new DetectionData (``data`` itself when ``names`` equals its classes).

    Raises:
      FrcnnError naming ``what``, the unknown names and the data's classes.
    """
    from frcnn_lib.datasets.records import DetectionData, ImageRecord

    names = list(names)
    if names == list(data.class_names):
        return data
    unknown = [n for n in names if n not in data.class_names]
    if unknown:
        raise FrcnnError(f"{what} {','.join(names)}: {', '.join(unknown)} "
                         f"{'is not a class' if len(unknown) == 1 else 'are not classes'} of "
                         f"{data.name or 'the data'} (its classes: {', '.join(data.class_names)})")
    if len(set(names)) != len(names):
        raise FrcnnError(f"{what} {','.join(names)}: duplicate class names")
    # old label (1..K) -> new label (1..len(names)), 0 for a class left out
    new_label = np.zeros(len(data.class_names) + 1, np.int32)
    for k, name in enumerate(names, 1):
        new_label[data.class_names.index(name) + 1] = k
    records = []
    for r in data.records:
        labels, crowd = new_label[r.labels], new_label[r.crowd_labels]
        keep, keep_crowd = labels > 0, crowd > 0
        records.append(ImageRecord(r.image, r.boxes[keep], labels[keep], r.difficult[keep], r.image_id,
                                   r.height, r.width, r.crowd_boxes[keep_crowd], crowd[keep_crowd]))
    ids = data.label_to_category_id
    if ids is not None:
        ids = {k: ids[data.class_names.index(name) + 1] for k, name in enumerate(names, 1)}
    return DetectionData(records, names, data.name, ids, data.default_sides)
