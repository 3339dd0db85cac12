"""Check of the FPN exercise (notebook 12): which pyramid level pools a RoI.

Source of truth: eq. 1 of Lin et al., "Feature Pyramid Networks for Object Detection"
(CVPR 2017): a RoI of width ``w`` and height ``h`` (input pixels) is pooled from level
``k = floor(k0 + log2(sqrt(w h) / 224))``, clamped to ``[k_min, k_max]`` (the paper's
``k0 = 4`` and levels ``P2..P5``; Detectron's ``map_rois_to_fpn_levels`` clamps the same
way).  frcnn_lib has no FPN, so the reference is :func:`fpn_level` below.
Shape glossary: ``n`` boxes.
"""
import numpy as np

from frcnn_lib.course.exercises._report import checker, run_cases


def fpn_level(boxes, k0=4, canonical=224.0, k_min=2, k_max=5):
    """FPN's level of each of ``boxes (n, 4)`` xyxy -> ``(n,)`` int:
    ``floor(k0 + log2(sqrt(w * h) / canonical))`` clamped to ``[k_min, k_max]``.

    A ``canonical``-pixel RoI (ImageNet's 224) comes from ``P_k0``; each doubling of its side
    moves it one level up.  Sizes are floored at a tiny epsilon, so an empty box gets
    ``k_min`` instead of a warning.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    w = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-6)
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    level = np.floor(k0 + np.log2(np.sqrt(w * h) / canonical))
    return np.clip(level, k_min, k_max).astype(np.int64)


def _level_np(boxes, k0=4, canonical=224.0, k_min=2, k_max=5, rounding=np.floor, clamp=True,
              log=np.log2, root=True):
    """numpy levels with knobs for the usual mistakes."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    area = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-6) * np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    size = np.sqrt(area) if root else area
    level = rounding(k0 + log(size / canonical))
    return np.clip(level, k_min, k_max) if clamp else level


_FPN_VARIANTS = [
    ("the level is rounded to the nearest: eq. 1 floors it (np.floor), so a RoI 1.9 times "
     "the canonical size still comes from P_k0.",
     lambda b, *a: _level_np(b, *a, rounding=np.round)),
    ("the level is rounded up: eq. 1 floors it (np.floor).",
     lambda b, *a: _level_np(b, *a, rounding=np.ceil)),
    ("the level is not clamped: clip it to [k_min, k_max] (the pyramid has only P2..P5), "
     "np.clip(level, k_min, k_max).", lambda b, *a: _level_np(b, *a, clamp=False)),
    ("that is the natural log: eq. 1 uses log2, so each doubling of the side is one level.",
     lambda b, *a: _level_np(b, *a, log=np.log)),
    ("the square root is missing: the RoI's size is sqrt(w * h), the side of a square of the "
     "same area (compare it with 224, a side).", lambda b, *a: _level_np(b, *a, root=False)),
    ("the canonical size is ignored: the level is k0 + log2(sqrt(w * h) / canonical).",
     lambda b, k0=4, canonical=224.0, k_min=2, k_max=5: _level_np(b, k0, 224.0, k_min, k_max)),
]


@checker("fpn_level", reference=fpn_level, library=fpn_level)
def check_fpn_level(fn):
    """Check ``fn(boxes (n, 4), k0=4, canonical=224.0, k_min=2, k_max=5) -> (n,)`` int levels."""
    f = np.float32
    rng = np.random.default_rng(18)
    xy = rng.uniform(0, 300, (12, 2))
    wh = np.exp(rng.uniform(np.log(4), np.log(900), (12, 2)))
    rand = np.concatenate([xy, xy + wh], axis=1).astype(f)
    cases = [
        ("a 224 x 224 RoI is P4", (np.array([[10, 10, 234, 234]], f),)),
        ("300 x 300 (1.34 x 224: still P4) and 150 x 150 (P3)",
         (np.array([[0, 0, 300, 300], [0, 0, 150, 150]], f),)),
        ("sides 420 (1.9 x 224) and 60 x 250 (sqrt 122)",
         (np.array([[0, 0, 420, 420], [5, 5, 65, 255]], f),)),
        ("tiny (8 px) and huge (1600 px): clamped to P2 and P5",
         (np.array([[0, 0, 8, 8], [0, 0, 1600, 1600]], f),)),
        ("12 random boxes (seeded)", (rand,)),
        ("k0 = 5, canonical 100, levels 3..6, 12 random boxes (seeded)", (rand, 5, 100.0, 3, 6)),
    ]
    return run_cases("fpn_level", fn, cases, fpn_level, _FPN_VARIANTS, ["boxes", "k0", "canonical",
                     "k_min", "k_max"], atol=0, rtol=0,
                     generic_hint="k = floor(k0 + log2(sqrt(w * h) / canonical)), then "
                                  "np.clip(k, k_min, k_max), as integers.")
