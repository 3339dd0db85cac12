"""Box arithmetic: areas, IoU, format conversion, clipping and regression deltas.

Shape glossary: ``N``, ``M`` numbers of boxes; ``...`` any leading batch dimensions
(broadcast where two arguments meet).

One box format everywhere: ``xyxy`` = ``(x1, y1, x2, y2)``, float32, absolute pixels,
continuous coordinates (width = x2 - x1, no +1).  ``tf.image`` wants normalised
``yxyx``; convert with :func:`to_normalized_yxyx` only at the call of such an op.

Regression deltas (Ren et al. 2015, eq. 2) on centre/size form, scaled by ``weights``::

    tx = wx * (x - xa) / wa      ty = wy * (y - ya) / ha
    tw = ww * log(w / wa)        th = wh * log(h / ha)

Invariant: ``decode(encode(b, a, w), a, w) == b`` for boxes and anchors of positive size,
as long as no side of ``b`` exceeds ``1000 / 16`` times the anchor's (``decode``'s clamp).
"""
import math

import tensorflow as tf

# exp(tw) is clamped at exp(log(1000 / 16)) as in Detectron: a box may grow at most
# 62.5-fold from its anchor, and exp never overflows.
DELTA_CLAMP = math.log(1000.0 / 16.0)


def area(boxes):
    """Area of ``boxes (..., 4)`` -> ``(...)``; inverted boxes have area 0."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    return tf.maximum(x2 - x1, 0.0) * tf.maximum(y2 - y1, 0.0)


def iou(boxes_a, boxes_b):
    """Pairwise intersection over union.

    Args:
      boxes_a: ``(..., N, 4)`` xyxy.
      boxes_b: ``(..., M, 4)`` xyxy, leading dimensions broadcastable with ``boxes_a``'s.

    Returns:
      ``(..., N, M)`` float32, ``|a ∩ b| / |a ∪ b|``; 0 where the union is empty.
    """
    boxes_a = tf.convert_to_tensor(boxes_a, tf.float32)
    boxes_b = tf.convert_to_tensor(boxes_b, tf.float32)
    a = boxes_a[..., :, None, :]  # (..., N, 1, 4)
    b = boxes_b[..., None, :, :]  # (..., 1, M, 4)
    inter_w = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    inter_h = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = inter_w * inter_h
    union = area(boxes_a)[..., :, None] + area(boxes_b)[..., None, :] - inter
    return tf.math.divide_no_nan(inter, union)


def xyxy_to_cxcywh(boxes):
    """``(..., 4)`` xyxy -> ``(..., 4)`` centre x, centre y, width, height."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    return tf.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=-1)


def cxcywh_to_xyxy(boxes):
    """``(..., 4)`` centre x, centre y, width, height -> ``(..., 4)`` xyxy."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    cx, cy, w, h = tf.unstack(boxes, axis=-1)
    return tf.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def to_normalized_yxyx(boxes, height, width):
    """xyxy pixels -> ``tf.image``'s ``(y1/h, x1/w, y2/h, x2/w)``."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    return tf.stack([y1 / h, x1 / w, y2 / h, x2 / w], axis=-1)


def from_normalized_yxyx(boxes, height, width):
    """``tf.image``'s normalised yxyx -> xyxy pixels (inverse of :func:`to_normalized_yxyx`)."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    return tf.stack([x1 * w, y1 * h, x2 * w, y2 * h], axis=-1)


def clip(boxes, height, width):
    """Clip ``boxes (..., 4)`` into ``[0, width] x [0, height]``.

    ``height`` and ``width`` are scalars or tensors broadcastable to ``(...)`` (one per image).
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    return tf.stack(
        [tf.clip_by_value(x1, 0.0, w), tf.clip_by_value(y1, 0.0, h),
         tf.clip_by_value(x2, 0.0, w), tf.clip_by_value(y2, 0.0, h)], axis=-1)


def small_boxes_mask(boxes, min_size):
    """``(...)`` bool: True where width and height are both at least ``min_size`` and
    positive: an empty box (zero width or height) is never kept, whatever ``min_size``."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    w, h = x2 - x1, y2 - y1
    return (w >= min_size) & (h >= min_size) & (w > 0.0) & (h > 0.0)


def remove_small_boxes(boxes, min_size):
    """Keep the rows of ``boxes (N, 4)`` whose sides are both at least ``min_size`` (and > 0).

    Returns ``(kept_boxes (N', 4), kept_indices (N',) int32)``.  Variable length: inside
    the model use :func:`small_boxes_mask` to keep shapes fixed.
    """
    keep = tf.cast(tf.where(small_boxes_mask(boxes, min_size))[:, 0], tf.int32)
    return tf.gather(boxes, keep), keep


def encode(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    """Regression deltas that move ``anchors`` onto ``boxes``.

    Args:
      boxes: ``(..., 4)`` xyxy targets.
      anchors: ``(..., 4)`` xyxy reference boxes (anchors or proposals), broadcastable.
      weights: ``(wx, wy, ww, wh)`` multiplied into the deltas (R-CNN uses
        ``(10, 10, 5, 5)``, i.e. deltas divided by ``(0.1, 0.1, 0.2, 0.2)``).

    Returns:
      ``(..., 4)`` deltas ``(tx, ty, tw, th)``.  Degenerate sizes are floored at a tiny
      epsilon so the result stays finite.
    """
    eps = 1e-6
    wx, wy, ww, wh = [float(v) for v in weights]
    cx, cy, w, h = tf.unstack(xyxy_to_cxcywh(boxes), axis=-1)
    acx, acy, aw, ah = tf.unstack(xyxy_to_cxcywh(anchors), axis=-1)
    aw = tf.maximum(aw, eps)
    ah = tf.maximum(ah, eps)
    tx = wx * (cx - acx) / aw
    ty = wy * (cy - acy) / ah
    tw = ww * tf.math.log(tf.maximum(w, eps) / aw)
    th = wh * tf.math.log(tf.maximum(h, eps) / ah)
    return tf.stack([tx, ty, tw, th], axis=-1)


def decode(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    """Apply regression ``deltas (..., 4)`` to ``anchors (..., 4)`` -> xyxy boxes ``(..., 4)``.

    Inverse of :func:`encode`.  ``tw, th`` are clamped at ``DELTA_CLAMP`` (after removing the
    weights) so ``exp`` cannot overflow, whatever the network outputs.
    """
    deltas = tf.convert_to_tensor(deltas, tf.float32)
    wx, wy, ww, wh = [float(v) for v in weights]
    acx, acy, aw, ah = tf.unstack(xyxy_to_cxcywh(anchors), axis=-1)
    tx, ty, tw, th = tf.unstack(deltas, axis=-1)
    tw = tf.minimum(tw / ww, DELTA_CLAMP)
    th = tf.minimum(th / wh, DELTA_CLAMP)
    cx = tx / wx * aw + acx
    cy = ty / wy * ah + acy
    w = tf.exp(tw) * aw
    h = tf.exp(th) * ah
    return cxcywh_to_xyxy(tf.stack([cx, cy, w, h], axis=-1))
