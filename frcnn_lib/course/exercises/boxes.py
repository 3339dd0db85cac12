"""Checks of the box exercises: VOC to xyxy, tf.image's normalised yxyx, IoU, encoding and
decoding.

Source of truth: :mod:`frcnn_lib.boxes` (and the VOC reader's rule, CONVENTIONS.md).
Shape glossary: ``N``, ``M`` numbers of boxes; ``...`` any leading dimensions.

Parts of the detector (``iou``, ``encode``, ``decode``, ... -- ``frcnn_lib.course.promotion``) run
inside the compiled training step, where their inputs are symbolic tensors.  Their checks
end with ``_report.graph_case``: one case again, inside ``tf.function`` with tensors of unknown
size, so that numpy-only code fails here, with a hint, and not in notebook 09's training.
"""
import math

import numpy as np

from frcnn_lib import boxes as box_ops
from frcnn_lib.datasets import voc as voc_reader
from frcnn_lib.course.exercises._report import (as_array, call, cases_and_graph, checker, fail,
                                         graph_case, passed, run_cases, value_cases)

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


def voc_to_xyxy(voc_boxes):
    """The library's answer in the exercise's signature: ``(N, 4)`` VOC corners -> xyxy."""
    return _voc_reference(voc_boxes).astype(np.float32)


@checker("voc_to_xyxy", reference=voc_to_xyxy, library=voc_reader._read_annotation)
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


@checker("to_normalized_yxyx", reference=box_ops.to_normalized_yxyx,
         library=box_ops.to_normalized_yxyx)
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


@checker("iou", reference=box_ops.iou, library=box_ops.iou, part="iou")
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
    return cases_and_graph("iou", fn, cases, _iou_reference, (len(cases) - 1, (0, 1)),
                           _IOU_VARIANTS, ["boxes_a", "boxes_b"],
                           generic_hint="IoU = intersection / union; the result is (N, M), row i "
                                        "for boxes_a[i].", source="frcnn_lib.boxes.iou")


# ----------------------------------------------------------------- encoding and decoding deltas
def _centre_size(boxes, corners=False):
    b = np.asarray(boxes, np.float64)
    w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    if corners:
        return b[..., 0], b[..., 1], w, h
    return b[..., 0] + w / 2, b[..., 1] + h / 2, w, h


def _encode_reference(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return box_ops.encode(boxes, anchors, weights).numpy()


def _encode_np(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0), size="log", by="anchor",
               corners=False, use_weights="multiply"):
    """numpy deltas with knobs for the usual mistakes."""
    x, y, w, h = _centre_size(boxes, corners)
    ax, ay, aw, ah = _centre_size(anchors, corners)
    dw, dh = (w, h) if by == "box" else (aw, ah)
    with np.errstate(divide="ignore", invalid="ignore"):
        tw, th = {"log": (np.log(w / aw), np.log(h / ah)), "ratio": (w / aw, h / ah),
                  "ratio-1": (w / aw - 1, h / ah - 1),
                  "inverted": (np.log(aw / w), np.log(ah / h))}[size]
        t = np.stack(np.broadcast_arrays((x - ax) / dw, (y - ay) / dh, tw, th), axis=-1)
    wts = np.asarray(weights, np.float64)
    return {"multiply": t * wts, "ignore": t, "divide": t / wts}[use_weights]


_ENCODE_VARIANTS = [
    ("tw, th have no log: tw = log(w / wa), th = log(h / ha) (the size is regressed in log "
     "space, so doubling and halving are symmetric).",
     lambda b, a, w=(1, 1, 1, 1): _encode_np(b, a, w, size="ratio")),
    ("tw, th have no log: tw = log(w / wa), th = log(h / ha), not w / wa - 1.",
     lambda b, a, w=(1, 1, 1, 1): _encode_np(b, a, w, size="ratio-1")),
    ("tw and th have the wrong sign: tw = log(w / wa), the box's size over the anchor's.",
     lambda b, a, w=(1, 1, 1, 1): _encode_np(b, a, w, size="inverted")),
    ("the shift is divided by the box's size: divide by the ANCHOR's, tx = (x - xa) / wa "
     "(the anchor is what the network sees; the target box is what it must find).",
     lambda b, a, w=(1, 1, 1, 1): _encode_np(b, a, w, by="box")),
    ("the shift is measured between corners: tx moves the centre, tx = (x - xa) / wa with "
     "x = (x1 + x2) / 2 and xa = (xa1 + xa2) / 2.",
     lambda b, a, w=(1, 1, 1, 1): _encode_np(b, a, w, corners=True)),
    ("the weights are ignored: multiply (tx, ty, tw, th) by (wx, wy, ww, wh) (R-CNN uses "
     "(10, 10, 5, 5)).", lambda b, a, w=(1, 1, 1, 1): _encode_np(b, a, w, use_weights="ignore")),
    ("the deltas are divided by the weights: multiply them (decode divides).",
     lambda b, a, w=(1, 1, 1, 1): _encode_np(b, a, w, use_weights="divide")),
]


def _coder_cases(kind):
    """Cases of encode (``kind="encode"``: boxes, anchors) or decode (deltas, anchors)."""
    f = np.float32
    rng = _rng(4 if kind == "decode" else 16)
    anchor = np.array([[8, 4, 40, 20]], f)                                 # 32 x 16 at (24, 12)
    rand_anchors = _random_boxes(rng, 6)
    batch_anchors = _random_boxes(rng, 6).reshape(2, 3, 1, 4)             # (B, R, 1, 4)
    if kind == "encode":
        jitter = rng.normal(0, 3, (6, 4)).astype(f)
        rand_boxes = rand_anchors + jitter
        rand_boxes[:, 2:] = np.maximum(rand_boxes[:, 2:], rand_boxes[:, :2] + 1)
        batch_boxes = np.repeat(batch_anchors, 5, axis=2) + rng.normal(0, 3, (2, 3, 5, 4)).astype(f)
        batch_boxes[..., 2:] = np.maximum(batch_boxes[..., 2:], batch_boxes[..., :2] + 1)
        return [
            ("a box equal to its anchor gives zeros", (anchor.copy(), anchor, (1.0, 1.0, 1.0, 1.0))),
            ("shifted by half the anchor's width and height",
             (anchor + np.array([16, 8, 16, 8], f), anchor, (1.0, 1.0, 1.0, 1.0))),
            ("twice as wide, half as high, same centre",
             (np.array([[-8, 8, 56, 16]], f), anchor, (1.0, 1.0, 1.0, 1.0))),
            ("6 random boxes, no weights given: (1, 1, 1, 1) (seeded)", (rand_boxes, rand_anchors)),
            ("6 random boxes, R-CNN weights (10, 10, 5, 5) (seeded)",
             (rand_boxes, rand_anchors, (10.0, 10.0, 5.0, 5.0))),
            ("boxes (2, 3, 5, 4) against anchors (2, 3, 1, 4) (broadcast), weights (1, 2, 3, 4)",
             (batch_boxes, batch_anchors, (1.0, 2.0, 3.0, 4.0))),
        ]
    return [
        ("zero deltas give the anchor back, no weights given", (np.zeros((1, 4), f), anchor)),
        ("a shift by half a width and a height",
         (np.array([[0.5, -0.5, 0, 0]], f), anchor, (1.0, 1.0, 1.0, 1.0))),
        ("double width, half height",
         (np.array([[0, 0, math.log(2), -math.log(2)]], f), anchor, (1.0, 1.0, 1.0, 1.0))),
        ("a huge tw = 80 (an untrained network)",
         (np.array([[0, 0, 80, 0]], f), anchor, (1.0, 1.0, 1.0, 1.0))),
        ("6 random deltas, R-CNN weights (10, 10, 5, 5) (seeded)",
         (rng.normal(0, 2, (6, 4)).astype(f), rand_anchors, (10.0, 10.0, 5.0, 5.0))),
        ("th = 25 with wh = 5: the clamp comes after dividing by the weight",
         (np.array([[0, 0, 15, 25]], f), anchor, (10.0, 10.0, 5.0, 5.0))),
        ("deltas (2, 3, 5, 4) on anchors (2, 3, 1, 4) (broadcast), weights (10, 10, 5, 5)",
         (rng.normal(0, 2, (2, 3, 5, 4)).astype(f), batch_anchors, (10.0, 10.0, 5.0, 5.0))),
    ]


@checker("encode", reference=box_ops.encode, library=box_ops.encode, part="encode")
def check_encode(fn):
    """Check ``fn(boxes (..., 4), anchors (..., 4), weights=(1, 1, 1, 1)) -> deltas (..., 4)``:
    ``(tx, ty, tw, th)`` times the weights, anchors broadcast against boxes."""
    title = "encode"
    cases = _coder_cases("encode")
    value_cases(title, fn, cases, _encode_reference, _ENCODE_VARIANTS,
                ["boxes", "anchors", "weights"],
                generic_hint="tx = wx (x - xa) / wa, ty = wy (y - ya) / ha, tw = ww log(w / wa), "
                             "th = wh log(h / ha), on centres and sizes.")
    # The ground truth is padded with zero-size boxes: their targets must stay finite, or the
    # box loss (a target times a weight of 0) is NaN.
    padding = (np.array([[0, 0, 0, 0], [5, 5, 5, 9]], np.float32),
               np.array([[0, 0, 16, 16], [2, 2, 10, 12]], np.float32), (1.0, 1.0, 1.0, 1.0))
    case = "zero-size boxes (the ground truth's padding rows)"
    got = as_array(call(title, case, fn, *padding))
    if got is None or got.shape != (2, 4) or not np.isfinite(got).all():
        fail(title, case, "the deltas are not finite", _encode_reference(*padding), got,
             hint="floor the widths and heights at a tiny epsilon before the log (frcnn_lib: "
                  "ops.maximum(w, 1e-6)): the ground truth is padded with zero-size boxes, and "
                  "an -inf target makes the box loss NaN even where its weight is 0.",
             inputs={"boxes": padding[0], "anchors": padding[1]})
    graph_case(title, fn, cases[-1][0], cases[-1][1], (0, 1), _encode_reference)
    return passed(title, f"{len(cases)} cases agree with frcnn_lib.boxes.encode ("
                  + ", ".join(c for c, _ in cases) + "), zero-size boxes give finite deltas, "
                  f"and '{cases[-1][0]}' also inside tf.function (the compiled training step)")


def _decode_reference(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return box_ops.decode(deltas, anchors, weights).numpy()


def _decode_np(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0), clamp="after", use_exp=True,
               dtype=np.float64, corner=False, use_weights="divide"):
    d = np.asarray(deltas, dtype)
    wts = np.asarray(weights, dtype)
    ax, ay, aw, ah = _centre_size(np.asarray(anchors, dtype), corner)
    tw, th = d[..., 2], d[..., 3]
    lim = dtype(box_ops.DELTA_CLAMP)
    if clamp == "before":
        tw, th = np.minimum(tw, lim), np.minimum(th, lim)
    scale = {"divide": 1.0 / wts, "ignore": np.ones(4, dtype), "multiply": wts}[use_weights]
    tx, ty, tw, th = d[..., 0] * scale[0], d[..., 1] * scale[1], tw * scale[2], th * scale[3]
    if clamp == "after":
        tw, th = np.minimum(tw, lim), np.minimum(th, lim)
    with np.errstate(over="ignore", invalid="ignore"):
        w = (np.exp(tw) if use_exp else 1 + tw) * aw
        h = (np.exp(th) if use_exp else 1 + th) * ah
        cx, cy = ax + tx * aw, ay + ty * ah
        return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


_CLAMP_HINT = (f"a huge tw or th overflows exp: clamp tw and th at log(1000 / 16) = "
               f"{math.log(1000 / 16):.3f} before exp (as frcnn_lib.boxes.DELTA_CLAMP).")
_ONE = (1.0, 1.0, 1.0, 1.0)
_DECODE_VARIANTS = [
    (_CLAMP_HINT, lambda d, a, w=_ONE: _decode_np(d, a, w, clamp=None, dtype=np.float32)),
    (_CLAMP_HINT, lambda d, a, w=_ONE: _decode_np(d, a, w, clamp=None)),
    ("the clamp comes before dividing by the weight: divide tw by ww first, then clamp at "
     "log(1000 / 16) (the clamp bounds the size change, whatever the weights).",
     lambda d, a, w=_ONE: _decode_np(d, a, w, clamp="before")),
    ("the size uses (1 + tw) * wa: it is exp(tw) * wa, since tw = log(w / wa).",
     lambda d, a, w=_ONE: _decode_np(d, a, w, use_exp=False)),
    ("the shift starts from the anchor's corner: tx moves the centre, x = xa + tx * wa with "
     "xa = (x1 + x2) / 2.", lambda d, a, w=_ONE: _decode_np(d, a, w, corner=True)),
    ("the weights are ignored: divide (tx, ty, tw, th) by (wx, wy, ww, wh) first (encode "
     "multiplied them in).", lambda d, a, w=_ONE: _decode_np(d, a, w, use_weights="ignore")),
    ("the deltas are multiplied by the weights: decode divides by them (encode multiplied).",
     lambda d, a, w=_ONE: _decode_np(d, a, w, use_weights="multiply")),
]


@checker("decode", reference=box_ops.decode, library=box_ops.decode, part="decode")
def check_decode(fn):
    """Check ``fn(deltas (..., 4), anchors (..., 4), weights=(1, 1, 1, 1)) -> boxes (..., 4)``
    xyxy, with ``tw / ww`` and ``th / wh`` clamped at ``log(1000 / 16)`` before ``exp``."""
    cases = _coder_cases("decode")
    return cases_and_graph("decode", fn, cases, _decode_reference, (len(cases) - 1, (0, 1)),
                           _DECODE_VARIANTS, ["deltas", "anchors", "weights"], atol=1e-3,
                           generic_hint="x = xa + (tx / wx) wa, w = exp(min(tw / ww, log(1000/16))) "
                                        "wa (same for y, h), then the corners.",
                           source="frcnn_lib.boxes.decode")
