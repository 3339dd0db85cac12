"""Checks of the evaluation exercises: the precision-recall curve and VOC AP.

Source of truth: :func:`frcnn_lib.evaluation.voc.voc_ap` and the curve of
:func:`frcnn_lib.evaluation.evaluate_voc` (detections in descending score order, stable).
Shape glossary: ``D`` detections of one class.
"""
import numpy as np

from frcnn_lib.evaluation import voc
from frcnn_lib.exercises._report import checker, run_cases


# ----------------------------------------------------------------- precision / recall
def _curve_reference(scores, is_tp, num_ground_truths):
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    tp = np.asarray(is_tp, bool)[order]
    recall, precision = voc._class_curve(tp, ~tp, num_ground_truths)
    return np.stack([recall, precision])


def _curve_np(scores, is_tp, npos, order="descending", recall_by="gt", precision_by="seen"):
    scores = np.asarray(scores, np.float64)
    idx = {"descending": np.argsort(-scores, kind="stable"), "none": np.arange(len(scores)),
           "ascending": np.argsort(scores, kind="stable")}[order]
    tp = np.asarray(is_tp, np.float64)[idx]
    ctp = np.cumsum(tp)
    recall = ctp / (npos if recall_by == "gt" else len(tp))
    precision = ctp / (np.arange(1, len(tp) + 1) if precision_by == "seen" else npos)
    return np.stack([recall, precision])


_CURVE_VARIANTS = [
    ("the detections are not sorted by score: sort by descending score first "
     "(np.argsort(-scores, kind='stable')); the curve follows the ranking.",
     lambda s, t, n: _curve_np(s, t, n, order="none")),
    ("the detections are sorted by ascending score: the most confident come first.",
     lambda s, t, n: _curve_np(s, t, n, order="ascending")),
    ("recall is divided by the number of detections: it is TP / (number of ground-truth objects).",
     lambda s, t, n: _curve_np(s, t, n, recall_by="detections")),
    ("precision is divided by the number of objects: it is TP / (detections so far), k at rank k.",
     lambda s, t, n: _curve_np(s, t, n, precision_by="gt")),
]


@checker("precision_recall")
def check_precision_recall(fn):
    """Check ``fn(scores (D,), is_tp (D,) bool, num_ground_truths) -> (recall (D,), precision (D,))``
    in descending score order."""
    rng = np.random.default_rng(14)
    cases = [
        ("3 detections already in score order", (np.array([0.9, 0.8, 0.3]), np.array([True, False, True]), 2)),
        ("unsorted scores", (np.array([0.2, 0.9, 0.6, 0.75]), np.array([False, True, True, False]), 3)),
        ("a missed object (recall stops at 2/3)", (np.array([0.5, 0.7]), np.array([True, True]), 3)),
        ("20 random detections (seeded)",
         (rng.uniform(size=20), rng.uniform(size=20) < 0.5, 12)),
    ]
    return run_cases("precision_recall", fn, cases, _curve_reference, _CURVE_VARIANTS,
                     ["scores", "is_tp", "num_ground_truths"])


# ----------------------------------------------------------------- VOC AP
def _ap_reference(recall, precision, use_07_metric):
    return voc.voc_ap(recall, precision, use_07_metric)


def _ap_np(recall, precision, use_07, envelope=True, strict=False, points=11, trapezoid=False,
           thresholds=None):
    recall = np.asarray(recall, np.float64)
    precision = np.asarray(precision, np.float64)
    env = np.maximum.accumulate(precision[::-1])[::-1] if envelope else precision
    if use_07:
        total = 0.0
        for t in (np.arange(11) / 10.0 if thresholds is None else thresholds):
            mask = recall > t if strict else recall >= t
            if mask.any():
                total += env[mask].max() if envelope else env[np.argmax(mask)]
        return total / points
    if trapezoid:
        return float(np.trapezoid(env, recall))
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * env))


_AP_VARIANTS = [
    ("the precision is not interpolated: at each recall use the highest precision at that "
     "recall or beyond (the envelope, np.maximum.accumulate(precision[::-1])[::-1]).",
     lambda r, p, m: _ap_np(r, p, m, envelope=False)),
    ("the 11 recall points count where recall >= t (not > t): at t = 0.5 a curve that reaches "
     "exactly 0.5 scores.", lambda r, p, m: _ap_np(r, p, m, strict=True)),
    ("your 11 recall points are not exactly k / 10: np.arange(0, 1.1, 0.1) or np.linspace "
     "give 0.30000000000000004, 0.6000000000000001, ..., so a recall of exactly 0.3 or 0.6 "
     "misses its point; use np.arange(11) / 10.",
     lambda r, p, m: _ap_np(r, p, m, thresholds=np.arange(0.0, 1.1, 0.1))),
    ("your 11 recall points are not exactly k / 10: np.linspace(0, 1, 11) gives "
     "0.6000000000000001, ..., so a recall of exactly 0.6 misses its point; use np.arange(11) / 10.",
     lambda r, p, m: _ap_np(r, p, m, thresholds=np.linspace(0, 1, 11))),
    ("the 11-point sum is divided by 10: there are 11 points, 0.0, 0.1, ..., 1.0.",
     lambda r, p, m: _ap_np(r, p, m, points=10)),
    ("that is the trapezoidal area: VOC2010+ AP sums rectangles, (r_k - r_{k-1}) times the "
     "envelope at r_k, starting from recall 0.", lambda r, p, m: _ap_np(r, p, m, trapezoid=True)),
]


@checker("voc_ap")
def check_voc_ap(fn):
    """Check ``fn(recall (D,), precision (D,), use_07_metric) -> AP`` (a float)."""
    zig_r = np.array([0.2, 0.4, 0.4, 0.6, 0.8])
    zig_p = np.array([1.0, 0.5, 0.67, 0.75, 0.57])
    rng = np.random.default_rng(15)
    tp = rng.uniform(size=30) < 0.6
    rand_r = np.cumsum(tp) / 25.0
    rand_p = np.cumsum(tp) / np.arange(1, 31)
    cases = [
        ("one perfect detection, VOC07", (np.array([1.0]), np.array([1.0]), True)),
        ("one perfect detection, area", (np.array([1.0]), np.array([1.0]), False)),
        ("precision rises again (envelope), VOC07", (zig_r, zig_p, True)),
        ("precision rises again (envelope), area", (zig_r, zig_p, False)),
        ("recall exactly 0.5 at the end, VOC07", (np.array([0.25, 0.5]), np.array([1.0, 0.5]), True)),
        ("30 random detections (seeded), VOC07", (rand_r, rand_p, True)),
        ("30 random detections (seeded), area", (rand_r, rand_p, False)),
    ]
    return run_cases("voc_ap", fn, cases, _ap_reference, _AP_VARIANTS,
                     ["recall", "precision", "use_07_metric"], atol=1e-6)
