"""Training targets of the two stages, composed from matching, sampling and box encoding.

Shape glossary: ``B`` images, ``N`` anchors, ``P`` proposals, ``G`` padded ground-truth
boxes, ``R`` sampled RoIs per image.

Both functions are pure (seeded) and sit outside the gradient: proposals are treated as
constants (approximate joint training, Ren et al. 2015, sec. 3.2).
"""
import tensorflow as tf

from frcnn_lib.anchors import inside_image_mask
from frcnn_lib.parts import LIBRARY
from frcnn_lib.sampling import select_sampled


def _pad_one(gt_boxes, gt_labels):
    """Append one padding box, so that ``G >= 1`` and every gather below has a row to take."""
    gt_boxes = tf.convert_to_tensor(gt_boxes, tf.float32)
    gt_labels = tf.cast(gt_labels, tf.int32)
    return (tf.pad(gt_boxes, [[0, 0], [0, 1], [0, 0]]),
            tf.pad(gt_labels, [[0, 0], [0, 1]], constant_values=-1))


def rpn_targets(anchors, gt_boxes, gt_labels, image_sizes, seed, positive_iou=0.7,
                negative_iou=0.3, num_samples=256, positive_fraction=0.5,
                allowed_border=0.0, weights=(1.0, 1.0, 1.0, 1.0), *, parts=LIBRARY):
    """Objectness labels and box deltas for every anchor.

    Args:
      anchors: ``(N, 4)`` xyxy, shared by the batch.
      gt_boxes: ``(B, G, 4)``.  gt_labels: ``(B, G)`` int, ``-1`` = padding.
      image_sizes: ``(B, 2)`` (height, width) of the image content inside the padded batch;
        anchors crossing it (beyond ``allowed_border``) are ignored.  Pass a negative
        ``allowed_border`` to keep them all.
      seed: ``(2,)`` seed of the sampling draw.
      parts: the IoU, matching, sampling and encoding to use (``frcnn_lib.parts``).

    Returns:
      ``labels (B, N)`` int32 in ``{1, 0, -1}`` (after sampling: at most ``num_samples``
      non-negative per image) and ``deltas (B, N, 4)`` (meaningful where ``labels == 1``).
    """
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    gt_boxes, gt_labels = _pad_one(gt_boxes, gt_labels)
    gt_valid = gt_labels >= 0
    if allowed_border >= 0:
        sizes = tf.cast(image_sizes, tf.float32)
        valid_anchor = inside_image_mask(anchors[None], sizes[:, 0:1], sizes[:, 1:2], allowed_border)
    else:
        valid_anchor = None
    ious = parts.iou(anchors[None], gt_boxes)                        # (B, N, G)
    labels, matched = parts.match(ious, gt_valid, positive_iou, negative_iou, True, valid_anchor)
    labels = parts.sample(labels, num_samples, positive_fraction, seed)
    matched_boxes = tf.gather(gt_boxes, matched, batch_dims=1)       # (B, N, 4)
    deltas = parts.encode(matched_boxes, anchors[None], weights)
    return labels, tf.stop_gradient(deltas)


def rcnn_targets(proposals, proposal_valid, gt_boxes, gt_labels, seed, num_samples=128,
                 foreground_fraction=0.25, foreground_iou=0.5, background_iou_low=0.1,
                 background_iou_high=0.5, weights=(10.0, 10.0, 5.0, 5.0), *, parts=LIBRARY):
    """Sample RoIs from the proposals plus the ground truth, with their targets.

    Foreground: IoU ``>= foreground_iou`` with a ground truth (label = its class).
    Background: IoU in ``[background_iou_low, background_iou_high)`` (label 0); in an image
    without ground truth every valid proposal counts as IoU 0.

    Args:
      proposals: ``(B, P, 4)``.  proposal_valid: ``(B, P)`` bool.
      gt_boxes: ``(B, G, 4)``.  gt_labels: ``(B, G)`` int in ``1..K-1``, ``-1`` = padding.
      parts: the IoU, sampling and encoding to use (``frcnn_lib.parts``).

    Returns:
      ``rois (B, R, 4)``, ``labels (B, R)`` int32 (class, 0 background, -1 padding slot),
      ``deltas (B, R, 4)`` encoded with ``weights`` where ``labels >= 1``, 0 elsewhere.
    """
    proposals = tf.stop_gradient(tf.convert_to_tensor(proposals, tf.float32))
    gt_boxes, gt_labels = _pad_one(gt_boxes, gt_labels)
    gt_valid = gt_labels >= 0
    candidates = tf.concat([proposals, gt_boxes], axis=1)               # (B, P+G, 4)
    candidate_valid = tf.concat([tf.cast(proposal_valid, tf.bool), gt_valid], axis=1)
    ious = parts.iou(candidates, gt_boxes)                              # (B, P+G, G)
    ious = tf.where(gt_valid[:, None, :] & candidate_valid[:, :, None], ious, -1.0)
    # A valid candidate in an image without ground truth overlaps nothing: IoU 0, not -1, so
    # that it is background exactly when an IoU-0 candidate of an image with objects would be.
    max_iou = tf.where(candidate_valid, tf.maximum(tf.reduce_max(ious, axis=2), 0.0), -1.0)
    matched = tf.argmax(ious, axis=2, output_type=tf.int32)
    foreground = max_iou >= foreground_iou
    background = (max_iou >= background_iou_low) & (max_iou < background_iou_high)
    labels = tf.where(foreground, 1, tf.where(background, 0, -1))
    labels = parts.sample(labels, num_samples, foreground_fraction, seed)
    indices, valid = select_sampled(labels, num_samples)

    rois = tf.gather(candidates, indices, batch_dims=1)
    roi_fg = valid & (tf.gather(labels, indices, batch_dims=1) == 1)  # padding slots: not fg
    roi_gt = tf.gather(matched, indices, batch_dims=1)
    matched_boxes = tf.gather(gt_boxes, roi_gt, batch_dims=1)
    matched_class = tf.gather(gt_labels, roi_gt, batch_dims=1)
    roi_labels = tf.where(valid, tf.where(roi_fg, matched_class, 0), -1)
    deltas = parts.encode(matched_boxes, rois, weights)
    deltas = tf.where(roi_fg[..., None], deltas, 0.0)
    return tf.stop_gradient(rois), tf.stop_gradient(roi_labels), tf.stop_gradient(deltas)
