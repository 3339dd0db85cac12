"""Pretrained starts that last: the frozen layers follow the settings, so they survive
``get_config``/``from_config``, ``.keras`` save/load and a real ``frcnn train --resume``;
ResNet-50's BatchNorm is frozen (statistics and affine) with its stem and res2.

ImageNet weights cannot be downloaded here: ``helpers.fake_imagenet`` builds the same
``keras.applications`` graphs with random values in their place.
"""
import json

import keras
import numpy as np
import pytest

from frcnn_lib import FasterRCNN
from frcnn_lib.backbones import frozen_stages_for
from frcnn_lib.runtime.errors import FrcnnError
from helpers import fake_imagenet
from helpers.reliability import run_frcnn
from helpers.synthetic import make_batch

SMALL = dict(rpn_channels=16, rpn_batch_size=32, rpn_pre_nms_top_n_train=200,
             rpn_post_nms_top_n_train=50, rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=20,
             roi_batch_size=8, detections_max=5, image_min_side=64, image_max_side=96,
             anchor_scales=(32, 64), rpn_min_size=0.0)


@pytest.fixture
def imagenet():
    fake_imagenet.install()
    yield
    fake_imagenet.uninstall()


def _frozen(model):
    return sorted(w.path for w in model.non_trainable_weights)


def test_frozen_stages_follow_the_settings():
    assert frozen_stages_for("vgg16", "imagenet") == 2
    assert frozen_stages_for("vgg16", "/some/file.weights.h5") == 2   # a file counts too
    assert frozen_stages_for("vgg16", None) == 0
    assert frozen_stages_for("resnet50", None, 3) == 3
    with pytest.raises(FrcnnError, match="backbone_frozen_stages"):
        frozen_stages_for("small", None, 4)


def test_vgg16_freeze_survives_from_config(imagenet):
    model = FasterRCNN(2, backbone="vgg16", backbone_weights="imagenet", **SMALL)
    frozen = _frozen(model)
    # conv1_1..conv2_2: 4 layers, kernel and bias each (Ren et al. 2015, sec. 4).
    assert len(frozen) == 8 and all("block1_" in p or "block2_" in p for p in frozen)
    rebuilt = FasterRCNN.from_config(model.get_config())     # reads no weights
    assert _frozen(rebuilt) == frozen
    assert len(rebuilt.trainable_weights) == len(model.trainable_weights)


def test_resnet50_frozen_batchnorm_and_stem_survive_save_load(imagenet, tmp_path):
    model = FasterRCNN(2, backbone="resnet50", backbone_weights="imagenet", **SMALL)
    images, targets = make_batch(num_images=2)
    bn = [layer for layer in model.backbone.get_layer("resnet50_trunk").layers
          if isinstance(layer, keras.layers.BatchNormalization)]
    bn += [layer for layer in model.roi_head.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bn and not any(layer.trainable for layer in bn)
    trunk = {w.path for w in model.backbone.trainable_weights}
    assert not any(p.startswith(("conv1_", "conv2_")) or "/conv1_" in p or "/conv2_" in p
                   for p in trunk)
    assert any("conv3_" in p for p in trunk)                  # res3 and res4 train
    stats = [np.array(v) for layer in bn for v in (layer.moving_mean, layer.moving_variance)]
    affine = [np.array(v) for layer in bn for v in (layer.gamma, layer.beta)]
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    model.train_on_batch(images, targets)
    # Nothing of BatchNorm moved: neither statistics nor scale and offset.
    after = [np.array(v) for layer in bn for v in (layer.moving_mean, layer.moving_variance)]
    assert all(np.array_equal(a, b) for a, b in zip(stats, after))
    assert all(np.array_equal(a, np.array(b)) for a, b in
               zip(affine, [v for layer in bn for v in (layer.gamma, layer.beta)]))

    path = str(tmp_path / "resnet.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert _frozen(loaded) == _frozen(model)
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
    assert int(loaded.optimizer.iterations) == 1
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(np.array(a), np.array(b))


def test_resume_of_a_pretrained_backbone_keeps_frozen_set_and_optimizer_state(tmp_path):
    """``frcnn train`` from pretrained weights, then a real ``frcnn train --resume`` process:
    before the fix the frozen set was lost on loading and the optimizer's state did not fit
    any more.  The first run is in this process (``cli.main``), the resume a fresh one.

    The weights are a VGG-16 backbone file (``backbone_weights=PATH``), which implies the
    frozen conv1-conv2 as ImageNet's do, through the same ``freeze`` call from the settings,
    and keeps the RoI head small: 30-45 % less time than ResNet-50 here.  That ResNet-50's stem,
    res2 and BatchNorm survive ``.keras`` loading (the path ``--resume`` takes) is the test
    above."""
    from frcnn_lib import cli
    from frcnn_lib.backbones import build_backbone

    keras.utils.set_random_seed(0)
    weights = str(tmp_path / "vgg16_backbone.weights.h5")
    build_backbone("vgg16")[0].save_weights(weights)
    sets = [a for k, v in {**SMALL, "backbone": "vgg16", "backbone_weights": weights,
                           "roi_pooling": "roi_align", "roi_head_units": 64}.items()
            for a in ("--set", f"{k}={json.dumps(list(v) if isinstance(v, tuple) else v)}")]
    out = tmp_path / "run"
    common = ["train", "--out", out, "--train-images", 4, "--batch-size", 2, "--quiet",
              "--learning-rate", 1e-3, *sets]
    assert cli.main([str(a) for a in common + ["--epochs", 1]]) == 0
    first = keras.models.load_model(str(out / "checkpoints" / "last.keras"))
    # --resume replays the recorded command (the --set overrides included); --epochs 2 extends it.
    code, _, err = run_frcnn(["train", "--out", out, "--quiet", "--resume", "--epochs", 2], timeout=600)
    assert code == 0, err[-3000:]
    assert "resuming from epoch 1" in err      # a log line: stderr (results: stdout)
    second = keras.models.load_model(str(out / "model.keras"))
    # conv1_1..conv2_2: 4 layers, kernel and bias each (Ren et al. 2015, sec. 4).
    assert _frozen(second) == _frozen(first) and len(_frozen(first)) == 8
    assert all("block1_" in p or "block2_" in p for p in _frozen(first))
    assert len(second.optimizer.variables) == len(first.optimizer.variables)
    assert int(second.optimizer.iterations) == 2 * int(first.optimizer.iterations) == 4
