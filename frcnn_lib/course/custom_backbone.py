"""Plugging your own backbone into a FasterRCNN, with no registry and no change to the model.

Shape glossary: ``B`` images, ``H, W`` image size, ``Hf, Wf = H / stride, W / stride`` feature
map size, ``C`` feature channels, ``S`` RoI pool size, ``F`` RoI feature size.

``FasterRCNN(backbone=...)`` knows three trunks by name (``frcnn_lib.backbones``). Any other
trunk is a ``keras.Model`` (or Layer) mapping RGB ``(B, H, W, 3)`` float ``0..255`` to a feature
map ``(B, Hf, Wf, C)`` whose cells are ``stride`` pixels apart. :func:`with_backbone` puts it into
a freshly constructed model (not compiled or used yet): the RPN head is made again for ``C``
channels, the anchors and RoI pooling use ``stride``, and the RoI head is rebuilt for ``C`` channels (fc6 / fc7 of
``roi_head_units``, as for the named trunks) unless you pass your own ``(B*R, S, S, C) -> (B*R, F)``
head.

Saving: ``model.save("x.keras")`` stores ``backbone="custom"``, which ``FasterRCNN.from_config``
refuses with a one-line error (it cannot rebuild your code from a config). Keep the code that
builds the model, and save / restore the weights: ``model.build(); model.save_weights("x.weights.h5")``
(a model that was only trained is not yet built for Keras), then
``m = with_backbone(FasterRCNN(...), make_trunk(), stride); m.build(); m.load_weights("x.weights.h5")``.
"""
import keras
import numpy as np

from frcnn_lib.backbones import build_roi_head
from frcnn_lib.runtime.errors import FrcnnError
from frcnn_lib.rcnn import RCNNPredictor
from frcnn_lib.rpn import RPNHead

CUSTOM = "custom"


def with_backbone(model, backbone, stride, roi_head=None):
    """Replace ``model``'s backbone (and RoI head) by ``backbone``; returns ``model``.

    Args:
      model: a ``FasterRCNN`` that has not been compiled, called or trained yet.
      backbone: ``keras.Model`` or Layer, ``(B, H, W, 3)`` float ``0..255`` -> ``(B, Hf, Wf, C)``;
        it does its own preprocessing.
      stride: pixels between feature cells: an input of ``n * stride`` pixels must give
        ``n`` cells (checked on a probe image).
      roi_head: optional ``keras.Model`` ``(R, S, S, C) -> (R, F)``, with ``S`` the model's
        ``roi_pool_size``; default: flatten, then fc6 and fc7 of ``roi_head_units`` (ReLU).

    Raises:
      FrcnnError: the model is already built, ``stride`` is not a positive integer, or the
        backbone's output does not have the shape ``stride`` implies.
    """
    if getattr(model, "compiled", False) or getattr(model, "_frcnn_detect_fn", None) is not None:
        raise FrcnnError("with_backbone: the model was already compiled or used; "
                         "replace the backbone of a freshly constructed FasterRCNN")
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise FrcnnError(f"with_backbone: stride={stride!r}, expected a positive integer")
    if not isinstance(backbone, keras.layers.Layer):
        raise FrcnnError(f"with_backbone: backbone must be a keras.Model or Layer, got {type(backbone).__name__}")
    cells = 4
    probe = backbone(keras.ops.zeros((1, cells * int(stride), cells * int(stride), 3)))
    shape = tuple(probe.shape)
    if len(shape) != 4 or shape[1:3] != (cells, cells):
        raise FrcnnError(f"with_backbone: on a {cells * stride} x {cells * stride} image the backbone gave "
                         f"shape {shape}; with stride={stride} expected (1, {cells}, {cells}, C)")
    channels = int(shape[3])
    s = model.settings
    pool = s["roi_pool_size"]
    if roi_head is None:
        roi_head = build_roi_head("custom", channels, pool, s["roi_head_units"], s["roi_head_dropout"])
    # The constructor built every layer for the named trunk: the RPN head (C input channels)
    # and the predictor (F input features) are made again for the new shapes.
    rpn_head = RPNHead(model.num_anchors, s["rpn_channels"], name="rpn_head")
    rpn_head.build((None, None, None, channels))
    features = int(roi_head.output_shape[-1])
    predictor = RCNNPredictor(model.num_classes + 1, name="rcnn_predictor")
    predictor.build((None, features))
    model._tracker.unlock()   # the constructor built the model, which locks its tracker
    for old in (model.backbone, model.roi_head, model.rpn_head, model.predictor):
        # Keras tracks sub-layers on assignment and never forgets a replaced one: untrack the
        # named trunk and its heads, or their unused weights would stay in model.weights.
        model._tracker.untrack(old)
    model.backbone, model.stride = backbone, int(stride)
    model.roi_head, model.roi_output_size = roi_head, pool
    model.rpn_head, model.predictor = rpn_head, predictor
    model._tracker.lock()
    s["backbone"], s["backbone_weights"] = CUSTOM, None
    return model
