"""Checks of the matching exercises: labelling anchors, and balanced sampling.

Source of truth: :func:`frcnn_lib.matching.match` and :func:`frcnn_lib.sampling.sample_balanced`.
Shape glossary: ``N`` anchors, ``G`` ground-truth boxes.
"""
import numpy as np
import tensorflow as tf

from frcnn_lib.exercises._report import as_array, call, checker, fail, passed, run_cases
from frcnn_lib.matching import match
from frcnn_lib.sampling import sample_balanced

# Thresholds exactly representable in float32, so that "IoU == threshold" cases are exact.
POSITIVE_IOU, NEGATIVE_IOU = 0.75, 0.25


# ----------------------------------------------------------------- labelling anchors
def _label_reference(ious, positive_iou, negative_iou):
    ious = np.asarray(ious, np.float32)
    labels, _ = match(ious[None], np.ones((1, ious.shape[1]), bool), positive_iou, negative_iou)
    return labels.numpy()[0]


def _label_np(ious, pos, neg, rule="ties", pos_strict=False, neg_inclusive=False,
              allow_zero=False):
    """numpy labels with knobs for the usual mistakes."""
    ious = np.asarray(ious, np.float64)
    best = ious.max(axis=1)
    labels = np.full(len(ious), -1)
    labels[(best <= neg) if neg_inclusive else (best < neg)] = 0
    labels[(best > pos) if pos_strict else (best >= pos)] = 1
    if rule == "ties":
        col_best = ious.max(axis=0)
        claimed = (ious == col_best[None]) & ((col_best > 0)[None] | allow_zero)
        labels[claimed.any(axis=1)] = 1
    elif rule == "argmax":
        for g in range(ious.shape[1]):
            if ious[:, g].max() > 0:
                labels[np.argmax(ious[:, g])] = 1
    return labels


_LABEL_VARIANTS = [
    ("ties in the best-anchor rule: each object claims ALL the anchors that reach its highest "
     "IoU (argmax picks only the first); compare each column with its maximum instead.",
     lambda i, p, n: _label_np(i, p, n, rule="argmax")),
    ("the best-anchor rule is missing: each object also makes its best anchor(s) positive, "
     "even below the positive threshold.", lambda i, p, n: _label_np(i, p, n, rule="none")),
    ("an IoU equal to the positive threshold must be positive: use >= positive_iou, not >.",
     lambda i, p, n: _label_np(i, p, n, pos_strict=True)),
    ("an IoU equal to the negative threshold is not negative: negatives have IoU < "
     "negative_iou (strictly), so use <, not <=.",
     lambda i, p, n: _label_np(i, p, n, neg_inclusive=True)),
    ("an object that overlaps no anchor at all (best IoU 0) must claim nothing: keep the "
     "best-anchor rule to best IoUs > 0.", lambda i, p, n: _label_np(i, p, n, allow_zero=True)),
]


@checker("label_anchors")
def check_label_anchors(fn):
    """Check ``fn(ious (N, G), positive_iou, negative_iou) -> labels (N,)`` in {1, 0, -1}."""
    p, n = POSITIVE_IOU, NEGATIVE_IOU
    f = np.float32
    rng = np.random.default_rng(5)
    rand = rng.uniform(0, 0.9, (40, 3)).astype(f) * (rng.uniform(size=(40, 3)) < 0.5)
    cases = [
        ("one positive, one negative, one ignored", (np.array([[0.9], [0.1], [0.5]], f), p, n)),
        ("IoU exactly at each threshold",
         (np.array([[0.75, 0.0], [0.25, 0.0], [0.0, 0.8], [0.8, 0.0]], f), p, n)),
        ("an object whose best IoU (0.5) is below the positive threshold",
         (np.array([[0.5], [0.2], [0.1]], f), p, n)),
        ("a tie: two anchors share an object's best IoU 0.4",
         (np.array([[0.4, 0.0], [0.1, 0.9], [0.4, 0.0], [0.0, 0.1]], f), p, n)),
        ("an object that overlaps no anchor", (np.array([[0.9, 0.0], [0.1, 0.0], [0.0, 0.0]], f), p, n)),
        ("40 anchors x 3 objects, random (seeded)", (rand, p, n)),
    ]
    return run_cases("label_anchors", fn, cases, _label_reference, _LABEL_VARIANTS,
                     ["ious", "positive_iou", "negative_iou"],
                     generic_hint="positive: best IoU >= positive_iou OR best anchor of some object "
                                  "(ties included, IoU > 0); negative: best IoU < negative_iou; "
                                  "the rest -1.")


# ----------------------------------------------------------------- balanced sampling
def _reference_counts(labels, num_samples, positive_fraction):
    out = sample_balanced(tf.constant(labels[None], tf.int32), num_samples, positive_fraction,
                          tf.constant([1, 2], tf.int32)).numpy()[0]
    return int((out == 1).sum()), int((out == 0).sum())


def _labels(num_pos, num_neg, num_ignored, seed):
    labels = np.array([1] * num_pos + [0] * num_neg + [-1] * num_ignored, np.int32)
    return np.random.default_rng(seed).permutation(labels).astype(np.int32)


@checker("sample_balanced")
def check_sample_balanced(fn):
    """Check ``fn(labels (N,), num_samples, positive_fraction, rng) -> sampled labels (N,)``.

    The draw is random, so the check compares what must not be random: which values may
    change (only to -1), the numbers of positives and negatives kept (frcnn_lib's), and
    that the choice depends on ``rng`` and is not simply the first anchors.
    """
    title = "sample_balanced"
    cases = [
        ("few positives: negatives fill the budget", (_labels(5, 1000, 50, 0), 256, 0.5)),
        ("many positives: at most half", (_labels(300, 1000, 0, 1), 256, 0.5)),
        ("fewer candidates than the budget", (_labels(3, 10, 7, 2), 256, 0.5)),
        ("everything ignored", (np.full(20, -1, np.int32), 16, 0.5)),
        ("R-CNN style: 64 samples, 25 % foreground", (_labels(40, 500, 0, 3), 64, 0.25)),
    ]
    for case, (labels, num, frac) in cases:
        inputs = {"labels": f"{len(labels)} labels: {(labels == 1).sum()} positive, "
                            f"{(labels == 0).sum()} negative, {(labels == -1).sum()} ignored",
                  "num_samples": num, "positive_fraction": frac}
        got = call(title, case, fn, labels.copy(), num, frac, np.random.default_rng(10))
        arr = as_array(got)
        if arr is None or arr.shape != labels.shape:
            fail(title, case, f"expected an array of shape {labels.shape}, got "
                 f"{getattr(arr, 'shape', type(got).__name__)}",
                 hint="return the whole label vector, with -1 for everything not sampled.",
                 inputs=inputs)
        changed = (arr != labels) & (arr != -1)
        if changed.any():
            i = int(np.flatnonzero(changed)[0])
            fail(title, case, f"label {i} went from {labels[i]} to {arr[i]:g}", hint=(
                "sampling only turns labels into -1: a positive stays 1 or becomes -1, a "
                "negative stays 0 or becomes -1, an ignored anchor stays -1."), inputs=inputs)
        want_pos, want_neg = _reference_counts(labels, num, frac)
        got_pos, got_neg = int((arr == 1).sum()), int((arr == 0).sum())
        if got_pos != want_pos:
            fail(title, case, "wrong number of positives", f"{want_pos} positives",
                 f"{got_pos} positives", hint=(
                     "keep min(#positives, round(num_samples * positive_fraction)) positives."),
                 inputs=inputs)
        if got_neg != want_neg:
            fixed = min(int((labels == 0).sum()), num - int(round(num * frac)))
            hint = ("negatives fill the rest of the budget: num_samples - (positives kept), not "
                    "num_samples * (1 - positive_fraction)." if got_neg == fixed else
                    "keep min(#negatives, num_samples - positives kept) negatives.")
            fail(title, case, "wrong number of negatives", f"{want_neg} negatives",
                 f"{got_neg} negatives", hint=hint, inputs=inputs)
        for value, count in ((1, got_pos), (0, got_neg)):
            members = np.flatnonzero(labels == value)
            if 0 < count < len(members):
                chosen = np.flatnonzero(arr == value)
                if np.array_equal(chosen, members[:count]):
                    fail(title, case, f"the {'positives' if value else 'negatives'} kept are the "
                         "first ones in index order", hint=(
                             "choose at random with the rng argument (e.g. rng.choice(..., "
                             "replace=False)): the first anchors all sit in the top rows of "
                             "the image."), inputs=inputs)
                again = as_array(call(title, case, fn, labels.copy(), num, frac,
                                      np.random.default_rng(11)))
                if again is not None and np.array_equal(again, arr):
                    fail(title, case, "two different rng seeds gave the same sample", hint=(
                        "draw with the rng argument passed in, not a fixed seed or a global "
                        "generator."), inputs=inputs)
    return passed(title, f"{len(cases)} cases: only -1 is written, the counts of positives and "
                  "negatives equal frcnn_lib.sampling.sample_balanced's, and the draw follows rng")
