"""Check of the greedy NMS exercise.

Source of truth: :func:`frcnn_lib.nms.nms` (greedy by descending score, drop IoU
``> iou_threshold``, ties in score to the lower index).
Shape glossary: ``N`` boxes, ``D`` boxes kept.
"""
import numpy as np

from frcnn_lib.course.exercises._report import (as_array, call, checker, compare, diagnose, fail,
                                         passed)
from frcnn_lib.course.exercises.boxes import _iou_np, _random_boxes
from frcnn_lib import nms as nms_lib
from frcnn_lib.nms import nms


def greedy_nms(boxes, scores, iou_threshold):
    """The library's answer in the exercise's signature: ``boxes (N, 4)``, ``scores (N,)`` ->
    the indices kept ``(D,)`` int32, by descending score (ties: the lower index), by
    :func:`frcnn_lib.nms.nms` with room for every box."""
    return nms(boxes, scores, iou_threshold, max_output_size=len(boxes)).numpy()


def _nms_reference(boxes, scores, iou_threshold):
    return greedy_nms(boxes, scores, iou_threshold)


def _nms_np(boxes, scores, thr, order="stable", strict=True, suppress_by_all=False):
    """Greedy numpy NMS with knobs for the usual mistakes."""
    scores = np.asarray(scores, np.float64)
    if order == "stable":
        idx = np.argsort(-scores, kind="stable")
    elif order == "none":
        idx = np.arange(len(scores))
    elif order == "ascending":
        idx = np.argsort(scores, kind="stable")
    else:  # "reversed": argsort(scores)[::-1] puts the higher index first among ties
        idx = np.argsort(scores, kind="stable")[::-1]
    ious = _iou_np(boxes, boxes)
    removed = np.zeros(len(scores), bool)
    keep = []
    for i in idx:
        if removed[i]:
            if suppress_by_all:
                removed |= ious[i] > thr if strict else ious[i] >= thr
            continue
        keep.append(i)
        removed |= (ious[i] > thr) if strict else (ious[i] >= thr)
    return np.array(keep, np.int64)


_NMS_VARIANTS = [
    ("the boxes are not visited by descending score: sort by score first "
     "(np.argsort(-scores, kind='stable')); the best box must win.",
     lambda b, s, t: _nms_np(b, s, t, order="none")),
    ("the boxes are visited by ascending score: the highest score goes first.",
     lambda b, s, t: _nms_np(b, s, t, order="ascending")),
    ("a box whose IoU equals the threshold is kept: suppress only IoU > iou_threshold, not >=.",
     lambda b, s, t: _nms_np(b, s, t, strict=False)),
    ("ties in score go to the lower index: argsort(scores)[::-1] reverses ties; use "
     "np.argsort(-scores, kind='stable').", lambda b, s, t: _nms_np(b, s, t, order="reversed")),
    ("a suppressed box must not suppress others: only kept boxes remove their overlaps.",
     lambda b, s, t: _nms_np(b, s, t, suppress_by_all=True)),
]


@checker("nms", reference=greedy_nms, library=nms_lib, part="nms")
def check_nms(fn):
    """Check ``fn(boxes (N, 4), scores (N,), iou_threshold) -> kept indices (D,)``."""
    title = "nms"
    f = np.float32
    rng = np.random.default_rng(12)
    cases = [
        ("two overlapping boxes", (np.array([[0, 0, 10, 10], [1, 1, 11, 11]], f), np.array([0.6, 0.9], f), 0.5)),
        ("the best box is not first", (np.array([[0, 0, 10, 10], [50, 50, 60, 60], [0, 1, 10, 11],
                                                 [1, 0, 11, 10]], f), np.array([0.3, 0.5, 0.4, 0.9], f), 0.5)),
        ("IoU exactly at the threshold (0.5) is kept",
         (np.array([[0, 0, 10, 10], [0, 0, 10, 5]], f), np.array([0.9, 0.8], f), 0.5)),
        ("equal scores: the lower index wins", (np.array([[0, 0, 10, 10], [0, 0, 10, 10], [30, 30, 40, 40]], f),
                                                 np.array([0.7, 0.7, 0.2], f), 0.5)),
        ("a chain: A suppresses B, B would suppress C",
         (np.array([[0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]], f), np.array([0.9, 0.8, 0.7], f), 0.3)),
        ("40 random boxes (seeded), threshold 0.3",
         (_random_boxes(rng, 40, 60.0), rng.uniform(size=40).astype(f), 0.3)),
    ]
    for case, args in cases:
        expected = _nms_reference(*args)
        got = call(title, case, fn, *[a.copy() if isinstance(a, np.ndarray) else a for a in args])
        arr = as_array(got)
        reason = compare(expected, got, atol=0, rtol=0)
        if reason is None:
            continue
        hint = diagnose(got, args, _NMS_VARIANTS, atol=0, rtol=0)
        if arr is not None and arr.dtype != object and arr.shape == (len(args[0]),) and \
                set(np.unique(arr)) <= {0.0, 1.0} and hint is None:
            hint = "return the indices of the kept boxes (in the order they were kept), not a mask."
        if hint is None and arr is not None and arr.ndim == 1 and \
                sorted(arr.tolist()) == sorted(expected.tolist()):
            hint = "the right boxes in the wrong order: list them by descending score."
        fail(title, case, reason, expected, got, hint or
             "visit boxes by descending score; keep a box unless a kept box overlaps it by "
             "IoU > iou_threshold.", dict(zip(["boxes", "scores", "iou_threshold"], args)))
    return passed(title, f"{len(cases)} cases agree with frcnn_lib.nms.nms ("
                  + ", ".join(c for c, _ in cases) + ")")
