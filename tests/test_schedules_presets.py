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


def test_the_main_jobs_preset_is_the_courses_detector_with_its_levers():
    # shapes_224 (make demo) changes shapes_cpu (the course's detector) in exactly the levers
    # benchmarks/README.md measures, and trains 4000 steps at batch 4.
    course, main = PRESETS["shapes_cpu"], PRESETS["shapes_224"]
    before, after = {**DEFAULTS, **course["model"]}, {**DEFAULTS, **main["model"]}
    changed = {k: v for k, v in after.items() if before[k] != v}
    assert changed == dict(backbone="small_deep", anchor_scales=(20, 31, 50, 82), anchor_ratios=(0.6, 1.0, 1.5),
                           detections_nms_iou=0.5, image_min_side=224, image_max_side=224)
    t = main["train"]
    assert {k: v for k, v in t.items() if course["train"].get(k) != v} == dict(
        learning_rate=2e-3, warmup_steps=200, warmup_factor=0.1, epochs=8)
    assert t["epochs"] * -(-t["train_images"] // t["batch_size"]) == 4000


def test_the_main_jobs_anchors_are_what_frcnn_anchors_fits_at_224_px():
    # `frcnn anchors --set image_min_side=224 --set image_max_side=224`: its fit at x1.
    from frcnn_lib.datasets import shapes
    from frcnn_lib.training import anchor_fit

    m = PRESETS["shapes_224"]["model"]
    groups = anchor_fit.resized_boxes(shapes.load("train"), m["image_min_side"], m["image_max_side"], 2000, 0)
    sizes, aspects = anchor_fit.size_and_aspect(np.concatenate(list(groups.values())))
    scales, ratios = anchor_fit.fit_scales_ratios(sizes, aspects, 4, 3)
    assert (tuple(scales), tuple(ratios)) == (m["anchor_scales"], m["anchor_ratios"])
