"""Validation and flattening of per-image detection / ground-truth lists.

Shape glossary: ``I`` images, ``n`` boxes of one image, ``D`` detections and ``G``
ground-truth boxes over the whole dataset.

The evaluators take Python lists (one dict per image) and work on flat arrays: every
box of every image in one array, with the index of its image beside it.  All checks name
the list, the image index and the field, e.g. ``detections[12]['scores']``.
"""
from collections.abc import Mapping
from typing import NamedTuple, Optional

import numpy as np

from frcnn_lib.runtime.errors import FrcnnError


class Flat(NamedTuple):
    """All boxes of a list of per-image dicts, concatenated in image order.

    ``image (D,) int64``, ``boxes (D, 4) float64`` xyxy, ``labels (D,) int64``,
    ``scores (D,) float64`` or None, ``flag (D,) bool`` (``difficult`` / ``iscrowd``) or
    None, ``offsets (I + 1,)``: the boxes of image ``i`` are rows ``offsets[i]:offsets[i+1]``.
    """
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    scores: Optional[np.ndarray]
    flag: Optional[np.ndarray]
    offsets: np.ndarray


def check_lists(detections, ground_truths):
    """Both arguments are sequences of the same length (one entry per image)."""
    for name, value in (("detections", detections), ("ground_truths", ground_truths)):
        if isinstance(value, (str, bytes, Mapping, np.ndarray)) or not hasattr(value, "__len__"):
            raise FrcnnError(f"{name} must be a list with one dict per image, got "
                             f"{type(value).__name__}")
    if len(detections) != len(ground_truths):
        raise FrcnnError(f"detections has {len(detections)} images but ground_truths has "
                         f"{len(ground_truths)}; expected one entry per image in both")


def check_num_classes(num_classes):
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise FrcnnError(f"num_classes must be a positive integer, got {num_classes!r}")
    return int(num_classes)


def _array(entry, key, where, dtype=np.float64):
    """``entry[key]`` as a numpy array; FrcnnError naming ``where`` if it cannot be."""
    if key not in entry:
        raise FrcnnError(f"{where} has no {key!r} field")
    try:
        return np.asarray(entry[key], dtype=dtype)
    except (TypeError, ValueError) as error:
        raise FrcnnError(f"{where}[{key!r}] is not a numeric array: {error}") from None


def _image_arrays(entry, where, with_scores, flag_key):
    """Checked ``boxes (n, 4)``, ``labels (n,)``, ``scores (n,)``, ``flag (n,)`` of one image."""
    if not isinstance(entry, Mapping):
        raise FrcnnError(f"{where} must be a dict with 'boxes' and 'labels', got "
                         f"{type(entry).__name__}")
    boxes = _array(entry, "boxes", where)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise FrcnnError(f"{where}['boxes'] must have shape (n, 4) (xyxy), got {boxes.shape}")
    n = len(boxes)
    fields = {"labels": _array(entry, "labels", where)}
    if with_scores:
        fields["scores"] = _array(entry, "scores", where)
    if flag_key is not None and entry.get(flag_key) is not None:
        fields[flag_key] = _array(entry, flag_key, where, dtype=None)
        if fields[flag_key].dtype.kind not in "biuf":
            raise FrcnnError(f"{where}[{flag_key!r}] must be booleans, got dtype "
                             f"{fields[flag_key].dtype}")
    for key, value in fields.items():
        if value.size == 0 and n == 0:
            fields[key] = value.reshape(0)
        elif value.shape != (n,):
            raise FrcnnError(f"{where}[{key!r}] must have shape ({n},) like its boxes, got "
                             f"{value.shape}")
    return boxes, fields


def _locate(flat_index, offsets, name, key, why):
    """FrcnnError for flat row ``flat_index``, named by its image index and row."""
    image = int(np.searchsorted(offsets, flat_index, side="right") - 1)
    row = int(flat_index - offsets[image])
    return FrcnnError(f"{name}[{image}][{key!r}] row {row}: {why}")


def _check_finite(values, offsets, name, key):
    finite = np.isfinite(values)
    bad = ~(finite.all(axis=1) if finite.ndim == 2 else finite)
    if bad.any():
        raise _locate(int(np.argmax(bad)), offsets, name, key, "expected finite values, got "
                      f"{values[np.argmax(bad)]}")


def _check_labels(labels, offsets, name, num_classes):
    """Labels must be integers in ``1..num_classes`` (any positive integer if None)."""
    high = np.inf if num_classes is None else num_classes
    bad = (labels != np.round(labels)) | ~(labels >= 1) | (labels > high)
    if bad.any():
        expected = "positive integers" if num_classes is None else f"integers in 1..{num_classes}"
        hint = " (strip the -1 padding of batched labels)" if labels[np.argmax(bad)] == -1 else ""
        raise _locate(int(np.argmax(bad)), offsets, name, "labels",
                      f"expected {expected}, got {labels[np.argmax(bad)]}{hint}")
    return labels.astype(np.int64)


def flatten(entries, name, num_classes=None, with_scores=False, flag_key=None):
    """Check a list of per-image dicts and concatenate it into a :class:`Flat`.

    Args:
      entries: list of ``I`` dicts with ``boxes (n, 4)``, ``labels (n,)`` and, if
        ``with_scores``, ``scores (n,)``; optional ``flag_key (n,)`` bool (missing = False).
      name: ``"detections"`` or ``"ground_truths"``, for messages.
      num_classes: labels must lie in ``1..num_classes``; None: any positive integer.
    """
    boxes, labels, scores, flags, counts = [], [], [], [], []
    for i, entry in enumerate(entries):
        image_boxes, fields = _image_arrays(entry, f"{name}[{i}]", with_scores, flag_key)
        boxes.append(image_boxes)
        labels.append(fields["labels"])
        scores.append(fields.get("scores"))
        flag = fields.get(flag_key)
        flags.append(np.zeros(len(image_boxes), bool) if flag is None else flag.astype(bool))
        counts.append(len(image_boxes))
    counts = np.asarray(counts, np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    flat = Flat(
        image=np.repeat(np.arange(len(counts), dtype=np.int64), counts),
        boxes=np.concatenate(boxes) if boxes else np.zeros((0, 4)),
        labels=np.concatenate(labels) if labels else np.zeros(0),
        scores=(np.concatenate(scores) if scores else np.zeros(0)) if with_scores else None,
        flag=(np.concatenate(flags) if flags else np.zeros(0, bool)) if flag_key else None,
        offsets=offsets)
    _check_finite(flat.boxes, offsets, name, "boxes")
    if with_scores:
        _check_finite(flat.scores, offsets, name, "scores")
    return flat._replace(labels=_check_labels(flat.labels, offsets, name, num_classes))
