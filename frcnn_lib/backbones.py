"""Backbones: the convolutional trunk that turns an image into a feature map, and the
per-RoI head network that follows RoI pooling.

Shape glossary: ``B`` images, ``H, W`` image size, ``Hf, Wf = H / stride, W / stride``
feature-map size, ``C`` feature channels, ``R`` RoIs, ``S`` RoI pool size.

==============  ======  ====  ============================  ===============================
name            stride  C     trunk                         RoI head
==============  ======  ====  ============================  ===============================
``vgg16``       16      512   VGG-16 up to conv5_3          fc6, fc7 (``head_units``, 4096)
``resnet50``    16      1024  ResNet-50 C1-C4               the C5 stage + global avg pool
``small``       8       128   6 convs (3 stride-2 stages)   two fc layers (``head_units``)
``small_deep``  8       128   8 convs + a stage-2 shortcut  two fc layers (``head_units``)
==============  ======  ====  ============================  ===============================

``small`` is this project's fast CPU backbone: about 0.3 M parameters in the trunk,
trained from scratch in minutes on the shapes data; stride 8 keeps small objects
on several feature pixels; its receptive field is 43 px.  ``small_deep`` (0.55 M parameters)
adds a 3x3 convolution to stages 2 and 3, which widens the field to 67 px, and a shortcut
that carries stage 2's stride-4 features into the output: a stride-2 3x3 convolution of
them, added to stage 3's (the bottom-up path of PANet, Liu et al. 2018), so that small
objects keep their finer detail.  ``vgg16`` is the paper's.  ImageNet weights come from
``keras.applications`` (downloaded to ``~/.keras/models`` on first use).  Which layers are
frozen follows from the settings alone (:func:`frozen_stages_for`, :func:`freeze`): with
pretrained weights, conv1-conv2 of VGG-16 and the stem + res2 of ResNet-50, whose
BatchNorm layers are all frozen as well.
"""
import os

import keras
from keras import layers

from frcnn_lib.runtime.errors import FrcnnError, MissingWeightsError

BACKBONES = ("vgg16", "resnet50", "small", "small_deep")
# The trunks built here (no ImageNet weights): stride-1 3x3 convolutions after each stage's
# stride-2 one, for the stages of 32, 64 and 128 channels, and whether stage 2 also reaches
# the output through a shortcut.
SMALL_TRUNKS = {"small": ((1, 1, 1), False), "small_deep": ((1, 2, 2), True)}
STRIDES = {"vgg16": 16, "resnet50": 16, **dict.fromkeys(SMALL_TRUNKS, 8)}
# Files keras.applications looks for in ~/.keras/models before downloading.
IMAGENET_FILES = {
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
}
VGG16_FULL_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels.h5"   # with fc1/fc2, for the RoI head
# Caffe-style preprocessing of keras.applications' VGG-16 and ResNet-50: BGR, mean-subtracted.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# The RGB 0..255 colour each backbone's preprocessing maps to zero: padding is filled with it,
# so that a padded band looks like "no signal" to the first convolution (as when the
# reference implementations pad after normalising).
NEUTRAL_RGB = {"vgg16": _CAFFE_MEAN_BGR[::-1], "resnet50": _CAFFE_MEAN_BGR[::-1],
               **dict.fromkeys(SMALL_TRUNKS, (127.5, 127.5, 127.5))}

# Stages that ``frozen_stages`` counts, in order, by layer-name prefix.  VGG-16: its five
# conv blocks.  ResNet-50: the stem (conv1 + pool1, Detectron2's "stem") and res2..res4 of the
# trunk (res5 is the RoI head).  The small trunks: their three stages.
STAGES = {
    "vgg16": [("block1_",), ("block2_",), ("block3_",), ("block4_",), ("block5_",)],
    "resnet50": [("conv1_", "pool1_"), ("conv2_",), ("conv3_",), ("conv4_",)],
    **dict.fromkeys(SMALL_TRUNKS, (("stage1_",), ("stage2_",), ("stage3_",))),
}
# Frozen when starting from pretrained weights.  VGG-16: conv1-conv2 (Ren et al. 2015, sec. 4;
# py-faster-rcnn's prototxts set lr_mult 0 there).  ResNet-50: stem + res2 (Detectron2's
# MODEL.BACKBONE.FREEZE_AT = 2; torchvision's trainable_backbone_layers = 3 leaves the same
# frozen).  From random weights nothing is frozen.
PRETRAINED_FROZEN_STAGES = {"vgg16": 2, "resnet50": 2, **dict.fromkeys(SMALL_TRUNKS, 0)}


class CaffePreprocess(layers.Layer):
    """RGB ``0..255`` -> BGR minus the ImageNet mean, as the pretrained weights expect."""

    def call(self, images):
        bgr = keras.ops.flip(images, axis=-1)
        return bgr - keras.ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=bgr.dtype)


class UnitScale(layers.Layer):
    """RGB ``0..255`` -> ``[-1, 1]``, for backbones trained from scratch."""

    def call(self, images):
        return images / 127.5 - 1.0


def keras_models_folder():
    """Where ``keras.applications`` looks for (and downloads) weight files: ``keras_home()/models``,
    ``~/.keras/models`` unless ``KERAS_HOME`` is set (``keras.utils.get_file``'s cache)."""
    from keras.src.backend import config

    return os.path.join(os.path.expanduser(config.keras_home()), "models")


def _one_line(err):
    return " ".join(str(err).split()) or type(err).__name__


def _imagenet_application(name, weights):
    """``keras.applications`` model with ImageNet weights, or a MissingWeightsError (one line)
    that says which files to put where."""
    app = {"vgg16": keras.applications.VGG16, "resnet50": keras.applications.ResNet50}[name]
    try:
        return app(include_top=False, weights="imagenet", input_shape=(None, None, 3))
    except Exception as err:  # network errors come in many types (URLError, OSError, ...)
        folder = keras_models_folder()
        files = [IMAGENET_FILES[name]] + ([VGG16_FULL_FILE] if name == "vgg16" else [])
        raise MissingWeightsError(
            f"backbone_weights='imagenet': the {name} ImageNet weights are missing (the download "
            f"failed: {_one_line(err)}); without internet, put "
            f"{' and '.join(os.path.join(folder, f) for f in files)} there (Keras' cache"
            f"{'; the second holds the RoI head fc6/fc7' if name == 'vgg16' else ''}), "
            f"or set backbone_weights to a .weights.h5 file, or to None for random weights") from err


def _trunk(name, weights):
    """The ``keras.Model`` image -> feature map (without preprocessing)."""
    if name in SMALL_TRUNKS:
        inputs = keras.Input((None, None, 3))
        x = inputs
        stage_convs, shortcut = SMALL_TRUNKS[name]
        for i, (filters, convs) in enumerate(zip((32, 64, 128), stage_convs)):
            x = layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu",
                              name=f"stage{i + 1}_down")(x)
            if i == 2 and shortcut:   # stage 2's output (B, H/4, W/4, 64) -> (B, H/8, W/8, 128)
                skip = layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu",
                                     name="stage3_shortcut")(previous)
            for k in range(convs):
                x = layers.Conv2D(filters, 3, padding="same", activation="relu",
                                  name=f"stage{i + 1}_conv{k + 1 if k else ''}")(x)
            previous = x    # this stage's output: the next stage's input
        if shortcut:
            x = layers.Add(name="stage3_sum")([x, skip])
        return keras.Model(inputs, x, name=f"{name}_trunk")
    if weights == "imagenet":
        app = _imagenet_application(name, weights)
    else:
        app = {"vgg16": keras.applications.VGG16, "resnet50": keras.applications.ResNet50}[name](
            include_top=False, weights=None, input_shape=(None, None, 3))
    out = {"vgg16": "block5_conv3", "resnet50": "conv4_block6_out"}[name]
    return keras.Model(app.input, app.get_layer(out).output, name=f"{name}_trunk")


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
    if weights == "imagenet" and name in SMALL_TRUNKS:
        raise FrcnnError(f"backbone_weights='imagenet': the {name!r} backbone has no ImageNet weights; "
                         "use backbone='vgg16' or 'resnet50', or backbone_weights=None")
    trunk = _trunk(name, weights)
    inputs = keras.Input((None, None, 3), name="images")
    pre = UnitScale(name="preprocess") if name in SMALL_TRUNKS else CaffePreprocess(name="preprocess")
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

    ``vgg16`` and the small ones: flatten, then two fully connected layers of ``units`` with
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
    if name in SMALL_TRUNKS:
        return
    try:
        if name == "vgg16":
            full = keras.applications.VGG16(include_top=True, weights="imagenet")
            pairs = {"fc6": "fc1", "fc7": "fc2"}
        else:
            full = keras.applications.ResNet50(include_top=False, weights="imagenet")
            pairs = {layer.name: layer.name for layer in roi_head.layers if layer.name.startswith("conv5_")}
    except Exception as err:
        file = os.path.join(keras_models_folder(), VGG16_FULL_FILE if name == "vgg16" else IMAGENET_FILES[name])
        raise MissingWeightsError(
            f"backbone_weights='imagenet': the {name} ImageNet weights of the RoI head are missing "
            f"(the download failed: {_one_line(err)}); without internet, put {file} there") from err
    if name == "vgg16" and roi_head.get_layer("fc6").units != 4096:
        raise FrcnnError(f"backbone_weights for vgg16: the RoI head starts from ImageNet's fc6/fc7, "
                         f"which have 4096 units; got roi_head_units="
                         f"{roi_head.get_layer('fc6').units}")
    for ours, theirs in pairs.items():
        roi_head.get_layer(ours).set_weights(full.get_layer(theirs).get_weights())


def frozen_stages_for(name, weights, frozen_stages=None):
    """How many leading stages to freeze: ``frozen_stages`` if given, else
    ``PRETRAINED_FROZEN_STAGES[name]`` when ``weights`` is set (ImageNet or a file), else 0.

    A function of the settings alone, so that a model rebuilt from its config (``.keras``
    loading, ``--resume``) freezes exactly what the original froze.
    """
    if frozen_stages is None:
        return PRETRAINED_FROZEN_STAGES[name] if weights is not None else 0
    if isinstance(frozen_stages, bool) or not isinstance(frozen_stages, int) \
            or not 0 <= frozen_stages <= len(STAGES[name]):
        raise FrcnnError(f"backbone_frozen_stages={frozen_stages!r}: expected None or an int in "
                         f"0..{len(STAGES[name])} for backbone {name!r}")
    return frozen_stages


def freeze(backbone, roi_head, name, stages, frozen_batchnorm):
    """Make the first ``stages`` stages of ``backbone`` non-trainable, and with
    ``frozen_batchnorm`` every BatchNormalization layer of backbone and RoI head too.

    A Keras BatchNormalization layer with ``trainable = False`` normalises with its moving
    statistics even in training and updates neither them nor its scale and offset: the
    ``FrozenBatchNorm2d`` of torchvision and Detectron2.
    """
    prefixes = tuple(p for stage in STAGES[name][:stages] for p in stage)
    trunk = backbone.get_layer(f"{name}_trunk")
    for layer in trunk.layers:
        if prefixes and layer.name.startswith(prefixes):
            layer.trainable = False
    if frozen_batchnorm:
        for model in (trunk, roi_head):
            for layer in model.layers:
                if isinstance(layer, layers.BatchNormalization):
                    layer.trainable = False
