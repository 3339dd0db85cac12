"""Matching: give every anchor (or proposal) a ground-truth box, or none.

Shape glossary: ``B`` images, ``N`` anchors or proposals, ``G`` padded ground-truth boxes.

Rule of Ren et al. (2015, sec. 3.1.2):

* positive (label 1) where the best IoU with any ground truth is ``>= positive_threshold``;
* negative (label 0) where it is ``< negative_threshold``;
* ignored (label -1) in between, and for anchors marked invalid (e.g. crossing the border);
* with ``allow_low_quality_matches``, each ground truth also claims the anchor(s) with which
  it has its highest IoU, ties included, even below ``positive_threshold`` (if above 0).

Padded ground truth (label ``-1``) is never matched.  Pure function of its inputs; no
gradient flows through it.
"""
import tensorflow as tf

POSITIVE, NEGATIVE, IGNORE = 1, 0, -1


def match(iou_matrix, gt_valid, positive_threshold, negative_threshold,
          allow_low_quality_matches=True, anchor_valid=None):
    """Label anchors from their IoU with the ground truth.

    Args:
      iou_matrix: ``(B, N, G)`` IoU of every anchor with every ground-truth box.
      gt_valid: ``(B, G)`` bool, False for padding.
      positive_threshold, negative_threshold: floats, ``negative <= positive``.
      allow_low_quality_matches: let each ground truth claim its best anchors.
      anchor_valid: optional ``(B, N)`` or ``(N,)`` bool; invalid anchors are ignored (-1)
        and claim nothing.

    Returns:
      ``labels (B, N)`` int32 in ``{1, 0, -1}`` and ``matched_gt (B, N)`` int32: the index of
      the best-overlapping valid ground truth (0 where there is none; only meaningful
      where ``labels == 1``).
    """
    ious, valid_pair, anchor_valid = mask_invalid_pairs(iou_matrix, gt_valid, anchor_valid)
    max_iou, matched_gt = best_match(ious)

    labels = tf.fill(tf.shape(max_iou), IGNORE)
    labels = tf.where(max_iou < negative_threshold, NEGATIVE, labels)
    labels = tf.where(max_iou >= positive_threshold, POSITIVE, labels)

    if allow_low_quality_matches:
        best_per_gt = tf.reduce_max(ious, axis=1, keepdims=True)             # (B, 1, G)
        is_best = (ious == best_per_gt) & (best_per_gt > 0.0) & valid_pair  # (B, N, G)
        labels = tf.where(tf.reduce_any(is_best, axis=2), POSITIVE, labels)

    if anchor_valid is not None:
        labels = tf.where(tf.broadcast_to(anchor_valid, tf.shape(labels)), labels, IGNORE)
    return labels, matched_gt


def mask_invalid_pairs(iou_matrix, gt_valid, anchor_valid=None):
    """``ious (B, N, G)`` with -1 where a pair may not match (padded ground truth, an invalid
    anchor): below every threshold and below any real IoU.

    Returns ``(ious, valid_pair (B, N, G) bool, anchor_valid)``, the last as ``(B|1, N)``
    bool or None.
    """
    iou_matrix = tf.stop_gradient(tf.convert_to_tensor(iou_matrix, tf.float32))
    gt_valid = tf.cast(gt_valid, tf.bool)[:, None, :]                     # (B, 1, G)
    valid_pair = tf.broadcast_to(gt_valid, tf.shape(iou_matrix))
    if anchor_valid is not None:
        anchor_valid = tf.cast(anchor_valid, tf.bool)
        if anchor_valid.shape.rank == 1:
            anchor_valid = anchor_valid[None, :]
        valid_pair = valid_pair & anchor_valid[..., None]
    return tf.where(valid_pair, iou_matrix, -1.0), valid_pair, anchor_valid


def best_match(ious):
    """Each anchor's best IoU ``(B, N)`` (-1 where it has no valid pair) and the index of that
    ground truth ``(B, N)`` int32 (0 where there is none), from masked ``ious (B, N, G)``."""
    # A column of -1 stands for "no ground truth", so images with none (or G == 0) need no branch.
    # (Built from the shape, not sliced from ``ious``, which has no column to slice when G == 0.)
    no_gt = tf.fill(tf.concat([tf.shape(ious)[:2], [1]], axis=0), -1.0)
    padded = tf.concat([ious, no_gt], axis=2)
    max_iou = tf.reduce_max(padded, axis=2)
    matched_gt = tf.argmax(padded, axis=2, output_type=tf.int32)
    return max_iou, tf.where(max_iou >= 0.0, matched_gt, 0)
