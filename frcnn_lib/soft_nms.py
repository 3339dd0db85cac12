"""Soft-NMS (Bodla et al. 2017, "Soft-NMS -- Improving Object Detection With One Line of
Code"), Gaussian variant, on padded fixed-size tensors.

Shape glossary: ``B`` images, ``N`` candidate boxes per image, ``D`` the fixed output size.

Greedy NMS deletes every box overlapping a kept one by more than a threshold; Soft-NMS
instead decays its score by the overlap and lets it compete again (Algorithm 1 of the
paper), so that a second object hidden behind the first keeps a chance::

    repeat D times:
        m  = argmax over the active boxes of s          (ties: the lower index)
        keep m with its current score s_m; deactivate it
        s_i <- s_i * exp(-IoU(b_m, b_i)**2 / sigma)     for every active box i
        deactivate boxes with s_i <= score_threshold     (the paper prunes at 0.001)

``sigma = 0.5`` is the paper's setting for the Gaussian penalty (sec. 4).  Kept scores
are the decayed ones, so they come out in non-increasing order.  Class-wise: the IoU of
boxes of different labels is masked to 0 (as in ``nms.batched_nms``), so they never decay
each other; IoUs are computed on the boxes as given, never on boxes shifted apart per label
(float32 would round large shifted coordinates, and so the IoUs).

Graph-friendly: a ``tf.while_loop`` with exactly ``D`` iterations over ``(B, N)`` tensors
(one IoU row ``(B, N)`` per iteration, never the ``(N, N)`` matrix), static shapes, no
``tf.image`` NMS kernel, so XLA compiles it.  ``N = 0`` gives all pads (one extra inactive
box is appended inside, so that the arg-max always has something to reduce).
"""
import tensorflow as tf

from frcnn_lib.boxes import iou


def soft_nms(boxes, scores, sigma, max_output_size, score_threshold=0.0, labels=None, valid=None):
    """Gaussian Soft-NMS over a batch.

    Args:
      boxes: ``(B, N, 4)`` xyxy.  scores: ``(B, N)``.  sigma: the Gaussian's ``sigma > 0``.
      max_output_size: ``D``.  score_threshold: boxes scoring ``<= score_threshold`` (at the
        start or after a decay) are dropped.  labels: optional ``(B, N)`` int, class-wise.
      valid: optional ``(B, N)`` bool; False boxes are never kept (as ``nms.padded_nms``).

    Returns:
      ``indices (B, D)`` int32 (``-1`` pads after the kept ones), ``scores (B, D)`` float32
      (the decayed scores of the kept boxes, 0 for pads), ``num_valid (B,)`` int32.
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    scores = tf.cast(scores, tf.float32)
    threshold = tf.constant(score_threshold, tf.float32)
    batch = tf.shape(scores)[0]
    rows = tf.range(batch)
    active = scores > threshold                                          # (B, N)
    if valid is not None:
        active = tf.logical_and(active, tf.cast(valid, tf.bool))
    # One inactive box appended (index N, never kept): N = 0 then works like any N.
    boxes = tf.pad(boxes, [[0, 0], [0, 1], [0, 0]])
    scores = tf.pad(scores, [[0, 0], [0, 1]])
    active = tf.pad(active, [[0, 0], [0, 1]])
    if labels is not None:
        labels = tf.pad(tf.cast(labels, tf.int32), [[0, 0], [0, 1]], constant_values=-1)
    kept_indices = tf.TensorArray(tf.int32, size=max_output_size, element_shape=tf.TensorShape([None]))
    kept_scores = tf.TensorArray(tf.float32, size=max_output_size, element_shape=tf.TensorShape([None]))

    def body(d, current, active, kept_indices, kept_scores):
        masked = tf.where(active, current, float("-inf"))
        m = tf.argmax(masked, axis=1, output_type=tf.int32)              # (B,) first of the max
        found = tf.reduce_any(active, axis=1)                             # (B,)
        best = tf.gather(current, m, batch_dims=1)
        kept_indices = kept_indices.write(d, tf.where(found, m, -1))
        kept_scores = kept_scores.write(d, tf.where(found, best, 0.0))
        chosen = tf.gather(boxes, m, batch_dims=1)[:, None, :]            # (B, 1, 4)
        overlap = iou(chosen, boxes)[:, 0, :]                             # (B, N)
        # A NaN IoU (a box with a NaN coordinate) overlaps nothing, as in nms.py: it must not
        # turn every other score into NaN.  Other labels overlap nothing either.
        overlaps = overlap > 0.0
        if labels is not None:
            overlaps &= tf.equal(labels, tf.gather(labels, m, batch_dims=1)[:, None])
        overlap = tf.where(overlaps, overlap, 0.0)
        decayed = current * tf.exp(-tf.square(overlap) / sigma)
        not_chosen = tf.tensor_scatter_nd_update(active, tf.stack([rows, m], 1),
                                                 tf.zeros([batch], tf.bool))
        still = tf.logical_and(not_chosen, decayed > threshold)
        # Images with nothing left stay as they are (their outputs are pads from now on).
        current = tf.where(found[:, None], tf.where(still, decayed, current), current)
        active = tf.where(found[:, None], still, active)
        return d + 1, current, active, kept_indices, kept_scores

    _, _, _, kept_indices, kept_scores = tf.while_loop(
        lambda d, *_: d < max_output_size, body,
        (tf.constant(0), scores, active, kept_indices, kept_scores),
        maximum_iterations=max_output_size)
    indices = tf.transpose(kept_indices.stack())                        # (B, D)
    out_scores = tf.transpose(kept_scores.stack())
    return indices, out_scores, tf.reduce_sum(tf.cast(indices >= 0, tf.int32), axis=1)
