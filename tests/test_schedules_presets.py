"""Linear warmup (against the formula, by hand) and the presets' values (against their sources)."""
import keras
import numpy as np
import pytest

from frcnn_lib.model import DEFAULTS
from frcnn_lib.training.presets import PRESETS
from frcnn_lib.training.schedules import LinearWarmup
from frcnn_lib.training.runs import make_optimizer


def test_linear_warmup_rises_from_the_factor_to_the_schedule():
    base = keras.optimizers.schedules.PiecewiseConstantDecay([100], [0.01, 0.001])
    warm = LinearWarmup(base, warmup_steps=10, warmup_factor=0.001)
    got = [float(warm(step)) for step in (0, 5, 10, 50, 150)]
    # by hand: 0.01 * (0.001 + 0.999 * step / 10) up to step 10
    np.testing.assert_allclose(got, [1e-5, 0.01 * (0.001 + 0.999 * 0.5), 0.01, 0.01, 0.001],
                               rtol=1e-5)
    again = LinearWarmup.from_config(warm.get_config())
    assert float(again(5)) == pytest.approx(got[1])


def test_make_optimizer_applies_warmup_and_survives_serialisation():
    train = dict(optimizer="sgd", learning_rate=0.01, momentum=0.9, schedule="step",
                 step_epochs=(8, 11), epochs=12, warmup_steps=1000, warmup_factor=0.001)
    optimizer = make_optimizer(train, steps_per_epoch=1000)       # drops at 8000 and 11000
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    expected = [(0, 1e-5), (500, 0.01 * (0.001 + 0.999 * 0.5)), (1000, 0.01), (7999, 0.01),
                (8500, 0.001), (11500, 1e-4)]
    for step, want in expected:
        assert float(optimizer._learning_rate(step)) == pytest.approx(want, rel=1e-5), step
        assert float(restored._learning_rate(step)) == pytest.approx(want, rel=1e-5), step


def test_presets_match_their_references():
    voc = PRESETS["voc_vgg16"]
    # py-faster-rcnn end2end: 70k images, drop at 50k, lr 1e-3, momentum 0.9, wd 5e-4.
    images_per_epoch = 5011
    t = voc["train"]
    assert t["batch_size"] * t["epochs"] * (images_per_epoch // t["batch_size"]) == pytest.approx(70_000, rel=0.01)
    assert t["step_epochs"][0] * images_per_epoch == pytest.approx(50_000, rel=0.01)
    assert (t["learning_rate"], t["momentum"], voc["model"]["weight_decay"]) == (1e-3, 0.9, 5e-4)
    coco = PRESETS["coco_resnet50"]
    m, t = coco["model"], coco["train"]
    assert m["anchor_scales"] == (32, 64, 128, 256, 512) and m["weight_decay"] == 1e-4
    assert m["roi_batch_size"] == 512 and t["warmup_steps"] == 1000
    # Detectron2 1x: 90k iterations of 16 images, lr 0.02 -> linear scaling to 8 images.
    assert t["learning_rate"] / t["batch_size"] == pytest.approx(0.02 / 16)
    assert t["epochs"] * 118_287 == pytest.approx(90_000 * 16, rel=0.02)
    for preset in PRESETS.values():
        assert set(preset["model"]) <= set(DEFAULTS)
