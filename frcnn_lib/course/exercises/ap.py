"""Checks of the evaluation exercises: the precision-recall curve and VOC AP.

Source of truth: :func:`frcnn_lib.evaluation.voc.voc_ap` and the curve of
:func:`frcnn_lib.evaluation.evaluate_voc` (detections in descending score order, stable).
Shape glossary: ``D`` detections of one class.
"""
import numpy as np

from frcnn_lib.evaluation import voc
from frcnn_lib.course.exercises._report import as_array, call, checker, compare, diagnose, fail, passed, run_cases


# ----------------------------------------------------------------- precision / recall
def precision_recall(scores, is_tp, num_ground_truths):
    """The library's answer in the exercise's signature: ``(recall (D,), precision (D,))`` in
    descending score order (stable), by :func:`frcnn_lib.evaluation.voc._class_curve`."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    tp = np.asarray(is_tp, bool)[order]
    return voc._class_curve(tp, ~tp, num_ground_truths)


def _curve_reference(scores, is_tp, num_ground_truths):
    return np.stack(precision_recall(scores, is_tp, num_ground_truths))


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
    ("recall and precision are swapped: return (recall, precision).",
     lambda s, t, n: _curve_np(s, t, n)[::-1]),
]


@checker("precision_recall", reference=precision_recall, library=voc._class_curve)
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


# The 11 recall points.  frcnn_lib takes exactly k / 10 (np.arange(11) / 10).  py-faster-rcnn's
# voc_eval.voc_ap loops over np.arange(0., 1.1, 0.1): 11 points from 0 to 1 too, the same as
# np.linspace(0, 1, 11), of which three are one rounding step above k / 10 (0.30000000000000004,
# 0.6000000000000001, 0.7000000000000001; the VOC devkit's MATLAB 0:0.1:1 has such a 0.3 too).
# The conventions differ only where a recall is exactly 0.3, 0.6 or 0.7; the check accepts
# either and says where they differ.
EXACT_POINTS = np.arange(11) / 10.0
_CONVENTIONS = [("np.arange(0., 1.1, 0.1)", np.arange(0.0, 1.1, 0.1)),
                ("np.linspace(0, 1, 11)", np.linspace(0.0, 1.0, 11))]


def _point_note(name, grid):
    differ = [(float(g), float(e)) for g, e in zip(grid, EXACT_POINTS) if g != e]
    return (f"your 11 recall points are {name}, py-faster-rcnn's voc_eval convention: "
            f"{', '.join(repr(g) for g, _ in differ)} instead of exactly "
            f"{', '.join(repr(e) for _, e in differ)}")


def _ap_variants():
    base = [
        ("the precision is not interpolated: at each recall use the highest precision at that "
         "recall or beyond (the envelope, np.maximum.accumulate(precision[::-1])[::-1]).",
         dict(envelope=False)),
        ("the 11 recall points count where recall >= t (not > t): at t = 0.5 a curve that "
         "reaches exactly 0.5 scores.", dict(strict=True)),
        ("the 11-point sum is divided by 10: there are 11 points, 0.0, 0.1, ..., 1.0.",
         dict(points=10)),
        ("that is the trapezoidal area: VOC2010+ AP sums rectangles, (r_k - r_{k-1}) times the "
         "envelope at r_k, starting from recall 0.", dict(trapezoid=True)),
        ("the area starts at the first recall, not at 0: AP = sum (r_k - r_{k-1}) * envelope "
         "with r_0 = 0.", dict(from_first=True)),
    ]
    out = []
    for hint, knobs in base:
        for grid in [None] + [g for _, g in _CONVENTIONS]:
            out.append((hint, lambda r, p, m, k=knobs, g=grid: _ap_np(r, p, m, thresholds=g, **k)))
    return out


_AP_VARIANTS = _ap_variants()


def _ap_np(recall, precision, use_07, envelope=True, strict=False, points=11, trapezoid=False,
           thresholds=None, from_first=False):
    recall = np.asarray(recall, np.float64)
    precision = np.asarray(precision, np.float64)
    env = np.maximum.accumulate(precision[::-1])[::-1] if envelope else precision
    if use_07:
        total = 0.0
        for t in (EXACT_POINTS if thresholds is None else thresholds):
            mask = recall > t if strict else recall >= t
            if mask.any():
                total += env[mask].max() if envelope else env[np.argmax(mask)]
        return total / points
    if trapezoid:
        return float(np.trapezoid(env, recall))
    if from_first:
        return float(np.sum(np.diff(recall) * env[1:]))
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * env))


@checker("voc_ap", reference=voc.voc_ap, library=voc.voc_ap)
def check_voc_ap(fn):
    """Check ``fn(recall (D,), precision (D,), use_07_metric) -> AP`` (a float).

    VOC07's 11 recall points may be exactly k / 10 (frcnn_lib) or py-faster-rcnn's
    ``np.arange(0., 1.1, 0.1)``: both pass, and the verdict says where they differ.
    """
    title = "voc_ap"
    zig_r = np.array([0.2, 0.4, 0.4, 0.6, 0.8])
    zig_p = np.array([1.0, 0.5, 0.67, 0.75, 0.57])
    rng = np.random.default_rng(15)
    tp = rng.uniform(size=30) < 0.6
    rand_r = np.cumsum(tp) / 25.0
    rand_p = np.cumsum(tp) / np.arange(1, 31)
    cases = [
        ("one perfect detection, VOC07", (np.array([1.0]), np.array([1.0]), True)),
        ("recall 0.25 then 0.5, area", (np.array([0.25, 0.5]), np.array([1.0, 0.5]), False)),
        ("one perfect detection, area", (np.array([1.0]), np.array([1.0]), False)),
        ("precision rises again (envelope), VOC07", (zig_r, zig_p, True)),
        ("precision rises again (envelope), area", (zig_r, zig_p, False)),
        ("recall exactly 0.5 at the end, VOC07", (np.array([0.25, 0.5]), np.array([1.0, 0.5]), True)),
        ("30 random detections (seeded), VOC07", (rand_r, rand_p, True)),
        ("30 random detections (seeded), area", (rand_r, rand_p, False)),
    ]
    names = ["recall", "precision", "use_07_metric"]
    notes = []
    for case, args in cases:
        expected = _ap_reference(*args)
        got = call(title, case, fn, *[a.copy() if isinstance(a, np.ndarray) else a for a in args])
        reason = compare(expected, got, atol=1e-6)
        if reason is None:
            continue
        if args[2] and as_array(got) is not None:
            convention = next(((name, float(_ap_np(*args, thresholds=grid)))
                               for name, grid in _CONVENTIONS
                               if compare(_ap_np(*args, thresholds=grid), got, atol=1e-6) is None),
                              None)
            if convention is not None:
                notes.append((case, convention[0], float(expected), convention[1]))
                continue
        hint = diagnose(got, args, _AP_VARIANTS, atol=1e-6) if as_array(got) is not None else None
        if hint is None and args[2]:
            hint = ("VOC07: the mean over the 11 recall points t = 0, 0.1, ..., 1 of the highest "
                    "precision at a recall >= t (0 where none reaches t).")
        fail(title, case, reason, expected, got, hint or
             "VOC2010+: sum over the points of (r_k - r_{k-1}) times the envelope at r_k, "
             "with r_0 = 0.", dict(zip(names, args)))
    checked = (f"{len(cases)} cases agree with frcnn_lib.evaluation.voc.voc_ap ("
               + ", ".join(c for c, _ in cases) + ")")
    if notes:
        case, name, want, got = notes[0]
        grid = dict(_CONVENTIONS)[name]
        checked += (f".\n  note: {_point_note(name, grid)}, so a recall of exactly 0.3, 0.6 or "
                    f"0.7 misses its point (case '{case}': AP {got:.6f}; with exactly k / 10, "
                    f"frcnn_lib's choice, {want:.6f}). Both are the 11-point convention, not a "
                    "mistake (the VOC devkit's MATLAB 0:0.1:1 rounds its 0.3 the same way); "
                    "frcnn_lib takes np.arange(11) / 10 so that a recall of exactly 3/10 counts "
                    "at t = 0.3.")
    return passed(title, checked)
