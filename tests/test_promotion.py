"""Promotion: a learner's parts take the library's place inside FasterRCNN (frcnn_lib.course.promotion).

The learner's parts here are the course's reference answers (notebooks/_tools/reference_answers.py,
written with keras.ops like the exercises ask), so a promoted model must give the library's
numbers; a deliberately wrong part must change them (so the promoted code is really run).
"""
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from frcnn_lib import FasterRCNN
from frcnn_lib.runtime.errors import FrcnnError
from frcnn_lib.course.exercises import CHECKS_BY_PART, adopt, check_iou, load_learner_parts
from frcnn_lib.course.exercises.adopt import save_part
from frcnn_lib.parts import LIBRARY
from frcnn_lib.training.presets import get_preset
from frcnn_lib.course.promotion import PART_FIELDS, describe, promote

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "notebooks" / "_tools"))
import reference_answers as answers  # noqa: E402

SETTINGS = {**get_preset("shapes_cpu")["model"], "roi_pooling": "roi_align",
            "rpn_pre_nms_top_n_train": 300, "rpn_post_nms_top_n_train": 100,
            "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 50}
GRAPH_PARTS = {k: v for k, v in answers.PROMOTABLE.items() if k != "nms"}


def _batch():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, 96, 96, 3)).astype("float32")
    boxes = np.array([[[10, 10, 60, 50], [50, 40, 90, 94]], [[20, 30, 70, 80], [0, 0, 0, 0]]], np.float32)
    labels = np.array([[1, 2], [3, -1]], np.int32)
    return images, {"boxes": boxes, "labels": labels}


@pytest.fixture(scope="module")
def library_model():
    keras.utils.set_random_seed(0)
    return FasterRCNN(num_classes=3, **SETTINGS)


def _twin(model, **parts):
    twin = FasterRCNN(num_classes=3, **SETTINGS)
    twin.set_weights(model.get_weights())
    return promote(twin, **parts)


def _losses(model, jit_compile=False, portable=None):
    images, targets = _batch()
    step = tf.function(lambda: model.compute_losses(images, targets, portable=portable),
                       jit_compile=jit_compile)
    return {k: float(v) for k, v in step().items()}


def test_an_unpromoted_model_runs_the_library_functions():
    model = FasterRCNN(num_classes=2, backbone="small", rpn_channels=16, roi_head_units=16)
    assert model.parts is LIBRARY and LIBRARY.promoted == () and LIBRARY.roi_grid is None
    from frcnn_lib import boxes, losses, matching, nms, sampling
    from frcnn_lib.anchors import generate_anchors
    assert (LIBRARY.iou, LIBRARY.match, LIBRARY.sample, LIBRARY.encode, LIBRARY.decode,
            LIBRARY.smooth_l1, LIBRARY.nms, LIBRARY.anchors) == (
        boxes.iou, matching.match, sampling.sample_balanced, boxes.encode, boxes.decode,
        losses.smooth_l1, nms.padded_nms, generate_anchors)


def test_every_part_promoted_gives_the_library_losses_and_detections(library_model):
    mine = _twin(library_model, **answers.PROMOTABLE)
    assert mine.parts.promoted == tuple(PART_FIELDS) and mine.parts.host_parts == ("nms",)
    expected, got = _losses(library_model), _losses(mine)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
    images, _ = _batch()
    a, b = library_model(images), mine(images)
    np.testing.assert_array_equal(a["num_detections"].numpy(), b["num_detections"].numpy())
    np.testing.assert_array_equal(a["labels"].numpy(), b["labels"].numpy())
    np.testing.assert_allclose(a["boxes"].numpy(), b["boxes"].numpy(), atol=1e-3)
    assert "yours (on the host: no XLA)" in describe(mine)


def test_graph_parts_compile_with_xla(library_model):
    mine = _twin(library_model, **GRAPH_PARTS)
    expected = _losses(library_model, jit_compile=True, portable=True)
    got = _losses(mine, jit_compile=True, portable=True)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_wrong_part_changes_the_result(library_model):
    def intersection_over_first(a, b):   # a typical mistake: divided by one area, not the union
        a = tf.cast(a, tf.float32)[:, None]
        b = tf.cast(b, tf.float32)[None]
        iw = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
        ih = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
        return iw * ih / ((a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]))

    expected = _losses(library_model)
    got = _losses(_twin(library_model, iou=intersection_over_first))
    assert any(abs(got[n] - expected[n]) > 1e-4 for n in expected)
    got = _losses(_twin(library_model, smooth_l1=lambda x, sigma: 2.0 * answers.smooth_l1(x, sigma)))
    np.testing.assert_allclose(got["rpn_box"], 2 * expected["rpn_box"], rtol=1e-5)
    np.testing.assert_allclose(got["rcnn_class"], expected["rcnn_class"], rtol=1e-6)


def test_fit_runs_the_promoted_parts_in_the_compiled_step_and_drops_xla_for_host_parts(library_model):
    images, targets = _batch()
    data = tf.data.Dataset.from_tensors((images, targets)).repeat(2)
    histories = []
    for parts in ({}, answers.PROMOTABLE):
        model = _twin(library_model, **parts)
        model.compile(optimizer=keras.optimizers.SGD(1e-3), jit_compile=bool(parts))
        histories.append(model.fit(data, epochs=1, verbose=0).history["loss"][0])
        if parts:
            assert model.jit_compile is False   # the host NMS cannot be compiled by XLA
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-5)


def test_promote_without_parts_restores_the_library_and_rejects_unknown_names(library_model):
    model = _twin(library_model, iou=answers.iou)
    assert model.parts.promoted == ("iou",)
    assert promote(model).parts is LIBRARY
    with pytest.raises(FrcnnError, match="unknown part"):
        promote(model, ious=answers.iou)
    with pytest.raises(FrcnnError, match="must be a function"):
        promote(model, iou=3)


def test_saved_parts_load_back_checked_and_a_broken_file_falls_back(tmp_path, capsys):
    for part, check in CHECKS_BY_PART.items():
        assert save_part(answers.PROMOTABLE[part], check, tmp_path).name == f"{part}.py"
    (tmp_path / "iou.py").write_text("def part(a, b):\n    return a\n")        # wrong shape
    (tmp_path / "nms.py").write_text("def part(:\n")
    found = load_learner_parts(tmp_path)
    out = capsys.readouterr().out
    assert set(found) == set(CHECKS_BY_PART) - {"iou", "nms"}
    assert "nms.py does not load: SyntaxError" in out
    assert "iou.py no longer passes" in out
    # What was loaded is the learner's code from the file, and it runs in a model.
    model = FasterRCNN(num_classes=3, **SETTINGS)
    assert promote(model, **found).parts.promoted == tuple(p for p in PART_FIELDS if p in found)


def test_adopt_returns_the_learner_function_or_the_library_with_a_banner(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)            # outside a checkout: runs/course/learner/ under the cwd
    assert adopt(answers.iou, check_iou) is answers.iou
    out = capsys.readouterr().out
    assert "[PASS] iou" in out and "runs on your iou" in out
    saved = tmp_path / "runs" / "course" / "learner" / "iou.py"
    assert saved.is_file()

    def my_iou(a, b):
        raise NotImplementedError("not implemented yet")

    fallback = adopt(my_iou, check_iou)
    out = capsys.readouterr().out
    assert fallback is check_iou.reference and "TODO  my_iou is not written yet" in out
    assert "frcnn_lib.boxes.iou" in out and "show_reference(check_iou)" in out
    assert saved.is_file()                  # a stub keeps an earlier right answer

    def my_iou(a, b):                       # noqa: F811 -- a wrong answer replaces it
        return np.zeros((len(a), len(b)))

    adopt(my_iou, check_iou)
    assert "does not pass the check yet" in capsys.readouterr().out
    assert not saved.exists()
    boxes = np.array([[0, 0, 10, 10], [5, 5, 15, 15]], np.float32)
    np.testing.assert_allclose(np.asarray(fallback(boxes, boxes)), [[1, 25 / 175], [25 / 175, 1]], rtol=1e-6)
