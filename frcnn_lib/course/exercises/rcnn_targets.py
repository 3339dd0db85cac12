"""Check of the R-CNN target-assignment exercise: labelling RoIs.

Source of truth: the rule of :func:`frcnn_lib.targets.rcnn_targets` (foreground: IoU
``>= foreground_iou``, labelled with the matched object's class; background: IoU in
``[background_iou_low, background_iou_high)``, label 0; the rest -1), with IoU from
:func:`frcnn_lib.boxes.iou`.  tests/test_exercises.py checks it against rcnn_targets itself.
Shape glossary: ``R`` RoIs, ``G`` ground-truth boxes.
"""
import numpy as np

from frcnn_lib import boxes as box_ops
from frcnn_lib import targets
from frcnn_lib.course.exercises._report import checker, run_cases
from frcnn_lib.course.exercises.boxes import _iou_np, _random_boxes


def label_rois(rois, gt_boxes, gt_labels, foreground_iou, background_iou_low,
               background_iou_high):
    """The library's answer in the exercise's signature: ``(R,)`` labels, the matched object's
    class, 0 (background) or -1, by the rule of :func:`frcnn_lib.targets.rcnn_targets`."""
    return _labels_reference(rois, gt_boxes, gt_labels, foreground_iou, background_iou_low,
                             background_iou_high)


def _labels_reference(rois, gt_boxes, gt_labels, fg_iou, bg_low, bg_high):
    ious = box_ops.iou(rois, gt_boxes).numpy()                        # (R, G)
    best = ious.max(axis=1)
    cls = np.asarray(gt_labels)[ious.argmax(axis=1)]
    return np.where(best >= fg_iou, cls, np.where((best >= bg_low) & (best < bg_high), 0, -1))


def _labels_np(rois, gt_boxes, gt_labels, fg, lo, hi, as_one=False, no_low=False,
               strict=False, index=False, first=False):
    ious = _iou_np(rois, gt_boxes)
    best = ious.max(axis=1)
    j = np.zeros(len(ious), int) if first else ious.argmax(axis=1)
    cls = np.ones_like(j) if as_one else (j + 1 if index else np.asarray(gt_labels)[j])
    fg_mask = best > fg if strict else best >= fg
    bg_mask = (best < hi) if no_low else (best >= lo) & (best < hi)
    return np.where(fg_mask, cls, np.where(bg_mask, 0, -1))


_RCNN_VARIANTS = [
    ("the foreground RoIs are labelled 1: the R-CNN head classifies, so a foreground RoI takes "
     "the class of its matched object, gt_labels[best].",
     lambda *a: _labels_np(*a, as_one=True)),
    ("the label is the matched object's index + 1: take its class, gt_labels[best].",
     lambda *a: _labels_np(*a, index=True)),
    ("RoIs with IoU below background_iou_low are ignored (-1), not background: background is "
     "IoU in [background_iou_low, background_iou_high).", lambda *a: _labels_np(*a, no_low=True)),
    ("an IoU equal to foreground_iou is foreground: use >=, not >.",
     lambda *a: _labels_np(*a, strict=True)),
    ("the class is taken from the first object, not the best-overlapping one: gt_labels[j] with "
     "j = argmax of the RoI's IoU row.", lambda *a: _labels_np(*a, first=True)),
]


@checker("label_rois", reference=label_rois, library=targets.rcnn_targets)
def check_label_rois(fn):
    """Check ``fn(rois (R, 4), gt_boxes (G, 4), gt_labels (G,), foreground_iou,
    background_iou_low, background_iou_high) -> labels (R,)``: class, 0 or -1."""
    f = np.float32
    gt = np.array([[0, 0, 20, 20], [40, 40, 60, 60]], f)
    gt_labels = np.array([3, 1], np.int32)
    rng = np.random.default_rng(13)
    rand_gt = _random_boxes(rng, 3, 80.0)
    jitter = rng.normal(0, 4, (30, 4)).astype(f)
    rand_rois = np.repeat(rand_gt, 10, axis=0) + jitter
    rand_rois[:, 2:] = np.maximum(rand_rois[:, 2:], rand_rois[:, :2] + 1)
    cases = [
        ("one RoI on each object", (np.array([[0, 0, 20, 20], [41, 41, 61, 61]], f), gt, gt_labels, 0.5, 0.1, 0.5)),
        ("IoU exactly 0.5 is foreground", (np.array([[0, 0, 20, 10]], f), gt, gt_labels, 0.5, 0.1, 0.5)),
        ("background, and too little overlap to count",
         (np.array([[10, 0, 30, 20], [18, 18, 38, 38], [100, 100, 120, 120]], f), gt, gt_labels, 0.5, 0.1, 0.5)),
        ("30 RoIs around 3 objects of classes 5, 2, 4 (seeded)",
         (rand_rois, rand_gt, np.array([5, 2, 4], np.int32), 0.5, 0.1, 0.5)),
    ]
    return run_cases("label_rois", fn, cases, _labels_reference, _RCNN_VARIANTS,
                     ["rois", "gt_boxes", "gt_labels", "foreground_iou", "background_iou_low",
                      "background_iou_high"])
