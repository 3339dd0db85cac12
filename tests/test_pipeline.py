"""tf.data pipeline: shapes and dtypes, resize, flip, padding, orientation canvases, tracing."""
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import frcnn_lib.datasets as fd
from frcnn_lib.datasets import pipeline, shapes, voc
from frcnn_lib.datasets.records import DetectionData, ImageRecord
from frcnn_lib.runtime.errors import FrcnnError

VOC = Path(__file__).resolve().parents[1] / "datasets" / "fixtures" / "voc_mini" / "VOC2007"


def _box_image(height, width, box):
    """A black image with a white rectangle covering ``box`` (integer xyxy), as a record."""
    image = np.zeros((height, width, 3), np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return ImageRecord(image=image, boxes=[box], labels=[1], difficult=[False],
                       image_id=0, height=height, width=width)


def test_shapes_batches_have_static_shapes_and_the_documented_format():
    data = shapes.load("val", num_images=10)
    ds = fd.make_dataset(data, batch_size=4, training=True)
    images_spec, targets_spec = ds.element_spec
    g = data.max_boxes()
    assert images_spec.shape.as_list() == [None, 160, 160, 3]
    expected = {"boxes": [None, g, 4], "labels": [None, g], "image_sizes": [None, 2],
                "scales": [None], "indices": [None]}
    assert {k: v.shape.as_list() for k, v in targets_spec.items()} == expected
    dtypes = {k: v.dtype for k, v in targets_spec.items()}
    assert images_spec.dtype == tf.float32 and dtypes["boxes"] == tf.float32
    assert dtypes["labels"] == dtypes["image_sizes"] == dtypes["indices"] == tf.int32
    seen = []
    for images, targets in ds:
        assert 0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255
        np.testing.assert_array_equal(targets["scales"], 1.0)
        np.testing.assert_array_equal(targets["image_sizes"], [[160, 160]] * len(images))
        labels, boxes = targets["labels"].numpy(), targets["boxes"].numpy()
        for i, index in enumerate(targets["indices"].numpy()):
            n = len(data.records[index].labels)
            assert labels[i, :n].tolist() == data.records[index].labels.tolist()
            assert np.all(labels[i, n:] == -1) and np.all(boxes[i, n:] == 0)
        seen += targets["indices"].numpy().tolist()
    assert sorted(seen) == list(range(10))
    drop = fd.make_dataset(data, batch_size=4, training=True, drop_remainder=True)
    assert drop.element_spec[0].shape.as_list() == [4, 160, 160, 3]


def test_the_model_traces_once_on_a_static_canvas():
    data = shapes.load("val", num_images=9)
    ds = fd.make_dataset(data, batch_size=4, training=True, repeat=True)
    traces = []

    @tf.function
    def step(images, targets):
        traces.append(1)
        return tf.reduce_sum(images) + tf.reduce_sum(targets["boxes"])

    for images, targets in ds.take(6):          # includes a partial batch of 1 at epoch end
        step(images, targets)
    step_spec = [tf.TensorSpec(s.shape, s.dtype) for s in tf.nest.flatten(ds.element_spec)]
    assert len(traces) <= 2 and all(s.shape[1:].is_fully_defined() for s in step_spec)
    traces.clear()
    fixed = tf.function(step.python_function, input_signature=ds.element_spec)
    for images, targets in ds.take(5):
        fixed(images, targets)
    assert len(traces) == 1


def test_voc_resize_scale_boxes_and_per_size_canvases():
    data = voc.load(VOC, "trainval")
    ds = fd.make_dataset(data, batch_size=2, training=False)
    assert ds.element_spec[0].shape.as_list() == [None, None, None, 3]
    gts = data.ground_truths()
    seen = set()
    for images, targets in ds:
        sizes = targets["image_sizes"].numpy()
        # One canvas a batch: every image's size rounded up to 32 (computed independently).
        canvases = {(-(-h // 32) * 32, -(-w // 32) * 32) for h, w in sizes}
        assert canvases == {tuple(images.shape[1:3])}
        for i, index in enumerate(targets["indices"].numpy()):
            record = data.records[index]
            scale = targets["scales"].numpy()[i]
            expected_scale = min(600 / min(record.height, record.width),
                                 1000 / max(record.height, record.width))
            assert scale == pytest.approx(expected_scale)
            assert sizes[i].tolist() == [round(record.height * scale), round(record.width * scale)]
            keep = ~gts[index]["difficult"]
            n = int(keep.sum())
            np.testing.assert_allclose(targets["boxes"].numpy()[i, :n] / scale,
                                       gts[index]["boxes"][keep], atol=1e-3)
            h, w = sizes[i]
            assert float(tf.reduce_max(images[i, h:])) == 0.0               # zero padding
            assert float(tf.reduce_max(images[i, :, w:])) == 0.0
            seen.add(int(index))
    assert seen == {0, 1, 2}
    with_difficult = fd.make_dataset(data, batch_size=1, use_difficult=True)
    assert with_difficult.element_spec[1]["labels"].shape.as_list() == [None, 3]


def test_resize_is_limited_by_max_side_and_canvas_rounds_to_32():
    assert pipeline.canvas_for(600, 800, 600, 1000) == (608, 800)
    assert pipeline.canvas_for(800, 600, 600, 1000) == (800, 608)
    assert pipeline.canvas_for(600, 1000, 600, 1000) == (608, 1024)
    assert pipeline.canvas_for(150, 160, 160, 160) == (160, 160)   # min == max: one canvas
    h, w = pipeline.canvas_for(tf.constant(601), tf.constant(33), 600, 1000)
    assert (int(h), int(w)) == (608, 64)
    assert pipeline.canvas_size(600, 1000) == (608, 1024)
    assert pipeline.canvas_size(600, 1000, portrait=True) == (1024, 608)
    assert pipeline.canvas_size(160, 160) == (160, 160)
    image = np.zeros((80, 200, 3), np.uint8)              # 2.5:1, the long side limits
    resized, scale = pipeline.resize_image(image, 100, 120)
    assert scale.numpy() == pytest.approx(0.6) and resized.shape == (48, 120, 3)
    resized, scale = pipeline.resize_image(image, 100, 1000)
    assert scale.numpy() == pytest.approx(1.25) and resized.shape == (100, 250, 3)


def test_flip_moves_the_pixels_with_the_box():
    box = (10, 20, 50, 40)                                  # white rectangle in a 64x96 image
    data = DetectionData([_box_image(64, 96, box)], ["thing"], default_sides=(64, 96))
    flipped_seen = set()
    ds = fd.make_dataset(data, batch_size=1, training=True, seed=1, repeat=True)
    for images, targets in ds.take(12):                      # a fresh coin toss each time
        x1, y1, x2, y2 = targets["boxes"].numpy()[0, 0].astype(int)
        image = images.numpy()[0]
        assert image[y1:y2, x1:x2].min() == 255                     # box is all white
        assert image.sum() == 255 * 3 * (x2 - x1) * (y2 - y1)    # and nothing else is
        flipped_seen.add((x1, x2) == (96 - 50, 96 - 10))
    assert flipped_seen == {True, False}


def test_flipping_twice_gives_back_the_boxes():
    boxes = tf.constant([[1.5, 2.0, 30.0, 40.0], [0.0, 0.0, 100.0, 50.0]])
    once = pipeline.flip_boxes(boxes, 100)
    np.testing.assert_allclose(once, [[70.0, 2.0, 98.5, 40.0], [0.0, 0.0, 100.0, 50.0]])
    np.testing.assert_allclose(pipeline.flip_boxes(once, 100), boxes)


def test_same_seed_same_batches_and_no_flip_when_evaluating():
    data = shapes.load("val", num_images=8)

    def run(**kw):
        ds = fd.make_dataset(data, batch_size=3, **kw)
        return [(t["indices"].numpy(), t["boxes"].numpy()) for _, t in ds]

    a, b = run(training=True, seed=5), run(training=True, seed=5)
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    c = run(training=True, seed=6)
    assert any(not np.array_equal(x[1], y[1]) for x, y in zip(a, c))
    evaluation = run(training=False)
    assert np.concatenate([i for i, _ in evaluation]).tolist() == list(range(8))
    for indices, boxes in evaluation:
        for i, index in enumerate(indices):
            n = len(data.records[index].boxes)
            np.testing.assert_array_equal(boxes[i, :n], data.records[index].boxes)


def test_resize_for_inference_accepts_user_images():
    gray = np.full((50, 100), 9, np.uint8)
    resized, scale = fd.resize_for_inference(gray, 600, 1000)
    assert scale == pytest.approx(10.0) and tuple(resized.shape) == (500, 1000, 3)
    assert resized.dtype == tf.float32 and float(resized[0, 0, 2]) == pytest.approx(9.0)
    rgba = np.zeros((20, 10, 4), np.uint8)
    resized, scale = fd.resize_for_inference(rgba, 40, 80)
    assert tuple(resized.shape) == (80, 40, 3) and scale == pytest.approx(4.0)
    padded = fd.pad_to_canvas(resized, fd.canvas_size(40, 80, portrait=True))
    assert tuple(padded.shape) == (96, 64, 3)
    with pytest.raises(FrcnnError, match="uint8"):
        fd.resize_for_inference(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(FrcnnError, match="shape"):
        fd.resize_for_inference(np.zeros((4, 4, 2), np.uint8))


def test_max_boxes_truncates_with_a_warning_and_empty_datasets_pad_to_one():
    data = voc.load(VOC, "trainval")
    with pytest.warns(UserWarning, match="max_boxes=1"):
        ds = fd.make_dataset(data, batch_size=3, max_boxes=1, min_side=64, max_side=128)
    assert ds.element_spec[1]["boxes"].shape.as_list() == [None, 1, 4]
    empty = DetectionData([ImageRecord(np.zeros((32, 32, 3), np.uint8), np.zeros((0, 4)), [], [],
                                       0, 32, 32)], ["x"], default_sides=(32, 32))
    images, targets = next(iter(fd.make_dataset(empty, batch_size=1)))
    assert targets["labels"].numpy().tolist() == [[-1]]


@pytest.mark.parametrize("kwargs, field", [
    ({"batch_size": 0}, "batch_size"),
    ({"min_side": 800, "max_side": 600}, "min_side"),
    ({"max_boxes": 0}, "max_boxes"),
    ({"min_side": "600"}, "min_side"),
])
def test_bad_arguments_raise_frcnn_error(kwargs, field):
    data = shapes.load("val", num_images=2)
    with pytest.raises(FrcnnError, match=field):
        fd.make_dataset(data, **{"batch_size": 1, **kwargs})
    with pytest.raises(FrcnnError, match="no images"):
        fd.make_dataset(DetectionData([], ["x"]), batch_size=1)


def test_image_of_the_wrong_size_is_reported_with_its_file():
    data = voc.load(VOC, "test")
    data.records[0].height = 81
    with pytest.raises(FrcnnError, match=r"000004\.jpg: image is 80x80.*says 81x80"):
        data.read_image(0)
    ds = fd.make_dataset(data, batch_size=1)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"FrcnnError: .*000004\.jpg"):
        next(iter(ds))


def test_padding_is_under_5_percent_on_voc_like_sizes_and_canvases_are_bounded():
    """Mostly 500x375 and 375x500, some odd sizes, as in Pascal VOC: the canvases that
    make_dataset picks (by image size) waste under 5 % of the pixels, and there are few."""
    rng = np.random.default_rng(0)
    sizes = [(375, 500)] * 60 + [(500, 375)] * 25 + [
        (int(h), int(w)) for h, w in zip(rng.integers(180, 500, 15), rng.integers(180, 500, 15))]
    canvases, real, padded = set(), 0, 0
    for h, w in sizes:
        scale = min(600 / min(h, w), 1000 / max(h, w))
        rh, rw = round(h * scale), round(w * scale)
        canvas = pipeline.canvas_for(rh, rw, 600, 1000)
        canvases.add(canvas)
        real += rh * rw
        padded += canvas[0] * canvas[1]
    assert 1 - real / padded < 0.05
    # The bound of canvas_for's docstring: one side is 608 or 1024 (the rounded sides).
    assert all(608 in c or 1024 in c for c in canvases) and len(canvases) <= 4 * 32
