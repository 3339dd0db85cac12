"""The Fast R-CNN detection head (Girshick 2015) on top of RoI pooling, and its post-processing.

Shape glossary: ``B`` images, ``R`` RoIs per image, ``F`` RoI feature size, ``K`` classes
including background (``num_classes + 1``), ``D`` detections kept per image.

Per RoI the head predicts ``K`` class logits and class-specific box deltas ``(K, 4)``,
encoded against the RoI with weights ``(10, 10, 5, 5)`` (i.e. targets divided by
``(0.1, 0.1, 0.2, 0.2)``).  Post-processing, per image and class ``k >= 1``: decode the
class-``k`` deltas, clip, drop empty boxes and scores below ``score_threshold``, class-wise NMS at
``nms_iou``, keep the ``max_detections`` best over all classes.  The settings travel as one
:class:`DetectionConfig`, built once from the model's flat settings.
"""
import dataclasses
from typing import Tuple

import keras
import tensorflow as tf
from keras import layers

from frcnn_lib import boxes as box_ops
from frcnn_lib.nms import gather_padded
from frcnn_lib.parts import LIBRARY


@keras.saving.register_keras_serializable(package="frcnn")
class RCNNPredictor(layers.Layer):
    """``roi_features (B*R, F)`` -> ``logits (B*R, K)``, ``deltas (B*R, K, 4)``.

    Classifier initialised from N(0, 0.01), regressor from N(0, 0.001), as in the paper.
    """

    def __init__(self, num_classes_with_background, **kwargs):
        super().__init__(**kwargs)
        self.num_classes_with_background = num_classes_with_background
        k = num_classes_with_background
        self.cls_score = layers.Dense(k, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                                      name="cls_score")
        self.bbox_pred = layers.Dense(4 * k, kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
                                      name="bbox_pred")

    def build(self, input_shape):
        self.cls_score.build(input_shape)
        self.bbox_pred.build(input_shape)

    def call(self, features):
        k = self.num_classes_with_background
        return self.cls_score(features), tf.reshape(self.bbox_pred(features), [-1, k, 4])

    def get_config(self):
        return {**super().get_config(), "num_classes_with_background": self.num_classes_with_background}


def select_class_deltas(deltas, labels):
    """Pick each RoI's deltas for its own class: ``(B, R, K, 4), (B, R) -> (B, R, 4)``."""
    return tf.gather(deltas, tf.maximum(tf.cast(labels, tf.int32), 0), axis=2, batch_dims=2)


@dataclasses.dataclass(frozen=True)
class DetectionConfig:
    """How the head's outputs become detections; defaults from py-faster-rcnn's ``TEST`` config
    (score threshold 0.05, class-wise NMS at 0.3, 100 detections an image).

    box_weights: the box coder's weights, ``(10, 10, 5, 5)``.
    score_threshold: class scores below it are dropped.  nms_iou: the class-wise NMS threshold.
    max_detections: ``D``.  min_size: detections narrower or lower than this, or empty after
      clipping, are dropped (torchvision's ``box_min_size``).
    nms_method: see ``nms.padded_nms``.  soft_nms_sigma: ``> 0`` replaces the class-wise NMS by
      Gaussian Soft-NMS (``frcnn_lib.soft_nms``; scores are then the decayed ones).
    """
    box_weights: Tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    score_threshold: float = 0.05
    nms_iou: float = 0.3
    max_detections: int = 100
    min_size: float = 0.0
    nms_method: str = "tiled"
    soft_nms_sigma: float = 0.0

    @classmethod
    def from_settings(cls, settings, nms_method="tiled"):
        """From a ``FasterRCNN``'s flat settings (``roi_box_weights``, ``detections_*``)."""
        return cls(tuple(float(w) for w in settings["roi_box_weights"]),
                   float(settings["detections_score_threshold"]), float(settings["detections_nms_iou"]),
                   int(settings["detections_max"]), float(settings["detections_min_size"]),
                   nms_method, float(settings["detections_soft_nms_sigma"]))


def postprocess(logits, deltas, rois, roi_valid, image_sizes, config=DetectionConfig(), *,
                parts=LIBRARY):
    """Detections from the head's outputs, fixed size.

    Args:
      logits: ``(B, R, K)``.  deltas: ``(B, R, K, 4)``.  rois: ``(B, R, 4)``.
      roi_valid: ``(B, R)`` bool.  image_sizes: ``(B, 2)`` to clip to.
      config: a :class:`DetectionConfig`.
      parts: the decoding and NMS to use (``frcnn_lib.parts``).

    Returns:
      dict of ``boxes (B, D, 4)``, ``scores (B, D)``, ``labels (B, D)`` int32 (``-1`` pads),
      ``num_detections (B,)`` int32, with ``D = config.max_detections``, by descending score.
    """
    c = config
    probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)[:, :, 1:]      # (B, R, K-1)
    batch, num_rois, num_fg = tf.shape(probs)[0], tf.shape(probs)[1], tf.shape(probs)[2]
    fg_deltas = tf.cast(deltas, tf.float32)[:, :, 1:, :]                       # (B, R, K-1, 4)
    boxes = parts.decode(fg_deltas, rois[:, :, None, :], c.box_weights)
    sizes = tf.cast(image_sizes, tf.float32)
    boxes = box_ops.clip(boxes, sizes[:, 0:1, None], sizes[:, 1:2, None])
    scores = tf.where(roi_valid[:, :, None], probs, 0.0)
    labels = tf.broadcast_to(tf.range(1, num_fg + 1)[None, None, :], tf.shape(scores))
    flat = [batch, num_rois * num_fg]
    boxes = tf.reshape(boxes, flat + [4])
    scores = tf.reshape(scores, flat)
    labels = tf.reshape(labels, flat)
    valid_boxes = box_ops.small_boxes_mask(boxes, c.min_size)
    if c.soft_nms_sigma > 0:
        from frcnn_lib.soft_nms import soft_nms
        keep, kept_scores, num = soft_nms(boxes, scores, c.soft_nms_sigma, c.max_detections,
                                          c.score_threshold, labels=labels, valid=valid_boxes)
    else:
        keep, num = parts.nms(boxes, scores, c.nms_iou, c.max_detections, c.score_threshold,
                              labels=labels, valid=valid_boxes, method=c.nms_method)
        kept_scores = gather_padded(scores, keep)
    valid = keep >= 0
    return {
        "boxes": gather_padded(boxes, keep),
        "scores": tf.where(valid, kept_scores, 0.0),
        "labels": tf.where(valid, gather_padded(labels, keep), -1),
        "num_detections": num,
    }
