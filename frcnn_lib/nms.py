"""Non-maximum suppression: greedy, by descending score, on ``tf.image``'s kernels.

Shape glossary: ``B`` images, ``N`` boxes, ``D`` the fixed output size.

Greedy NMS keeps the highest-scoring box, drops every remaining box whose IoU with it is
``> iou_threshold`` (IoU as in :func:`frcnn_lib.boxes.iou`: inverted boxes overlap nothing),
and repeats.  Ties in score go to the lower index.  Class-wise NMS
(:func:`batched_nms`) runs NMS separately per label, by shifting each label's boxes to a
region of their own so that boxes of different labels never overlap, then one NMS call.
"""
import tensorflow as tf


def _yxyx(boxes):
    # tf.image's NMS takes yxyx; the scale does not matter to IoU, so no normalisation.
    # It also reads any two opposite corners as a box, so collapse inverted boxes to zero
    # size first: like boxes.iou, they then overlap nothing.
    x1, y1, x2, y2 = tf.unstack(tf.convert_to_tensor(boxes, tf.float32), axis=-1)
    return tf.stack([y1, x1, tf.maximum(y2, y1), tf.maximum(x2, x1)], axis=-1)


def nms(boxes, scores, iou_threshold, max_output_size, score_threshold=float("-inf")):
    """Indices ``(D',) int32`` of the boxes kept, ``D' <= max_output_size``, by descending score.

    Args:
      boxes: ``(N, 4)`` xyxy.  scores: ``(N,)``.
      iou_threshold: boxes overlapping a kept box by IoU ``> iou_threshold`` are dropped.
      score_threshold: boxes scoring ``<= score_threshold`` are dropped first.
    """
    return tf.image.non_max_suppression(
        _yxyx(boxes), tf.cast(scores, tf.float32), max_output_size,
        iou_threshold=iou_threshold, score_threshold=score_threshold)


def _label_offset_boxes(boxes, labels):
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    span = tf.reduce_max(tf.abs(boxes)) + 1.0
    return boxes + tf.cast(labels, tf.float32)[..., None] * 2.0 * span


def batched_nms(boxes, scores, labels, iou_threshold, max_output_size, score_threshold=float("-inf")):
    """Class-wise NMS: like :func:`nms`, but boxes of different ``labels (N,)`` never suppress
    each other.  Returns indices ``(D',) int32`` by descending score."""
    return nms(_label_offset_boxes(boxes, labels), scores, iou_threshold, max_output_size,
               score_threshold)


def padded_nms(boxes, scores, iou_threshold, max_output_size, score_threshold=float("-inf"),
               labels=None):
    """NMS over a batch with a fixed-size output, for use inside the model.

    Args:
      boxes: ``(B, N, 4)`` xyxy.  scores: ``(B, N)``.  labels: optional ``(B, N)`` int for
        class-wise NMS.

    Returns:
      ``indices (B, D)`` int32 (``D = max_output_size``; ``-1`` pads after the kept ones) and
      ``num_valid (B,)`` int32.
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    scores = tf.cast(scores, tf.float32)
    if labels is not None:
        boxes = _label_offset_boxes(boxes, labels)

    def one_image(args):
        b, s = args
        keep = nms(b, s, iou_threshold, max_output_size, score_threshold)
        n = tf.shape(keep)[0]
        return tf.pad(keep, [[0, max_output_size - n]], constant_values=-1), n

    indices, num_valid = tf.map_fn(
        one_image, (boxes, scores),
        fn_output_signature=(tf.TensorSpec([max_output_size], tf.int32), tf.TensorSpec([], tf.int32)))
    return indices, num_valid


def gather_padded(values, indices):
    """Gather ``values (B, N, ...)`` at ``indices (B, D)`` where ``-1`` marks padding (gives 0)."""
    safe = tf.maximum(indices, 0)
    out = tf.gather(values, safe, batch_dims=1)
    mask = tf.reshape(indices >= 0, tf.concat([tf.shape(indices), tf.ones([tf.rank(out) - 2], tf.int32)], 0))
    return tf.where(mask, out, tf.zeros_like(out))

