"""Checks of the loss exercises: smooth-L1 and the two RPN losses.

Source of truth: :mod:`frcnn_lib.losses` (used as ``FasterRCNN.compute_losses`` does).
Shape glossary: ``B`` images, ``N`` anchors per image.
"""
import numpy as np

from frcnn_lib import losses
from frcnn_lib.course.exercises._report import checker, run_cases
from frcnn_lib.course.exercises._report import cases_and_graph


# ----------------------------------------------------------------- smooth-L1
def _smooth_l1_reference(x, sigma):
    return losses.smooth_l1(x, sigma).numpy()


def _sl1(x, sigma, switch=None, half=0.5, offset=True, quad_power=2):
    x = np.abs(np.asarray(x, np.float64))
    s2 = sigma ** 2
    switch = 1.0 / s2 if switch is None else switch
    quad = half * sigma ** quad_power * x ** 2
    lin = x - (0.5 / s2 if offset else 0.0)
    return np.where(x < switch, quad, lin)


_SL1_VARIANTS = [
    ("the switch point is at 1 / sigma**2 (not 1 / sigma): with sigma = 3 the quadratic part "
     "ends at |x| = 1/9.", lambda x, s: _sl1(x, s, switch=1.0 / s)),
    ("the quadratic part is 0.5 * (sigma * x)**2: sigma is squared too.",
     lambda x, s: _sl1(x, s, quad_power=1)),
    ("the quadratic part has a factor 0.5: 0.5 * (sigma * x)**2.", lambda x, s: _sl1(x, s, half=1.0)),
    ("the linear part is |x| - 0.5 / sigma**2: without the offset the loss jumps at the switch.",
     lambda x, s: _sl1(x, s, offset=False)),
    ("this is plain L1, |x|: smooth-L1 is quadratic near 0.", lambda x, s: np.abs(np.asarray(x, float))),
    ("this is L2, 0.5 * x**2: smooth-L1 turns linear beyond 1 / sigma**2.",
     lambda x, s: 0.5 * np.asarray(x, float) ** 2),
]


@checker("smooth_l1", reference=losses.smooth_l1, library=losses.smooth_l1, part="smooth_l1")
def check_smooth_l1(fn):
    """Check ``fn(x, sigma) -> elementwise smooth-L1``, any shape."""
    pts = np.array([-3.0, -1.0, -0.5, 0.0, 0.05, 0.5, 0.999, 1.0, 2.0], np.float32)
    rng = np.random.default_rng(6)
    cases = [
        ("sigma = 1, points around the switch at |x| = 1", (pts, 1.0)),
        ("sigma = 3 (the RPN's), switch at |x| = 1/9",
         (np.array([-1.0, -1 / 9, -0.1, 0.0, 0.1, 1 / 9, 0.2, 2.0], np.float32), 3.0)),
        ("sigma = 0.5, switch at |x| = 4", (np.array([-5.0, -2.0, 0.5, 3.9, 4.0, 6.0], np.float32), 0.5)),
        ("a (2, 3, 4) array, sigma = 3 (seeded)", (rng.normal(0, 0.5, (2, 3, 4)).astype(np.float32), 3.0)),
    ]
    return cases_and_graph("smooth_l1", fn, cases, _smooth_l1_reference, (len(cases) - 1, (0,)),
                           _SL1_VARIANTS, ["x", "sigma"],
                           generic_hint="0.5 * (sigma * x)**2 where |x| < 1 / sigma**2, else "
                                        "|x| - 0.5 / sigma**2.", source="frcnn_lib.losses.smooth_l1")


# ----------------------------------------------------------------- the RPN losses
def rpn_losses(logits, deltas, labels, target_deltas, sigma=3.0):
    """The library's answer in the exercise's signature: ``(objectness_loss, box_loss)``, as
    ``FasterRCNN.compute_losses`` gets them from :mod:`frcnn_lib.losses`: the cross-entropy
    over the sampled anchors (label 0 or 1), the smooth-L1 (summed over the 4 coordinates)
    over the positives; both divided by the number of sampled anchors of the WHOLE batch."""
    labels = np.asarray(labels)
    sampled = labels >= 0
    obj = losses.objectness_loss(logits, labels, sampled)
    box = losses.box_regression_loss(deltas, target_deltas, labels == 1, sampled, sigma)
    return obj, box


def _rpn_reference(logits, deltas, labels, target_deltas, sigma):
    obj, box = rpn_losses(logits, deltas, labels, target_deltas, sigma)
    return np.array([float(obj), float(box)])


def _rpn_np(logits, deltas, labels, targets, sigma, bce_on="sampled", box_norm="sampled",
            box_on="positive", coord="sum", per_image=False):
    if per_image:   # each image normalised by its own count, then the mean over the images
        return np.mean([_rpn_np(logits[i:i + 1], deltas[i:i + 1], labels[i:i + 1],
                                targets[i:i + 1], sigma, bce_on, box_norm, box_on, coord)
                        for i in range(len(labels))], axis=0)
    z = np.asarray(logits, np.float64)
    y = (labels == 1).astype(np.float64)
    bce = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    sampled = labels >= 0
    bce_mask = sampled if bce_on == "sampled" else np.ones_like(sampled)
    obj = (bce * bce_mask).sum() / max(bce_mask.sum(), 1)
    per = _sl1(np.asarray(deltas, np.float64) - targets, sigma)
    per = per.sum(-1) if coord == "sum" else per.mean(-1)
    box_mask = labels == 1 if box_on == "positive" else sampled
    norm = {"sampled": sampled.sum(), "positive": (labels == 1).sum()}[box_norm]
    return np.array([obj, (per * box_mask).sum() / max(norm, 1)])


_BATCH = ("both losses are divided by the number of sampled anchors of the WHOLE batch "
          "(labels >= 0 summed over every image), not per image and then averaged")
_RPN_VARIANTS = [
    ("the objectness loss includes the ignored anchors (label -1): average the cross-entropy "
     "over the sampled anchors only (label 0 or 1).",
     lambda *a: _rpn_np(*a, bce_on="all")),
    ("the box loss is divided by the number of positives: it is divided by the number of "
     "sampled anchors of the whole batch, like the objectness loss (frcnn_lib's convention).",
     lambda *a: _rpn_np(*a, box_norm="positive")),
    ("the box loss includes the negatives: only positive anchors (label 1) have a box target.",
     lambda *a: _rpn_np(*a, box_on="sampled")),
    ("the box loss uses sigma = 1: the RPN's smooth-L1 has sigma = 3 (pass sigma on).",
     lambda lo, d, la, t, s: _rpn_np(lo, d, la, t, 1.0)),
    ("the smooth-L1 is averaged over the 4 coordinates: sum it over them.",
     lambda *a: _rpn_np(*a, coord="mean")),
    (f"each image is normalised by its own count, then the images averaged: {_BATCH} "
     "(frcnn_lib.losses, as py-faster-rcnn with one image per batch).",
     lambda *a: _rpn_np(*a, per_image=True)),
    (f"each image is normalised by its own count, and the box loss by its positives: {_BATCH}.",
     lambda *a: _rpn_np(*a, per_image=True, box_norm="positive")),
]


@checker("rpn_losses", reference=rpn_losses, library=losses)
def check_rpn_losses(fn):
    """Check ``fn(logits (B, N), deltas (B, N, 4), labels (B, N), target_deltas (B, N, 4),
    sigma) -> (objectness_loss, box_loss)``, two scalars, each normalised by the number of
    sampled anchors (label 0 or 1) of the whole batch."""

    def case(b, n, seed, uneven=False):
        r = np.random.default_rng(seed)
        labels = r.choice([1, 0, 0, -1], size=(b, n)).astype(np.int32)
        if uneven:   # images with very different numbers of sampled anchors
            labels[0, n // 4:] = -1
        return (r.normal(0, 2, (b, n)).astype(np.float32),
                r.normal(0, 0.3, (b, n, 4)).astype(np.float32), labels,
                r.normal(0, 0.3, (b, n, 4)).astype(np.float32), 3.0)

    one = (np.array([[2.0, -1.0, 0.5, 3.0]], np.float32),
           np.array([[[0.1, 0, 0, 0], [0, 0, 0, 0], [0.5, -0.5, 0.2, 0], [9, 9, 9, 9]]], np.float32),
           np.array([[1, 0, 1, -1]], np.int32), np.zeros((1, 4, 4), np.float32), 3.0)
    cases = [
        ("4 anchors by hand: 2 positive, 1 negative, 1 ignored", one),
        ("a batch of 2 images x 50 anchors (seeded)", case(2, 50, 8)),
        ("2 images, the first with a quarter as many sampled anchors (seeded)",
         case(2, 80, 10, uneven=True)),
        ("a batch of 3 images x 200 anchors (seeded)", case(3, 200, 9)),
    ]
    return run_cases("rpn_losses", fn, cases, _rpn_reference, _RPN_VARIANTS,
                     ["logits", "deltas", "labels", "target_deltas", "sigma"], atol=1e-4,
                     generic_hint="objectness: binary cross-entropy of the sampled anchors "
                                  "(label 0 or 1); box: smooth-L1 with sigma, summed over the 4 "
                                  f"coordinates, of the positives only; {_BATCH}.")
