"""Checks of the box exercises: VOC to xyxy, tf.image's normalised yxyx, IoU, decoding.

Source of truth: :mod:`frcnn_lib.boxes` (and the VOC reader's rule, CONVENTIONS.md).
Shape glossary: ``N``, ``M`` numbers of boxes.
"""
import math

import numpy as np

from frcnn_lib import boxes as box_ops
from frcnn_lib.exercises._report import checker, run_cases

_rng = np.random.default_rng


def _random_boxes(rng, n, size=100.0):
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(1, size / 2, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


# ----------------------------------------------------------------- VOC -> xyxy
def _voc_reference(voc_boxes):
    # The VOC reader's rule (frcnn_lib.datasets.voc): (xmin - 1, ymin - 1, xmax, ymax).
    return np.asarray(voc_boxes, np.float64) - np.array([1.0, 1.0, 0.0, 0.0])


_VOC_VARIANTS = [
    ("the boxes came back unchanged: VOC corners are 1-based pixel indices; subtract 1 from "
     "xmin and ymin to get continuous coordinates (pixel k covers [k-1, k]).",
     lambda b: np.asarray(b, np.float64)),
    ("you subtracted 1 from all four: xmax and ymax stay as they are, because the last pixel "
     "xmax covers [xmax - 1, xmax] (inclusive indices, so width = xmax - xmin + 1).",
     lambda b: np.asarray(b, np.float64) - 1.0),
    ("you added 1 to xmax and ymax: the devkit's +1 belongs in the width (xmax - xmin + 1), "
     "which the shift of xmin, ymin by -1 already gives.",
     lambda b: np.asarray(b, np.float64) + np.array([0.0, 0.0, 1.0, 1.0])),
    ("you added 1 to xmax and ymax: the devkit's +1 belongs in the width (xmax - xmin + 1); "
     "after xmin - 1, ymin - 1 the maxima stay as they are.",
     lambda b: _voc_reference(b) + np.array([0.0, 0.0, 1.0, 1.0])),
    ("x and y are swapped: VOC's order is xmin, ymin, xmax, ymax, and so is xyxy.",
     lambda b: _voc_reference(b)[:, [1, 0, 3, 2]]),
]


@checker("voc_to_xyxy")
def check_voc_to_xyxy(fn):
    """Check ``fn(voc_boxes (N, 4)) -> (N, 4)``: VOC 1-based inclusive corners to xyxy."""
    cases = [
        ("one pixel, the top-left one", (np.array([[1, 1, 1, 1]], np.float32),)),
        ("a 10 x 5 box", (np.array([[11, 21, 20, 25]], np.float32),)),
        ("whole 500 x 375 image", (np.array([[1, 1, 500, 375]], np.float32),)),
        ("three random boxes (seeded)",
         (np.floor(_random_boxes(_rng(0), 3)) + np.array([1, 1, 1, 1], np.float32),)),
    ]
    return run_cases("voc_to_xyxy", fn, cases, _voc_reference, _VOC_VARIANTS, ["voc_boxes"],
                     generic_hint="(xmin - 1, ymin - 1, xmax, ymax), as the VOC reader does.")


# ----------------------------------------------------------------- xyxy -> normalised yxyx
def _yxyx_reference(boxes, height, width):
    return box_ops.to_normalized_yxyx(boxes, height, width).numpy()


def _np_scale(b, sy, sx):
    b = np.asarray(b, np.float64)
    return b / np.array([sy, sx, sy, sx])


_YXYX_VARIANTS = [
    ("the coordinates are still in xyxy order: tf.image wants (y1, x1, y2, x2).",
     lambda b, h, w: np.asarray(b, np.float64) / np.array([w, h, w, h])),
    ("height and width are swapped: y is divided by the height, x by the width.",
     lambda b, h, w: _np_scale(np.asarray(b)[:, [1, 0, 3, 2]], w, h)),
    ("not normalised: divide y by the image height and x by the image width.",
     lambda b, h, w: np.asarray(b, np.float64)[:, [1, 0, 3, 2]]),
    ("this is (x1, y1, x2, y2) divided by (h, w, h, w): swap to yxyx and divide y by h, x by w.",
     lambda b, h, w: _np_scale(b, h, w)),
]


@checker("to_normalized_yxyx")
def check_to_normalized_yxyx(fn):
    """Check ``fn(boxes (N, 4) xyxy, height, width) -> (N, 4)`` normalised yxyx."""
    cases = [
        ("the whole 200 x 100 (h x w) image", (np.array([[0, 0, 100, 200]], np.float32), 200, 100)),
        ("a box in a 120 x 160 image", (np.array([[40, 30, 80, 90]], np.float32), 120, 160)),
        ("random boxes, 300 x 500 image (seeded)", (_random_boxes(_rng(1), 4), 300, 500)),
    ]
    return run_cases("to_normalized_yxyx", fn, cases, _yxyx_reference, _YXYX_VARIANTS,
                     ["boxes", "height", "width"])


# ----------------------------------------------------------------- IoU
def _iou_reference(a, b):
    return box_ops.iou(a, b).numpy()


def _iou_np(a, b, plus=0.0, clamp=True, subtract_inter=True):
    """A numpy IoU with knobs for the usual mistakes (plus=1: VOC's +1)."""
    a = np.asarray(a, np.float64)[:, None, :]
    b = np.asarray(b, np.float64)[None, :, :]
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + plus
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + plus
    if clamp:
        iw, ih = np.maximum(iw, 0), np.maximum(ih, 0)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + plus) * (a[..., 3] - a[..., 1] + plus)
    area_b = (b[..., 2] - b[..., 0] + plus) * (b[..., 3] - b[..., 1] + plus)
    union = area_a + area_b - (inter if subtract_inter else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


_IOU_VARIANTS = [
    ("this is the VOC devkit's '+1' IoU (width = x2 - x1 + 1). The course's boxes are "
     "continuous: width = x2 - x1, so boxes that only touch have IoU 0.",
     lambda a, b: _iou_np(a, b, plus=1.0)),
    ("the intersection is not clamped at 0: for disjoint boxes x2 - x1 of the overlap is "
     "negative; use max(0, ...) on its width and its height separately.",
     lambda a, b: _iou_np(a, b, clamp=False)),
    ("the union counts the intersection twice: union = area_a + area_b - intersection.",
     lambda a, b: _iou_np(a, b, subtract_inter=False)),
    ("x and y are swapped in the intersection: boxes are (x1, y1, x2, y2).",
     lambda a, b: _iou_np(np.asarray(a)[:, [1, 0, 3, 2]], b)),
]


@checker("iou")
def check_iou(fn):
    """Check ``fn(boxes_a (N, 4), boxes_b (M, 4)) -> (N, M)`` pairwise IoU."""
    sq = np.array([[0, 0, 10, 10]], np.float32)
    cases = [
        ("identical boxes", (sq, sq.copy())),
        ("half overlap", (sq, np.array([[5, 0, 15, 10]], np.float32))),
        ("boxes that only touch along an edge", (sq, np.array([[10, 0, 20, 10]], np.float32))),
        ("disjoint in x, overlapping in y", (sq, np.array([[20, 2, 30, 8]], np.float32))),
        ("disjoint in both x and y", (sq, np.array([[20, 20, 30, 30]], np.float32))),
        ("a box inside another", (np.array([[0, 0, 20, 20]], np.float32),
                                  np.array([[5, 5, 10, 10]], np.float32))),
        ("a tall box against a wide box", (np.array([[0, 0, 4, 20]], np.float32),
                                           np.array([[0, 0, 20, 4]], np.float32))),
        ("two zero-area boxes (empty union)", (np.array([[3, 3, 3, 3]], np.float32),
                                               np.array([[3, 3, 3, 3]], np.float32))),
        ("5 x 3 random boxes (seeded)", (_random_boxes(_rng(2), 5), _random_boxes(_rng(3), 3))),
    ]
    return run_cases("iou", fn, cases, _iou_reference, _IOU_VARIANTS, ["boxes_a", "boxes_b"],
                     generic_hint="IoU = intersection / union; the result is (N, M), row i for "
                                  "boxes_a[i].")


# ----------------------------------------------------------------- decoding deltas
def _decode_reference(deltas, anchors):
    return box_ops.decode(deltas, anchors).numpy()


def _decode_np(deltas, anchors, clamp=True, use_exp=True, dtype=np.float64, corner=False):
    d = np.asarray(deltas, dtype)
    a = np.asarray(anchors, dtype)
    aw, ah = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    ax, ay = (a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2
    if corner:
        ax, ay = a[:, 0], a[:, 1]
    tw, th = d[:, 2], d[:, 3]
    if clamp:
        tw, th = np.minimum(tw, box_ops.DELTA_CLAMP), np.minimum(th, box_ops.DELTA_CLAMP)
    with np.errstate(over="ignore", invalid="ignore"):
        w = (np.exp(tw) if use_exp else 1 + tw) * aw
        h = (np.exp(th) if use_exp else 1 + th) * ah
        cx, cy = ax + d[:, 0] * aw, ay + d[:, 1] * ah
        return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


_CLAMP_HINT = (f"a huge tw or th overflows exp: clamp tw and th at log(1000 / 16) = "
               f"{math.log(1000 / 16):.3f} before exp (as frcnn_lib.boxes.DELTA_CLAMP).")
_DECODE_VARIANTS = [
    (_CLAMP_HINT, lambda d, a: _decode_np(d, a, clamp=False, dtype=np.float32)),
    (_CLAMP_HINT, lambda d, a: _decode_np(d, a, clamp=False, dtype=np.float64)),
    ("the size uses (1 + tw) * wa: it is exp(tw) * wa, since tw = log(w / wa).",
     lambda d, a: _decode_np(d, a, use_exp=False)),
    ("the shift starts from the anchor's corner: tx moves the centre, x = xa + tx * wa with "
     "xa = (x1 + x2) / 2.", lambda d, a: _decode_np(d, a, corner=True)),
]


@checker("decode")
def check_decode(fn):
    """Check ``fn(deltas (N, 4), anchors (N, 4)) -> boxes (N, 4)`` xyxy, unit weights."""
    anchors = np.array([[0, 0, 32, 16]], np.float32)
    rng = _rng(4)
    rand_anchors = _random_boxes(rng, 6)
    cases = [
        ("zero deltas give the anchor back", (np.zeros((1, 4), np.float32), anchors)),
        ("a shift by half a width and a height", (np.array([[0.5, -0.5, 0, 0]], np.float32), anchors)),
        ("double width, half height", (np.array([[0, 0, math.log(2), -math.log(2)]], np.float32), anchors)),
        ("a huge tw = 80 (an untrained network)", (np.array([[0, 0, 80, 0]], np.float32), anchors)),
        ("6 random deltas and anchors (seeded)",
         (rng.normal(0, 0.5, (6, 4)).astype(np.float32), rand_anchors)),
    ]
    return run_cases("decode", fn, cases, _decode_reference, _DECODE_VARIANTS,
                     ["deltas", "anchors"], atol=1e-3)
