"""Backbones: the convolutional trunk that turns an image into a feature map, and the
per-RoI head network that follows RoI pooling.

Shape glossary: ``B`` images, ``H, W`` image size, ``Hf, Wf = H / stride, W / stride``
feature-map size, ``C`` feature channels, ``R`` RoIs, ``S`` RoI pool size.

==========  ======  ====  ===========================  =================================
name        stride  C     trunk                        RoI head
==========  ======  ====  ===========================  =================================
``vgg16``   16      512   VGG-16 up to conv5_3          fc6, fc7 (``head_units``, 4096)
``resnet50`` 16     1024  ResNet-50 C1-C4               the C5 stage + global avg pool
``small``   8       128   6 convs (3 stride-2 stages)   two fc layers (``head_units``)
==========  ======  ====  ===========================  =================================

``small`` is this project's fast CPU backbone: about 0.3 M parameters in the trunk,
trained from scratch in minutes on the shapes data; stride 8 keeps small objects
on several feature pixels.  ``vgg16`` is the paper's; when pretrained, conv1-conv2 stay
frozen (Ren et al. 2015, sec. 4).  ImageNet weights come from ``keras.applications``
(downloaded to ``~/.keras/models`` on first use).
"""
import os

import keras
from keras import layers

from frcnn_lib.errors import FrcnnError

BACKBONES = ("vgg16", "resnet50", "small")
STRIDES = {"vgg16": 16, "resnet50": 16, "small": 8}
# Files keras.applications looks for in ~/.keras/models before downloading.
IMAGENET_FILES = {
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
}
VGG16_FULL_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels.h5"   # with fc1/fc2, for the RoI head
# Caffe-style preprocessing of keras.applications' VGG-16 and ResNet-50: BGR, mean-subtracted.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


class CaffePreprocess(layers.Layer):
    """RGB ``0..255`` -> BGR minus the ImageNet mean, as the pretrained weights expect."""

    def call(self, images):
        bgr = keras.ops.flip(images, axis=-1)
        return bgr - keras.ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=bgr.dtype)


class UnitScale(layers.Layer):
    """RGB ``0..255`` -> ``[-1, 1]``, for backbones trained from scratch."""

    def call(self, images):
        return images / 127.5 - 1.0


def _imagenet_application(name, weights):
    """``keras.applications`` model with ImageNet weights, or a FrcnnError that says what to do."""
    app = {"vgg16": keras.applications.VGG16, "resnet50": keras.applications.ResNet50}[name]
    try:
        return app(include_top=False, weights="imagenet", input_shape=(None, None, 3))
    except Exception as err:  # network errors come in many types (URLError, OSError, ...)
        folder = os.path.join(os.path.expanduser("~"), ".keras", "models")
        files = [IMAGENET_FILES[name]] + ([VGG16_FULL_FILE] if name == "vgg16" else [])
        raise FrcnnError(
            f"backbone_weights='imagenet': could not load the {name} ImageNet weights ({err}). "
            f"Without internet, put {' and '.join(files)} in {folder} (keras.applications reads "
            f"them from there; the second holds the fc6/fc7 weights of the RoI head), or pass "
            f"backbone_weights=<path to a .weights.h5 file>, or backbone_weights=None to start "
            f"from random weights.") from err


def _trunk(name, weights):
    """The ``keras.Model`` image -> feature map (without preprocessing)."""
    if name == "small":
        inputs = keras.Input((None, None, 3))
        x = inputs
        for i, filters in enumerate((32, 64, 128)):
            x = layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu",
                              name=f"stage{i + 1}_down")(x)
            x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"stage{i + 1}_conv")(x)
        return keras.Model(inputs, x, name="small_trunk")
    if weights == "imagenet":
        app = _imagenet_application(name, weights)
    else:
        app = {"vgg16": keras.applications.VGG16, "resnet50": keras.applications.ResNet50}[name](
            include_top=False, weights=None, input_shape=(None, None, 3))
    out = {"vgg16": "block5_conv3", "resnet50": "conv4_block6_out"}[name]
    trunk = keras.Model(app.input, app.get_layer(out).output, name=f"{name}_trunk")
    if weights == "imagenet" and name == "vgg16":
        for layer in trunk.layers:
            if layer.name.startswith(("block1_", "block2_")):
                layer.trainable = False
    return trunk


def build_backbone(name, weights=None):
    """The feature extractor: RGB ``(B, H, W, 3)`` float ``0..255`` -> ``(B, Hf, Wf, C)``.

    Args:
      name: one of ``BACKBONES``.
      weights: ``None`` (random), ``"imagenet"``, or a path to a weights file saved from a
        backbone of the same name (``backbone.save_weights``).

    Returns:
      ``(backbone: keras.Model, stride: int)``.
    """
    if name not in BACKBONES:
        raise FrcnnError(f"backbone={name!r}: expected one of {', '.join(BACKBONES)}")
    if weights is not None and weights != "imagenet" and not os.path.isfile(str(weights)):
        raise FrcnnError(f"backbone_weights={weights!r}: no such file (expected None, 'imagenet' "
                         f"or the path of a .weights.h5 file)")
    if weights == "imagenet" and name == "small":
        raise FrcnnError("backbone_weights='imagenet': the 'small' backbone has no ImageNet weights; "
                         "use backbone='vgg16' or 'resnet50', or backbone_weights=None")
    trunk = _trunk(name, weights)
    inputs = keras.Input((None, None, 3), name="images")
    pre = UnitScale(name="preprocess") if name == "small" else CaffePreprocess(name="preprocess")
    backbone = keras.Model(inputs, trunk(pre(inputs)), name=f"{name}_backbone")
    if weights is not None and weights != "imagenet":
        try:
            backbone.load_weights(weights)
        except Exception as err:
            raise FrcnnError(f"backbone_weights={weights!r}: could not load it into the {name} "
                             f"backbone ({err})") from err
    return backbone, STRIDES[name]


def build_roi_head(name, roi_channels, pool_size, units, dropout=0.5):
    """The per-RoI network after RoI pooling: ``(R, S, S, C) -> (R, F)`` features.

    ``vgg16`` and ``small``: flatten, then two fully connected layers of ``units`` with
    ReLU and dropout (VGG-16's fc6 and fc7).  ``resnet50``: the C5 stage of ResNet-50
    (stride 2 on ``S x S`` RoIs) and global average pooling, F = 2048.
    """
    inputs = keras.Input((pool_size, pool_size, roi_channels), name="roi_features")
    if name == "resnet50":
        x = _resnet_c5(inputs)
    else:
        x = layers.Flatten(name="flatten")(inputs)
        for i, fc in enumerate(("fc6", "fc7")):
            x = layers.Dense(units, activation="relu", name=fc)(x)
            if dropout:
                x = layers.Dropout(dropout, name=f"drop{6 + i}")(x)
    return keras.Model(inputs, x, name=f"{name}_roi_head")


def _resnet_c5(x):
    """ResNet-50's conv5 stage (3 bottleneck blocks, 2048 channels), then average pooling.

    Layer names follow ``keras.applications.ResNet50`` so that ImageNet weights can be copied
    by name (see ``copy_imagenet_head_weights``).
    """
    def bn(y, name):
        return layers.BatchNormalization(epsilon=1.001e-5, name=name)(y)

    for block in (1, 2, 3):
        p = f"conv5_block{block}_"
        stride = 2 if block == 1 else 1
        shortcut = x
        if block == 1:
            shortcut = bn(layers.Conv2D(2048, 1, strides=stride, name=p + "0_conv")(x), p + "0_bn")
        y = layers.Activation("relu", name=p + "1_relu")(bn(layers.Conv2D(512, 1, strides=stride, name=p + "1_conv")(x), p + "1_bn"))
        y = layers.Activation("relu", name=p + "2_relu")(bn(layers.Conv2D(512, 3, padding="same", name=p + "2_conv")(y), p + "2_bn"))
        y = bn(layers.Conv2D(2048, 1, name=p + "3_conv")(y), p + "3_bn")
        x = layers.Activation("relu", name=p + "out")(layers.Add(name=p + "add")([shortcut, y]))
    return layers.GlobalAveragePooling2D(name="avg_pool")(x)


def copy_imagenet_head_weights(name, roi_head):
    """Initialise the RoI head from ImageNet: VGG-16's fc1/fc2 or ResNet-50's conv5 stage.

    Needs the full ``keras.applications`` model (with its top for VGG-16); raises a
    FrcnnError naming the file to provide when it cannot be loaded.
    """
    if name == "small":
        return
    try:
        if name == "vgg16":
            full = keras.applications.VGG16(include_top=True, weights="imagenet")
            pairs = {"fc6": "fc1", "fc7": "fc2"}
        else:
            full = keras.applications.ResNet50(include_top=False, weights="imagenet")
            pairs = {layer.name: layer.name for layer in roi_head.layers if layer.name.startswith("conv5_")}
    except Exception as err:
        raise FrcnnError(
            f"could not load the {name} ImageNet weights for the RoI head ({err}); without internet "
            f"put {VGG16_FULL_FILE if name == 'vgg16' else IMAGENET_FILES[name]} in "
            f"~/.keras/models/") from err
    for ours, theirs in pairs.items():
        roi_head.get_layer(ours).set_weights(full.get_layer(theirs).get_weights())
