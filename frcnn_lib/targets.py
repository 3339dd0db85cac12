"""Training targets of the two stages, composed from matching, sampling and box encoding.

Shape glossary: ``B`` images, ``N`` anchors, ``P`` proposals, ``G`` padded ground-truth
boxes, ``R`` sampled RoIs per image.

Both functions are pure (seeded) and sit outside the gradient: proposals are treated as
constants (approximate joint training, Ren et al. 2015, sec. 3.2).  Each takes its settings as
one frozen object (:class:`RPNTargetConfig`, :class:`RCNNTargetConfig`), built once from the
model's flat settings with ``from_settings``, and the geometry it calls as ``parts``.
"""
import dataclasses
from typing import Tuple

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


@dataclasses.dataclass(frozen=True)
class RPNTargetConfig:
    """How anchors become RPN targets; the defaults are the paper's (Ren et al. 2015, sec. 3.1.2).

    positive_iou, negative_iou: an anchor is positive at IoU ``>= positive_iou`` with a ground
      truth (or as the best anchor of one), negative below ``negative_iou`` with all of them.
    num_samples, positive_fraction: anchors sampled per image (256), at most half positive.
    allowed_border: anchors crossing the image by more than this many pixels are ignored
      (0 in the paper); a negative value keeps them all.
    weights: the box coder's per-coordinate weights (``boxes.encode``).
    """
    positive_iou: float = 0.7
    negative_iou: float = 0.3
    num_samples: int = 256
    positive_fraction: float = 0.5
    allowed_border: float = 0.0
    weights: Tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)

    @classmethod
    def from_settings(cls, settings):
        """From a ``FasterRCNN``'s flat settings (``model.settings`` or a preset's model dict)."""
        return cls(float(settings["rpn_positive_iou"]), float(settings["rpn_negative_iou"]),
                   int(settings["rpn_batch_size"]), float(settings["rpn_positive_fraction"]),
                   float(settings["rpn_allowed_border"]))


@dataclasses.dataclass(frozen=True)
class RCNNTargetConfig:
    """How proposals become the R-CNN head's sampled RoIs and targets (Fast R-CNN, Girshick
    2015, sec. 2.3; the paper's values as defaults).

    num_samples, foreground_fraction: RoIs per image (128), at most a quarter foreground.
    foreground_iou: a RoI is foreground at IoU ``>= foreground_iou`` with a ground truth.
    background_iou_low, background_iou_high: background is IoU in ``[low, high)``.
    weights: the box coder's weights, ``(10, 10, 5, 5)`` (targets divided by 0.1 and 0.2).
    """
    num_samples: int = 128
    foreground_fraction: float = 0.25
    foreground_iou: float = 0.5
    background_iou_low: float = 0.1
    background_iou_high: float = 0.5
    weights: Tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)

    @classmethod
    def from_settings(cls, settings):
        """From a ``FasterRCNN``'s flat settings (``model.settings`` or a preset's model dict)."""
        return cls(int(settings["roi_batch_size"]), float(settings["roi_foreground_fraction"]),
                   float(settings["roi_foreground_iou"]), float(settings["roi_background_iou_low"]),
                   float(settings["roi_background_iou_high"]),
                   tuple(float(w) for w in settings["roi_box_weights"]))


def rpn_targets(anchors, gt_boxes, gt_labels, image_sizes, seed, config=RPNTargetConfig(), *,
                parts=LIBRARY):
    """Objectness labels and box deltas for every anchor.

    Args:
      anchors: ``(N, 4)`` xyxy, shared by the batch.
      gt_boxes: ``(B, G, 4)``.  gt_labels: ``(B, G)`` int, ``-1`` = padding.
      image_sizes: ``(B, 2)`` (height, width) of the image content inside the padded batch;
        anchors crossing it (beyond ``config.allowed_border``) are ignored.
      seed: ``(2,)`` seed of the sampling draw.
      config: an :class:`RPNTargetConfig`.
      parts: the IoU, matching, sampling and encoding to use (``frcnn_lib.parts``).

    Returns:
      ``labels (B, N)`` int32 in ``{1, 0, -1}`` (after sampling: at most ``config.num_samples``
      non-negative per image) and ``deltas (B, N, 4)`` (meaningful where ``labels == 1``).
    """
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    gt_boxes, gt_labels = _pad_one(gt_boxes, gt_labels)
    gt_valid = gt_labels >= 0
    c = config
    if c.allowed_border >= 0:
        sizes = tf.cast(image_sizes, tf.float32)
        valid_anchor = inside_image_mask(anchors[None], sizes[:, 0:1], sizes[:, 1:2], c.allowed_border)
    else:
        valid_anchor = None
    ious = parts.iou(anchors[None], gt_boxes)                        # (B, N, G)
    labels, matched = parts.match(ious, gt_valid, c.positive_iou, c.negative_iou, True, valid_anchor)
    labels = parts.sample(labels, c.num_samples, c.positive_fraction, seed)
    matched_boxes = tf.gather(gt_boxes, matched, batch_dims=1)       # (B, N, 4)
    deltas = parts.encode(matched_boxes, anchors[None], c.weights)
    return labels, tf.stop_gradient(deltas)


def rcnn_targets(proposals, proposal_valid, gt_boxes, gt_labels, seed, config=RCNNTargetConfig(),
                 *, parts=LIBRARY):
    """Sample RoIs from the proposals plus the ground truth, with their targets.

    Foreground: IoU ``>= config.foreground_iou`` with a ground truth (label = its class).
    Background: IoU in ``[config.background_iou_low, config.background_iou_high)`` (label 0);
    in an image without ground truth every valid proposal counts as IoU 0.

    Args:
      proposals: ``(B, P, 4)``.  proposal_valid: ``(B, P)`` bool.
      gt_boxes: ``(B, G, 4)``.  gt_labels: ``(B, G)`` int in ``1..K-1``, ``-1`` = padding.
      seed: ``(2,)`` seed of the sampling draw.  config: an :class:`RCNNTargetConfig`.
      parts: the IoU, sampling and encoding to use (``frcnn_lib.parts``).

    Returns:
      ``rois (B, R, 4)``, ``labels (B, R)`` int32 (class, 0 background, -1 padding slot),
      ``deltas (B, R, 4)`` encoded with ``config.weights`` where ``labels >= 1``, 0 elsewhere.
    """
    c = config
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
    foreground = max_iou >= c.foreground_iou
    background = (max_iou >= c.background_iou_low) & (max_iou < c.background_iou_high)
    labels = tf.where(foreground, 1, tf.where(background, 0, -1))
    labels = parts.sample(labels, c.num_samples, c.foreground_fraction, seed)
    indices, valid = select_sampled(labels, c.num_samples)

    rois = tf.gather(candidates, indices, batch_dims=1)
    roi_fg = valid & (tf.gather(labels, indices, batch_dims=1) == 1)  # padding slots: not fg
    roi_gt = tf.gather(matched, indices, batch_dims=1)
    matched_boxes = tf.gather(gt_boxes, roi_gt, batch_dims=1)
    matched_class = tf.gather(gt_labels, roi_gt, batch_dims=1)
    roi_labels = tf.where(valid, tf.where(roi_fg, matched_class, 0), -1)
    deltas = parts.encode(matched_boxes, rois, c.weights)
    deltas = tf.where(roi_fg[..., None], deltas, 0.0)
    return tf.stop_gradient(rois), tf.stop_gradient(roi_labels), tf.stop_gradient(deltas)
