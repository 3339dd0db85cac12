"""Bad input given to the model itself (not through the dataset readers).

What happens, by case (``frcnn_lib.runtime.input_checks`` checks on the graph, ``fit``,
``evaluate``, ``predict`` and ``*_on_batch`` turn a failed check into a one-line
FrcnnError, and a rejected batch changes no weight and no optimizer step):

| input                                     | behaviour                         |
|-------------------------------------------|-----------------------------------|
| image without objects (all labels -1)     | trains, finite losses             |
| box of zero width or height               | trains, finite losses (no anchor) |
| box partly or wholly outside the image    | trains, finite losses             |
| box with x2 < x1 or y2 < y1               | FrcnnError naming targets['boxes']|
| NaN or inf box coordinate                 | FrcnnError naming targets['boxes']|
| label 0, < -1 or > num_classes            | FrcnnError naming targets['labels']|
| NaN pixel                                 | FrcnnError naming images          |
| boxes (B, G, 5), labels of another (B, G) | FrcnnError naming the shapes      |

The pipeline (``make_dataset``) clips boxes to the image, so boxes outside it arrive with
zero size; it passes NaN boxes and wrong labels through, and the model stops them.
``model.detect`` takes images from 10 x 10 to 8000 x 6000 pixels.
"""
import traceback

import numpy as np
import pytest
import tensorflow as tf

from frcnn_lib.datasets.pipeline import make_dataset
from frcnn_lib.datasets.records import DetectionData, ImageRecord
from frcnn_lib.runtime.errors import FrcnnError
from helpers.synthetic import HEIGHT, WIDTH, after_one_step, make_batch, reset_to

NUM_CLASSES = 2


@pytest.fixture(autouse=True)
def _seed():
    """Overrides conftest's: ``tf.random.set_seed`` before every test would make Keras
    retrace the module's training step each time (a second apiece); nothing here draws
    from TensorFlow's global generator."""
    np.random.seed(0)


@pytest.fixture(scope="module")
def trained():
    """A tiny detector after one training step (the step traced once for the module)."""
    return after_one_step(NUM_CLASSES)


@pytest.fixture()
def model(trained):
    """The module's model, weights and optimizer state reset before each test."""
    return reset_to(trained)


def targets_with(box=None, label=None, at=(0, 0)):
    images, targets = make_batch()
    boxes, labels = targets["boxes"].copy(), targets["labels"].copy()
    if box is not None:
        boxes[at] = box
    if label is not None:
        labels[at] = label
    return images, {"boxes": boxes, "labels": labels}


def assert_finite_step(model, images, targets):
    logs = model.train_on_batch(images, targets, return_dict=True)
    for name, value in logs.items():
        assert np.isfinite(float(value)), (name, logs)
    for weight in model.get_weights():
        assert np.all(np.isfinite(weight))
    return logs


def assert_rejected(model, call, *words):
    """``call()`` raises a one-line FrcnnError naming ``words``; nothing was trained."""
    weights = model.get_weights()
    step = int(model.optimizer.iterations.numpy())
    with pytest.raises(FrcnnError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, (word, message)
    # No traceback from deep inside TensorFlow: no chained error, no TF frame.
    assert info.value.__cause__ is None and info.value.__suppress_context__
    frames = traceback.extract_tb(info.value.__traceback__)
    assert not [f for f in frames if "/tensorflow/" in f.filename], frames
    assert int(model.optimizer.iterations.numpy()) == step
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    return message


# ----------------------------------------------------------------------------- accepted
def test_batch_of_images_without_objects_trains_with_finite_losses(model):
    images, targets = make_batch()
    empty = {"boxes": np.zeros_like(targets["boxes"]), "labels": -np.ones_like(targets["labels"])}
    logs = assert_finite_step(model, images, empty)
    assert logs["rpn_box"] == 0.0 and logs["rcnn_box"] == 0.0


@pytest.mark.parametrize("box", [
    (20, 20, 20, 40),          # zero width
    (20, 30, 40, 30),          # zero height
    (0, 0, 0, 0),              # a point
    (80, 40, 130, 90),         # partly outside (right, bottom)
    (-30, -30, 20, 20),        # partly outside (left, top)
    (200, 200, 260, 240),      # wholly outside
    (-60, -60, -20, -20),      # wholly outside, negative side
], ids=["zero-width", "zero-height", "point", "partly-out-br", "partly-out-tl", "wholly-out",
        "wholly-out-negative"])
def test_degenerate_or_outside_boxes_train_with_finite_losses(model, box):
    assert_finite_step(model, *targets_with(box=box))


# ----------------------------------------------------------------------------- rejected
@pytest.mark.parametrize("box, words", [
    ((30, 20, 10, 40), ["targets['boxes']", "x2 >= x1", "image 0, box 0"]),
    ((10, 40, 30, 20), ["targets['boxes']", "y2 >= y1"]),
    ((np.nan, 20, 30, 40), ["targets['boxes']", "finite", "nan"]),
    ((10, 20, np.inf, 40), ["targets['boxes']", "finite", "inf"]),
    ((-np.inf, 20, 30, 40), ["targets['boxes']", "finite"]),
], ids=["negative-width", "negative-height", "nan", "inf", "minus-inf"])
def test_broken_boxes_are_rejected(model, box, words):
    images, targets = targets_with(box=box)
    assert_rejected(model, lambda: model.train_on_batch(images, targets), *words)


def test_nan_in_a_padding_row_is_rejected_too(model):
    images, targets = targets_with(box=(np.nan, 0, 0, 0), at=(2, 1))   # image 2 is empty
    assert_rejected(model, lambda: model.train_on_batch(images, targets), "image 2, box 1")


@pytest.mark.parametrize("label", [NUM_CLASSES + 1, 99, 0, -2])
def test_label_outside_the_classes_is_rejected(model, label):
    images, targets = targets_with(label=label, at=(1, 0))
    message = assert_rejected(model, lambda: model.train_on_batch(images, targets),
                              "targets['labels']", f"1..num_classes={NUM_CLASSES}", "image 1, box 0")
    assert f"got {label} " in message


def test_nan_pixel_is_rejected(model):
    images, targets = make_batch()
    images[1, 5, 5, 0] = np.nan
    assert_rejected(model, lambda: model.train_on_batch(images, targets), "images", "finite")


def test_model_fit_and_evaluate_reject_bad_labels_with_one_line(model):
    images, targets = targets_with(label=7, at=(0, 1))
    assert_rejected(model, lambda: model.fit(images, targets, batch_size=3, epochs=1, verbose=0),
                    "targets['labels']")
    assert_rejected(model, lambda: model.evaluate(images, targets, batch_size=3, verbose=0),
                    "targets['labels']")


def test_wrong_box_shape_is_rejected(model):
    images, targets = make_batch()
    five = np.concatenate([targets["boxes"], targets["labels"][..., None]], axis=-1)
    assert_rejected(model, lambda: model.train_on_batch(images, {"boxes": five, "labels": targets["labels"]}),
                    "targets['boxes']", "(3, 2, 5)")


def test_shapes_unknown_when_traced_are_checked_when_run(model):
    """Keras may retrace with relaxed (unknown) dimensions: then the graph checks the shape."""
    from frcnn_lib.runtime import input_checks

    check = tf.function(
        lambda images, boxes, labels: input_checks.check_inputs(
            images, {"boxes": boxes, "labels": labels}, model.num_classes),
        input_signature=[tf.TensorSpec([None, None, None, 3]), tf.TensorSpec([None, None, None]),
                         tf.TensorSpec([None, None], tf.int32)])
    images, targets = make_batch()
    check(images, targets["boxes"], targets["labels"])              # fine
    five = np.zeros((3, 2, 5), np.float32)
    with pytest.raises(FrcnnError, match=r"targets\['boxes'\] must be \(B, G, 4\).*\(3, 2, 5\)"):
        input_checks.call_translating_errors(check, images, five, targets["labels"])
    with pytest.raises(FrcnnError, match=r"\(3, 2, 4\) and \(3, 3\)"):
        input_checks.call_translating_errors(check, images, targets["boxes"], -np.ones((3, 3), np.int32))


# ----------------------------------------------------------------------------- pipeline
def _record(boxes, labels):
    image = np.random.default_rng(0).integers(0, 80, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    return ImageRecord(image=image, boxes=boxes, labels=labels, difficult=[False] * len(labels),
                       image_id=0, height=HEIGHT, width=WIDTH)


def _pipeline_batch(records):
    data = DetectionData(records, ["a", "b"], name="synthetic", default_sides=(HEIGHT, WIDTH))
    images, targets = next(iter(make_dataset(data, batch_size=3, training=False, max_boxes=2)))
    return images, {"boxes": targets["boxes"], "labels": targets["labels"]}


def test_pipeline_clips_outside_boxes_and_the_model_trains_on_them(model):
    images, targets = _pipeline_batch([
        _record([(80, 40, 130, 90), (200, 10, 260, 40)], [1, 2]),   # partly, wholly outside
        _record([(-20, -20, 30, 30)], [2]),
        _record([], []),
    ])
    boxes = targets["boxes"].numpy()
    assert boxes[..., [0, 2]].max() <= WIDTH and boxes[..., [1, 3]].max() <= HEIGHT
    assert boxes.min() >= 0
    np.testing.assert_allclose(boxes[0, 1], (WIDTH, 10, WIDTH, 40))   # clipped to zero width
    assert_finite_step(model, images, targets)


def test_pipeline_passes_nan_boxes_and_bad_labels_and_the_model_stops_them(model):
    images, targets = _pipeline_batch([_record([(np.nan, 10, 30, 30)], [1]),
                                       _record([(10, 10, 30, 30)], [1]), _record([], [])])
    assert np.isnan(targets["boxes"].numpy()[0, 0, 0])
    assert_rejected(model, lambda: model.train_on_batch(images, targets), "targets['boxes']")
    images, targets = _pipeline_batch([_record([(10, 10, 30, 30)], [5]),
                                       _record([(10, 10, 30, 30)], [1]), _record([], [])])
    assert_rejected(model, lambda: model.train_on_batch(images, targets), "targets['labels']")


# ----------------------------------------------------------------------------- detect
@pytest.mark.parametrize("shape", [(10, 10, 3), (10, 10), (6000, 8000, 3)],
                         ids=["10x10", "10x10-gray", "8000x6000"])
def test_detect_on_tiny_and_huge_images_returns_boxes_inside(model, shape):
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    result = model.detect(image)
    boxes = result["boxes"]
    height, width = shape[:2]
    assert len(boxes) > 0 and len(result["scores"]) == len(result["labels"]) == len(boxes)
    assert boxes.dtype == np.float32 and np.all(np.isfinite(boxes))
    assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 2] <= width)
    assert np.all(boxes[:, 1] >= 0) and np.all(boxes[:, 3] <= height)
    assert np.all(boxes[:, 2] >= boxes[:, 0]) and np.all(boxes[:, 3] >= boxes[:, 1])
    assert set(np.unique(result["labels"])) <= set(range(1, NUM_CLASSES + 1))
