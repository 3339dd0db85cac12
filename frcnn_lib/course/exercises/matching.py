"""Checks of the matching exercises: labelling anchors, and balanced sampling.

Source of truth: :func:`frcnn_lib.matching.match` and :mod:`frcnn_lib.sampling` (its
``sample_balanced`` draws uniform keys with a stateless seed and keeps, per class, the members
with the smallest keys: ``_take_first``).  The exercise takes the keys as an argument, so the
learner's choice must equal the library's exactly.
Shape glossary: ``N`` anchors, ``G`` ground-truth boxes.
"""
import numpy as np
import tensorflow as tf

from frcnn_lib import sampling
from frcnn_lib.course.exercises._report import as_array, call, checker, compare, fail, passed
from frcnn_lib.course.exercises._report import cases_and_graph, graph_case
from frcnn_lib.matching import match

# Thresholds exactly representable in float32, so that "IoU == threshold" cases are exact.
POSITIVE_IOU, NEGATIVE_IOU = 0.75, 0.25


# ----------------------------------------------------------------- labelling anchors
def label_anchors(ious, positive_iou, negative_iou):
    """The library's answer in the exercise's signature: ``ious (N, G) -> labels (N,)`` int32
    in {1, 0, -1}, by :func:`frcnn_lib.matching.match` (every box real, every anchor valid)."""
    ious = tf.convert_to_tensor(ious, tf.float32)
    gt_valid = tf.ones(tf.stack([1, tf.shape(ious)[1]]), tf.bool)
    labels, _ = match(ious[None], gt_valid, positive_iou, negative_iou)
    return labels[0]


def _label_reference(ious, positive_iou, negative_iou):
    return label_anchors(ious, positive_iou, negative_iou).numpy()


def _label_np(ious, pos, neg, rule="ties", pos_strict=False, neg_inclusive=False,
              allow_zero=False, negatives_last=False):
    """numpy labels with knobs for the usual mistakes."""
    ious = np.asarray(ious, np.float64)
    best = ious.max(axis=1)
    labels = np.full(len(ious), -1)
    negative = (best <= neg) if neg_inclusive else (best < neg)
    labels[negative] = 0
    labels[(best > pos) if pos_strict else (best >= pos)] = 1
    if rule == "ties":
        col_best = ious.max(axis=0)
        claimed = (ious == col_best[None]) & ((col_best > 0)[None] | allow_zero)
        labels[claimed.any(axis=1)] = 1
    elif rule == "argmax":
        for g in range(ious.shape[1]):
            if ious[:, g].max() > 0:
                labels[np.argmax(ious[:, g])] = 1
    if negatives_last:
        labels[negative] = 0
    return labels


_LABEL_VARIANTS = [
    ("the negatives are written last and overwrite best-anchor positives: an object whose best "
     "IoU is below negative_iou must still claim its best anchor(s). Write the negatives "
     "first, then the positives (threshold and best-anchor rule).",
     lambda i, p, n: _label_np(i, p, n, negatives_last=True)),
    ("the negatives are written last and overwrite best-anchor positives, and ties in the "
     "best-anchor rule are missed (argmax): negatives first, then positives, each object "
     "claiming every anchor that reaches its highest IoU.",
     lambda i, p, n: _label_np(i, p, n, rule="argmax", negatives_last=True)),
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


@checker("label_anchors", reference=label_anchors, library=match, part="label_anchors")
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
        ("an object whose best IoU (0.125) is below the negative threshold",
         (np.array([[0.125, 0.0], [0.0625, 0.9], [0.0, 0.0], [0.125, 0.0]], f), p, n)),
        ("40 anchors x 3 objects, random (seeded)", (rand, p, n)),
    ]
    return cases_and_graph("label_anchors", fn, cases, _label_reference, (len(cases) - 1, (0,)),
                           _LABEL_VARIANTS, ["ious", "positive_iou", "negative_iou"],
                           generic_hint="positive: best IoU >= positive_iou OR best anchor of "
                                        "some object (ties included, IoU > 0); negative: best "
                                        "IoU < negative_iou and not such a best anchor; the "
                                        "rest -1.", source="frcnn_lib.matching.match")


# ----------------------------------------------------------------- balanced sampling
def sample_balanced(labels, keys, num_samples, positive_fraction):
    """The library's answer in the exercise's signature: ``labels (N,)``, ``keys (N,)`` uniform
    in [0, 1) -> ``(N,)`` int32.  Keeps ``min(#pos, round(S * f))`` positives and
    ``min(#neg, S - positives kept)`` negatives, those with the smallest keys (ties: the lower
    index), by :func:`frcnn_lib.sampling._take_first` as ``sampling.sample_balanced`` does
    with its own stateless keys; everything else -1."""
    labels = tf.cast(tf.convert_to_tensor(labels), tf.int32)[None]
    keys = tf.cast(tf.convert_to_tensor(keys), tf.float32)[None]
    positive, negative = labels == 1, labels == 0
    max_pos = int(round(num_samples * positive_fraction))
    num_pos = tf.minimum(tf.reduce_sum(tf.cast(positive, tf.int32), axis=1, keepdims=True), max_pos)
    num_neg = tf.minimum(tf.reduce_sum(tf.cast(negative, tf.int32), axis=1, keepdims=True),
                         num_samples - num_pos)
    take_pos = sampling._take_first(positive, keys, num_pos, max_pos)
    take_neg = sampling._take_first(negative, keys, num_neg, num_samples)
    return tf.where(take_pos, 1, tf.where(take_neg, 0, -1))[0]


def _sample_reference(labels, keys, num_samples, positive_fraction):
    return sample_balanced(labels, keys, num_samples, positive_fraction).numpy()


def _sample_np(labels, keys, num_samples, fraction, pick="smallest", neg_quota=False):
    """numpy sampling with knobs for the usual mistakes."""
    labels = np.asarray(labels)
    keys = np.asarray(keys, np.float64)
    out = np.full(labels.shape, -1, np.int64)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    n_pos = min(len(pos), int(round(num_samples * fraction)))
    quota = int(round(num_samples * (1 - fraction))) if neg_quota else num_samples - n_pos
    n_neg = min(len(neg), quota)

    def choose(idx, k):
        if pick == "first":
            return idx[:k]
        if pick == "last":
            return idx[len(idx) - k:]
        order = {"smallest": np.argsort(keys[idx], kind="stable"),
                 "largest": np.argsort(-keys[idx], kind="stable"),
                 "ties_high": np.argsort(keys[idx][::-1], kind="stable")}[pick]
        if pick == "ties_high":
            return idx[::-1][order][:k]
        return idx[order][:k]

    out[choose(pos, n_pos)] = 1
    out[choose(neg, n_neg)] = 0
    return out


_SAMPLE_VARIANTS = [
    ("the members kept are the first ones in index order: keep those with the SMALLEST keys "
     "(the keys are the random draw; the first anchors all sit in the top rows of the image).",
     lambda la, k, s, f: _sample_np(la, k, s, f, pick="first")),
    ("the members kept are the last ones in index order: keep those with the smallest keys.",
     lambda la, k, s, f: _sample_np(la, k, s, f, pick="last")),
    ("you kept the members with the LARGEST keys: keep the smallest (sort ascending).",
     lambda la, k, s, f: _sample_np(la, k, s, f, pick="largest")),
    ("negatives get a fixed quota num_samples * (1 - positive_fraction): they fill the rest of "
     "the budget, num_samples - (positives kept), when there are few positives.",
     lambda la, k, s, f: _sample_np(la, k, s, f, neg_quota=True)),
    ("equal keys go to the higher index: ties go to the LOWER index (a stable ascending sort: "
     "ops.argsort, or np.argsort(..., kind='stable')).",
     lambda la, k, s, f: _sample_np(la, k, s, f, pick="ties_high")),
]


def _labels(num_pos, num_neg, num_ignored, seed):
    labels = np.array([1] * num_pos + [0] * num_neg + [-1] * num_ignored, np.int32)
    return np.random.default_rng(seed).permutation(labels).astype(np.int32)


def _keys(n, rng):
    return rng.uniform(size=n).astype(np.float32)


def _describe(labels):
    return (f"{len(labels)} labels: {int((labels == 1).sum())} positive, "
            f"{int((labels == 0).sum())} negative, {int((labels == -1).sum())} ignored")


@checker("sample_balanced", reference=sample_balanced, library=sampling, part="sample")
def check_sample_balanced(fn):
    """Check ``fn(labels (N,), keys (N,), num_samples, positive_fraction) -> sampled labels (N,)``.

    The keys are uniform random numbers drawn by the caller; the right answer keeps, of each
    class, the members with the smallest keys (ties: the lower index), so it is exactly the
    library's.  The same labels with keys from two generators must give two samples, each
    following its keys.
    """
    title = "sample_balanced"
    many = _labels(300, 1000, 0, 1)
    tied = _labels(6, 30, 4, 4)
    tied_keys = (np.random.default_rng(24).integers(0, 4, size=len(tied)) / 4).astype(np.float32)
    cases = [
        ("few positives: negatives fill the budget", (_labels(5, 1000, 50, 0), 256, 0.5), 20),
        ("many positives: at most half", (many, 256, 0.5), 21),
        ("the same labels, keys from another generator", (many, 256, 0.5), 22),
        ("fewer candidates than the budget", (_labels(3, 10, 7, 2), 256, 0.5), 23),
        ("everything ignored", (np.full(20, -1, np.int32), 16, 0.5), 25),
        ("R-CNN style: 64 samples, 25 % foreground", (_labels(40, 500, 0, 3), 64, 0.25), 26),
        ("keys with ties (quarters)", (tied, 8, 0.5), None),
    ]
    full = []
    for case, (labels, num, frac), seed in cases:
        keys = tied_keys if seed is None else _keys(len(labels), np.random.default_rng(seed))
        full.append((case, (labels, keys, num, frac)))
    for case, args in full:
        labels = args[0]
        inputs = {"labels": _describe(labels), "keys": args[1], "num_samples": args[2],
                  "positive_fraction": args[3]}
        expected = _sample_reference(*args)
        got = call(title, case, fn, labels.copy(), args[1].copy(), args[2], args[3])
        arr = as_array(got)
        if arr is None or arr.shape != labels.shape:
            fail(title, case, f"expected an array of shape {labels.shape}, got "
                 f"{getattr(arr, 'shape', type(got).__name__)}",
                 hint="return the whole label vector, with -1 for everything not sampled.",
                 inputs=inputs)
        if compare(expected, arr, atol=0, rtol=0) is None:
            continue
        changed = (arr != labels) & (arr != -1)
        if changed.any():
            i = int(np.flatnonzero(changed)[0])
            fail(title, case, f"label {i} went from {labels[i]} to {arr[i]:g}", hint=(
                "sampling only turns labels into -1: a positive stays 1 or becomes -1, a "
                "negative stays 0 or becomes -1, an ignored anchor stays -1."), inputs=inputs)
        want_pos, want_neg = int((expected == 1).sum()), int((expected == 0).sum())
        got_pos, got_neg = int((arr == 1).sum()), int((arr == 0).sum())
        if got_pos != want_pos:
            fail(title, case, "wrong number of positives", f"{want_pos} positives",
                 f"{got_pos} positives", hint=(
                     "keep min(#positives, round(num_samples * positive_fraction)) positives."),
                 inputs=inputs)
        if got_neg != want_neg:
            hint = ("keep min(#negatives, num_samples - positives kept) negatives.")
            for text, variant in _SAMPLE_VARIANTS:
                if compare(variant(*args), arr, atol=0, rtol=0) is None:
                    hint = text
                    break
            fail(title, case, "wrong number of negatives", f"{want_neg} negatives",
                 f"{got_neg} negatives", hint=hint, inputs=inputs)
        hint = None
        for text, variant in _SAMPLE_VARIANTS:
            if compare(variant(*args), arr, atol=0, rtol=0) is None:
                hint = text
                break
        if hint is None:
            again = as_array(call(title, case, fn, labels.copy(), args[1].copy(), args[2], args[3]))
            if again is not None and not np.array_equal(again, arr):
                hint = ("two calls with the same keys gave different samples: draw nothing "
                        "yourself (no np.random, no rng): the keys ARE the random draw, and "
                        "the sample is the members with the smallest keys.")
            else:
                hint = ("the counts are right but not the members: of each class keep those "
                        "with the smallest keys (ties: the lower index), e.g. rank = "
                        "argsort(argsort(keys where member, else 2)) < count.")
        differ = np.flatnonzero(arr != expected)
        fail(title, case, f"the right numbers of positives ({got_pos}) and negatives "
             f"({got_neg}), but {len(differ)} labels differ from the library's choice; first at "
             f"index {int(differ[0])}: expected {int(expected[differ[0]])}, got {arr[differ[0]]:g}",
             hint=hint, inputs=inputs)
    case, args = full[1]
    graph_case(title, fn, case, args, (0, 1), _sample_reference, atol=0, rtol=0)
    return passed(title, f"{len(full)} cases: the sample equals frcnn_lib's exactly (the "
                  "members with the smallest keys, ties to the lower index; two generators' "
                  f"keys, two samples), and '{case}' also inside tf.function (the compiled "
                  "training step)")
