"""Region Proposal Network (Ren et al. 2015, sec. 3.1): head and proposal generation.

Shape glossary: ``B`` images, ``Hf, Wf`` feature-map size, ``C`` channels, ``A`` anchors per
location, ``N = Hf * Wf * A`` anchors, ``P`` proposals kept per image.

The head slides a 3x3 conv (``channels``, ReLU) over the feature map, then two sibling 1x1
convs give, for each of the ``A`` anchors at a location, one objectness logit and four box
deltas.  (The paper's two-way softmax is replaced by one sigmoid logit, which is the same
model with fewer parameters.)  Outputs are reshaped location-major, matching
``anchors.generate_anchors``.

Proposals: keep the ``pre_nms_top_n`` highest-scoring anchors, decode their deltas, clip to
the image, drop empty boxes and boxes smaller than ``min_size``, NMS at ``nms_iou``, keep
``post_nms_top_n``.  Fixed-size outputs: padding slots are marked invalid.  The settings
travel as one :class:`ProposalConfig`, built once from the model's flat settings.
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
class RPNHead(layers.Layer):
    """``features (B, Hf, Wf, C)`` -> ``logits (B, N)``, ``deltas (B, N, 4)``.

    Weights initialised from N(0, 0.01) as in the paper.
    """

    def __init__(self, num_anchors, channels=512, **kwargs):
        super().__init__(**kwargs)
        self.num_anchors = num_anchors
        self.channels = channels
        init = keras.initializers.RandomNormal(stddev=0.01)
        self.conv = layers.Conv2D(channels, 3, padding="same", activation="relu",
                                  kernel_initializer=init, name="rpn_conv")
        self.objectness = layers.Conv2D(num_anchors, 1, kernel_initializer=init, name="rpn_objectness")
        self.box = layers.Conv2D(4 * num_anchors, 1, kernel_initializer=init, name="rpn_box")

    def build(self, input_shape):
        self.conv.build(input_shape)
        hidden = tuple(input_shape[:-1]) + (self.channels,)
        self.objectness.build(hidden)
        self.box.build(hidden)

    def call(self, features):
        x = self.conv(features)
        batch = tf.shape(features)[0]
        logits = tf.reshape(self.objectness(x), [batch, -1])
        deltas = tf.reshape(self.box(x), [batch, -1, 4])
        return logits, deltas

    def get_config(self):
        return {**super().get_config(), "num_anchors": self.num_anchors, "channels": self.channels}


@dataclasses.dataclass(frozen=True)
class ProposalConfig:
    """How RPN outputs become proposals.  The defaults are the paper's test-time values
    (Ren et al. 2015, sec. 3.3 and py-faster-rcnn's ``TEST`` config: 6000 before NMS, 300
    after, NMS at 0.7); training uses 12000 and 2000 (``from_settings(s, training=True)``).

    pre_nms_top_n: the best-scoring anchors decoded.  post_nms_top_n: proposals kept (``P``).
    nms_iou: the NMS threshold.  min_size: proposals narrower or lower than this many pixels
      (or empty) are dropped before NMS.  box_weights: the box coder's weights.
    nms_method: see :func:`frcnn_lib.nms.padded_nms`.
    """
    pre_nms_top_n: int = 6000
    post_nms_top_n: int = 300
    nms_iou: float = 0.7
    min_size: float = 0.0
    box_weights: Tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    nms_method: str = "tiled"

    @classmethod
    def from_settings(cls, settings, training=False, nms_method="tiled"):
        """From a ``FasterRCNN``'s flat settings: the ``_train`` or ``_test`` top-n values."""
        mode = "train" if training else "test"
        return cls(int(settings[f"rpn_pre_nms_top_n_{mode}"]), int(settings[f"rpn_post_nms_top_n_{mode}"]),
                   float(settings["rpn_nms_iou"]), float(settings["rpn_min_size"]), nms_method=nms_method)


def generate_proposals(logits, deltas, anchors, image_sizes, config=ProposalConfig(), *, parts=LIBRARY):
    """Turn RPN outputs into proposals (no gradient flows through them).

    Args:
      logits: ``(B, N)`` objectness logits.  deltas: ``(B, N, 4)``.  anchors: ``(N, 4)``.
      image_sizes: ``(B, 2)`` (height, width) to clip to.
      config: a :class:`ProposalConfig`.
      parts: the decoding and NMS to use (``frcnn_lib.parts``).

    Returns:
      ``proposals (B, P, 4)`` with ``P = config.post_nms_top_n``, ``scores (B, P)`` (objectness
      probability) and ``valid (B, P)`` bool, by descending score.
    """
    c = config
    logits = tf.stop_gradient(tf.cast(logits, tf.float32))
    deltas = tf.stop_gradient(tf.cast(deltas, tf.float32))
    k = min(c.pre_nms_top_n, int(anchors.shape[0])) if anchors.shape[0] is not None else c.pre_nms_top_n
    k = tf.minimum(k, tf.shape(logits)[1])
    top_logits, top_index = tf.math.top_k(logits, k=k)                       # (B, k)
    top_deltas = tf.gather(deltas, top_index, batch_dims=1)
    top_anchors = tf.gather(anchors, top_index)
    sizes = tf.cast(image_sizes, tf.float32)
    boxes = parts.decode(top_deltas, top_anchors, c.box_weights)
    boxes = box_ops.clip(boxes, sizes[:, 0:1], sizes[:, 1:2])
    scores = tf.sigmoid(top_logits)
    # Boxes under ``min_size`` -- and empty ones, such as anchors over the padding clipped to
    # zero width -- are marked invalid rather than removed, so shapes stay fixed.  As in
    # py-faster-rcnn (proposal_layer.py), this happens before NMS.
    big_enough = box_ops.small_boxes_mask(boxes, c.min_size)
    keep, _ = parts.nms(boxes, scores, c.nms_iou, c.post_nms_top_n, valid=big_enough,
                        method=c.nms_method)
    valid = keep >= 0
    return gather_padded(boxes, keep), tf.where(valid, gather_padded(scores, keep), 0.0), valid
