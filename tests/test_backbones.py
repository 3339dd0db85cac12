"""Backbones: vgg16 / resnet50 / small build and run inside FasterRCNN, their strides, and
the errors of ``backbone_weights``.

vgg16 and resnet50 are built once each with random weights (no download) and run on one
64 x 96 image; heads are shrunk (32 RPN channels, 32 RoI-head units, 8 proposals).
"""
import os
import threading
import urllib.error

import keras
import numpy as np
import pytest
import tensorflow as tf

from frcnn_lib import FasterRCNN, FrcnnError
from frcnn_lib.backbones import IMAGENET_FILES, build_backbone
from helpers.synthetic import check_padded_detections

SMALL_HEADS = dict(anchor_scales=(32, 64), anchor_ratios=(0.5, 1.0, 2.0), rpn_channels=32,
                   roi_head_units=32, rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=8,
                   detections_max=5)
CHANNELS = {"small": 128, "small_deep": 128, "vgg16": 512, "resnet50": 1024}


@pytest.fixture(scope="module")
def big_models():
    """vgg16 and resnet50 detectors with random weights, built lazily and kept."""
    cache = {}

    def get(name):
        if name not in cache:
            keras.utils.set_random_seed(0)
            cache[name] = FasterRCNN(2, backbone=name, backbone_weights=None, **SMALL_HEADS)
        return cache[name]
    return get


@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
def test_paper_backbones_build_and_detect_on_a_small_image(big_models, name):
    model = big_models(name)
    assert model.stride == 16
    image = np.random.default_rng(0).uniform(0, 255, (1, 64, 96, 3)).astype(np.float32)
    out = model.predict(image, verbose=0)
    counts = check_padded_detections(out, 1, 64, 96, num_classes=2, max_detections=5)
    assert counts[0] >= 1  # random heads score every class ~1/3 > the 0.05 threshold


def _feature_size(size, name):
    """Feature-map side as Keras computes it: 'same' stride-2 convs round up (small,
    resnet50: conv1, pool1 and the stride-2 1x1 convs with explicit padding), VGG-16's
    'valid' 2x2 max pools round down."""
    if name == "vgg16":
        return size // 16
    stride = {"small": 8, "small_deep": 8, "resnet50": 16}[name]
    return -(-size // stride)


@pytest.mark.parametrize("name", ["small", "small_deep", "vgg16", "resnet50"])
def test_feature_map_size_follows_the_stride(big_models, name):
    if name.startswith("small"):
        backbone, stride = build_backbone(name)
        assert stride == 8
    else:
        backbone, stride = big_models(name).backbone, big_models(name).stride
    for height, width in [(64, 96), (70, 101), (33, 47)]:
        features = backbone(np.zeros((1, height, width, 3), np.float32))
        expected = (1, _feature_size(height, name), _feature_size(width, name), CHANNELS[name])
        assert tuple(features.shape) == expected, (name, height, width, features.shape)


@pytest.mark.parametrize("name", ["small", "small_deep"])
def test_imagenet_weights_for_the_small_backbones_are_rejected(name):
    with pytest.raises(FrcnnError, match=f"'{name}'") as info:
        FasterRCNN(2, backbone=name, backbone_weights="imagenet")
    assert "imagenet" in str(info.value)


@pytest.mark.parametrize("name,convs,field", [("small", 6, 43), ("small_deep", 9, 67)])
def test_the_small_trunks_receptive_field(name, convs, field):
    # By hand: each 3x3 conv widens the field by 2 x the stride so far (strides 2, 2, 2):
    # small 3+4+4+8+8+16 = 43 px; small_deep adds a conv at stride 4 and one at 8: +8 +16 = 67
    # (its shortcut from stage 2, 3+4+4+8+8+8 = 35 px, lies inside that).
    # Measured: with positive weights every path is live, and the input pixels that move one
    # feature cell are exactly its field.
    trunk = build_backbone(name)[0].get_layer(f"{name}_trunk")
    kernels = [layer for layer in trunk.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(kernels) == convs
    for layer in kernels:
        kernel, bias = layer.get_weights()
        layer.set_weights([np.full_like(kernel, 1.0 / kernel[..., 0].size), np.full_like(bias, 0.1)])
    x = tf.ones((1, 160, 160, 3))
    with tf.GradientTape() as tape:
        tape.watch(x)
        cell = trunk(x)[0, 10, 10, 0]
    rows = np.flatnonzero(np.abs(tape.gradient(cell, x)[0]).sum(axis=(1, 2)))
    assert rows[-1] - rows[0] + 1 == field


@pytest.mark.parametrize("name", ["small", "small_deep"])
def test_the_small_trunks_by_hand(name):
    # The documented architecture re-computed with tf.nn.conv2d from the layers' weights:
    # per stage a stride-2 3x3 conv and 1 (small) or 1, 2, 2 (small_deep) stride-1 ones,
    # all ReLU; small_deep adds ReLU(stride-2 3x3 conv of stage 2's output) to stage 3's.
    trunk = build_backbone(name)[0].get_layer(f"{name}_trunk")
    rng = np.random.default_rng(0)
    for layer in trunk.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.set_weights([rng.normal(0, 0.2, w.shape).astype("float32") for w in layer.get_weights()])
    x = tf.constant(rng.normal(0, 1, (2, 37, 50, 3)), tf.float32)   # odd sizes: SAME padding of stride 2

    def conv(inputs, layer_name, stride):
        kernel, bias = trunk.get_layer(layer_name).get_weights()
        return tf.nn.relu(tf.nn.conv2d(inputs, kernel, stride, "SAME") + bias)

    convs = {"small": (1, 1, 1), "small_deep": (1, 2, 2)}[name]
    h, outputs = x, []
    for stage, n in enumerate(convs, start=1):
        h = conv(h, f"stage{stage}_down", 2)
        for k in range(n):
            h = conv(h, f"stage{stage}_conv{k + 1 if k else ''}", 1)
        outputs.append(h)
    if name == "small_deep":
        h = h + conv(outputs[1], "stage3_shortcut", 2)
    np.testing.assert_allclose(trunk(x).numpy(), h.numpy(), rtol=1e-4, atol=1e-4)
    assert h.shape == (2, 5, 7, 128)


@pytest.mark.parametrize("name", ["small", "vgg16"])
def test_missing_weights_file_is_named(name):
    with pytest.raises(FrcnnError, match="/no/such/file"):
        FasterRCNN(2, backbone=name, backbone_weights="/no/such/file")


def test_weights_file_is_loaded_and_a_bad_one_is_named(tmp_path):
    keras.utils.set_random_seed(5)
    source, _ = build_backbone("small")
    path = str(tmp_path / "backbone.weights.h5")
    source.save_weights(path)
    model = FasterRCNN(2, backbone="small", backbone_weights=path)
    for a, b in zip(model.backbone.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(a, b)

    garbage = tmp_path / "garbage.weights.h5"
    garbage.write_bytes(b"not an hdf5 file")
    with pytest.raises(FrcnnError, match="garbage.weights.h5"):
        FasterRCNN(2, backbone="small", backbone_weights=str(garbage))


def _run_with_timeout(fn, seconds):
    """``fn()`` in a thread; its exception, or a failure if it is still running after
    ``seconds`` (a download that hangs instead of failing)."""
    result = {}

    def target():
        try:
            fn()
        except BaseException as err:  # noqa: BLE001  (handed to the test)
            result["error"] = err
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return result.get("error")


def test_vgg16_imagenet_without_internet_names_the_file_to_provide(tmp_path, monkeypatch):
    # Deterministic whatever the machine: an empty Keras cache (a cached file is not found)
    # and a download that fails as it does offline.
    import keras.src.backend.config as keras_config
    import keras.src.utils.file_utils as file_utils

    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path / "keras_home"))
    attempts = []

    def offline(url, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError("[Errno -2] Name or service not known (test: offline)")
    monkeypatch.setattr(file_utils, "urlretrieve", offline)

    error = _run_with_timeout(lambda: FasterRCNN(2, backbone="vgg16", backbone_weights="imagenet"), 300)
    assert isinstance(error, FrcnnError), repr(error)
    assert attempts and attempts[0].endswith(IMAGENET_FILES["vgg16"]), attempts  # patch took
    message = str(error)
    assert IMAGENET_FILES["vgg16"] == "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert IMAGENET_FILES["vgg16"] in message, message
    # Keras' cache as Keras computes it (KERAS_HOME, else ~/.keras): here the patched one.
    assert os.path.join(str(tmp_path / "keras_home"), "models", IMAGENET_FILES["vgg16"]) in message, message


def test_vgg16_imagenet_head_weights_missing_names_the_full_model_file(monkeypatch):
    # The trunk's notop file is "there" (random weights stand in for it); the fc6/fc7
    # weights need the full VGG-16 file, which cannot be downloaded.
    original = keras.applications.VGG16

    def vgg16(include_top=True, weights="imagenet", **kwargs):
        if include_top:
            raise urllib.error.URLError("test: offline")
        return original(include_top=False, weights=None, **kwargs)
    monkeypatch.setattr(keras.applications, "VGG16", vgg16)
    with pytest.raises(FrcnnError, match="vgg16_weights_tf_dim_ordering_tf_kernels.h5") as info:
        FasterRCNN(2, backbone="vgg16", backbone_weights="imagenet", roi_head_units=32)
    assert ".keras/models" in str(info.value)
