"""Reliability at the edges (issue 16): a command that must not hang after its error, the
same one-line error on every training path, and the inputs the first checks missed.

The subprocess runs start when the module starts (a module-scoped fixture), so that their
TensorFlow start-up overlaps the in-process tests.
"""
import gc
import json
import traceback

import numpy as np
import pytest
from PIL import Image

from frcnn_lib.runtime import input_checks
from frcnn_lib.training import runs as training
from frcnn_lib.datasets import coco
from frcnn_lib.datasets.pipeline import make_dataset
from frcnn_lib.runtime.errors import FrcnnError
from helpers.reliability import TINY_SET, error_lines, finish, start_frcnn
from helpers.synthetic import after_one_step, make_batch, reset_to

NUM_CLASSES = 2
HANG_RUNS = 3


def write_coco(folder, truncate_first=True):
    """Six 96 x 128 JPEGs with one box each; ``0.jpg`` cut to 60 % of its bytes."""
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(6):
        pixels = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "images" / f"{i}.jpg", quality=90)
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": 128, "height": 96})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1,
                            "bbox": [10, 10, 40, 30], "iscrowd": 0, "area": 1200})
    (folder / "ann.json").write_text(json.dumps({
        "images": images, "annotations": annotations,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    if truncate_first:
        path = folder / "images" / "0.jpg"
        data = path.read_bytes()
        path.write_bytes(data[:int(len(data) * 0.6)])
    return folder


@pytest.fixture(scope="module")
def broken_coco(tmp_path_factory):
    return write_coco(tmp_path_factory.mktemp("coco"))


@pytest.fixture(scope="module")
def hang_runs(broken_coco, tmp_path_factory):
    """``frcnn train`` on the set with the truncated JPEG, HANG_RUNS processes at once."""
    spec = f"coco:{broken_coco / 'ann.json'}:{broken_coco / 'images'}"
    processes = [start_frcnn(["train", "--data", spec, "--out", tmp_path_factory.mktemp("hang") / "run",
                              "--epochs", "1", "--batch-size", "2", "--quiet", *TINY_SET])
                 for _ in range(HANG_RUNS)]
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.fixture(autouse=True, scope="module")
def _start_subprocesses_first(request):
    if any(item.name.startswith("test_frcnn_train_exits") for item in request.session.items):
        request.getfixturevalue("hang_runs")


@pytest.fixture(scope="module")
def trained():
    """A tiny detector after one training step (the step traced once for the module)."""
    return after_one_step(NUM_CLASSES)


@pytest.fixture()
def model(trained):
    """The module's model, weights and optimizer state reset before each test."""
    return reset_to(trained)


def assert_rejected(model, call, *words):
    """``call()`` raises a one-line FrcnnError naming ``words``, with no chained error and no
    TensorFlow frame; weights and ``optimizer.iterations`` unchanged."""
    weights = model.get_weights()
    step = int(model.optimizer.iterations.numpy())
    with pytest.raises(FrcnnError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, (word, message)
    assert info.value.__cause__ is None and info.value.__context__ is None
    frames = traceback.extract_tb(info.value.__traceback__)
    assert not [f for f in frames if "/tensorflow/" in f.filename or "/keras/" in f.filename], frames
    assert int(model.optimizer.iterations.numpy()) == step
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    return message


def tf_data_iterators():
    """How many ``tf.data`` iterators exist, reachable or not (no collection here)."""
    import tensorflow as tf

    return sum(isinstance(o, tf.data.Iterator) for o in gc.get_objects())


# ----------------------------------------------------------------------------- no hang
def test_frcnn_train_exits_2_promptly_after_a_truncated_jpeg_every_time(hang_runs, broken_coco):
    """Before the fix 4 runs in 5 printed the error, then hung in the interpreter's final
    garbage collection (the tf.data iterator destroyed while its threads could not run)."""
    for process in hang_runs:
        code, _, err = finish(process, timeout=420)
        lines = error_lines(err)
        assert code == 2, err[-2000:]
        assert len(lines) == 1 and lines[0].startswith("frcnn: error: "), lines
        assert str(broken_coco / "images" / "0.jpg") in lines[0] and "truncated" in lines[0], lines


# ----------------------------------------------------------------------------- one error, every path
@pytest.fixture(scope="module")
def broken_data(broken_coco):
    return coco.load(broken_coco / "ann.json", broken_coco / "images")


@pytest.mark.parametrize("how", ["fit", "evaluate", "predict"])
def test_model_fit_evaluate_predict_name_the_truncated_file_and_free_the_pipeline(
        model, broken_data, broken_coco, how):
    dataset = make_dataset(broken_data, batch_size=2, min_side=64, max_side=96)
    call = {"fit": lambda: model.fit(dataset, epochs=1, verbose=0),
            "evaluate": lambda: model.evaluate(dataset, verbose=0),
            "predict": lambda: model.predict(dataset, verbose=0)}[how]
    gc.collect()
    before = tf_data_iterators()
    # The cause of the hang: the failed iterator outlived the call, held by a Keras reference
    # cycle until a garbage collection, at worst the one at exit.  With automatic collection
    # off, only the translation's own collection can have destroyed it.
    gc.disable()
    try:
        message = assert_rejected(model, call, str(broken_coco / "images" / "0.jpg"), "truncated")
        assert tf_data_iterators() <= before
    finally:
        gc.enable()
    assert "PyFunc" not in message and "InvalidArgument" not in message


def test_training_fit_gives_the_same_line(model, broken_data, broken_coco, tmp_path):
    with pytest.raises(FrcnnError) as info:
        training.fit(model, broken_data, tmp_path / "run", 1, 2, verbose=0)
    message = str(info.value)
    assert str(broken_coco / "images" / "0.jpg") in message and "\n" not in message
    assert "earlier checkpoints are intact" in message
    assert info.value.__cause__ is None and info.value.__context__ is None


# ----------------------------------------------------------------------------- graph-side checks
def test_grayscale_batch_is_rejected_naming_the_channels(model):
    images, targets = make_batch()
    gray = images[..., :1]
    for call in (lambda: model.train_on_batch(gray, targets),
                 lambda: model.fit(gray, targets, batch_size=3, epochs=1, verbose=0),
                 lambda: model.evaluate(gray, targets, batch_size=3, verbose=0),
                 lambda: model.predict(gray, verbose=0)):
        assert_rejected(model, call, "images", "3 (RGB) channels", "grayscale", "np.repeat",
                        "(3, 64, 96, 1)")
    assert_rejected(model, lambda: model.train_on_batch(np.concatenate([images, images[..., :1]], -1),
                                                        targets), "images", "channels")


@pytest.mark.parametrize("key", ["boxes", "labels"])
def test_targets_missing_a_key_are_rejected_naming_it(model, key):
    images, targets = make_batch()
    del targets[key]
    message = assert_rejected(model, lambda: model.train_on_batch(images, targets), "targets",
                              f"missing the key '{key}'")
    assert "KeyError" not in message


def test_targets_that_are_not_a_dict_are_rejected(model):
    images, targets = make_batch()
    assert_rejected(model, lambda: model.train_on_batch(images, targets["boxes"]), "targets",
                    "expected a dict")


def test_batch_of_zero_images_is_rejected(model):
    images, targets = make_batch()
    assert_rejected(model, lambda: model.train_on_batch(images[:0], {k: v[:0] for k, v in targets.items()}),
                    "images", "no images")


def test_batch_of_zero_images_unknown_when_traced_is_rejected_when_run():
    import tensorflow as tf

    check = tf.function(lambda i, b, l: input_checks.check_inputs(i, {"boxes": b, "labels": l}, 2),
                        input_signature=[tf.TensorSpec([None, None, None, 3]),
                                         tf.TensorSpec([None, None, 4]),
                                         tf.TensorSpec([None, None], tf.int32)])
    with pytest.raises(FrcnnError, match=r"images: the batch holds no images.*\(0, 64, 96, 3\)"):
        input_checks.call_translating_errors(check, np.zeros((0, 64, 96, 3), np.float32),
                                             np.zeros((0, 2, 4), np.float32), np.zeros((0, 2), np.int32))
    gray = np.zeros((2, 64, 96, 1), np.float32)
    check_any = tf.function(lambda i, b, l: input_checks.check_inputs(i, {"boxes": b, "labels": l}, 2),
                            input_signature=[tf.TensorSpec([None, None, None, None]),
                                             tf.TensorSpec([None, None, 4]),
                                             tf.TensorSpec([None, None], tf.int32)])
    with pytest.raises(FrcnnError, match=r"images must be \(B, H, W, 3\) with 3 \(RGB\).*\(2, 64, 96, 1\)"):
        input_checks.call_translating_errors(check_any, gray, np.zeros((2, 0, 4), np.float32),
                                             np.zeros((2, 0), np.int32))


def test_targets_with_zero_box_slots_train_as_no_objects(model):
    """``(B, 0, 4)`` / ``(B, 0)``: no objects.  The RPN targets (and so its losses) equal
    those of all-padding targets; the box losses are 0; every loss finite."""
    images, _ = make_batch()
    none = {"boxes": np.zeros((3, 0, 4), np.float32), "labels": np.zeros((3, 0), np.int32)}
    padding = {"boxes": np.zeros((3, 1, 4), np.float32), "labels": -np.ones((3, 1), np.int32)}
    empty = model.compute_losses(images, none, training=False)
    padded = model.compute_losses(images, padding, training=False)
    np.testing.assert_allclose(float(empty["rpn_objectness"]), float(padded["rpn_objectness"]), rtol=1e-6)
    step = int(model.optimizer.iterations.numpy())
    logs = model.train_on_batch(images, none, return_dict=True)
    assert all(np.isfinite(float(v)) for v in logs.values()), logs
    assert logs["rpn_box"] == 0.0 and logs["rcnn_box"] == 0.0 and logs["rpn_objectness"] > 0
    assert int(model.optimizer.iterations.numpy()) == step + 1
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_bad_value_in_a_batch_with_zero_images_or_slots_does_not_crash_the_check():
    """The check itself once crashed on empty tensors (GatherNd); a bad label is still named."""
    import tensorflow as tf

    check = tf.function(lambda b, l: input_checks.check_inputs(
        tf.zeros([1, 8, 8, 3]), {"boxes": b, "labels": l}, 2))
    labels = np.array([[1, 9]], np.int32)
    with pytest.raises(FrcnnError, match=r"targets\['labels'\].*got 9 at image 0, box 1"):
        input_checks.call_translating_errors(check, np.zeros((1, 2, 4), np.float32), labels)
    out = input_checks.check_inputs(tf.zeros([2, 8, 8, 3]), {"boxes": np.zeros((2, 0, 4)),
                                                             "labels": np.zeros((2, 0))}, 2)
    assert out[1].shape == (2, 0, 4) and out[2].shape == (2, 0)


# ----------------------------------------------------------------------------- detect's images

@pytest.mark.parametrize("mode, make, expected", [
    # gray: the value in all three channels
    ("L", lambda: Image.fromarray(np.full((2, 3), 77, np.uint8)), (77, 77, 77)),
    # 16 bit: scaled by 255 / 65535 (257 * 40 -> 40), not clipped to 255
    ("I;16", lambda: Image.fromarray(np.full((2, 3), 257 * 40, np.uint16)), (40, 40, 40)),
    # 32-bit int holding 16-bit values: scaled the same way
    ("I", lambda: Image.fromarray(np.full((2, 3), 65535, np.int32)), (255, 255, 255)),
    # palette: the palette colour of the index
    ("P", lambda: _palette_image(), (10, 200, 30)),
    # gray + alpha, RGBA: composited over white; alpha 0 -> white, 255 -> the colour
    ("LA", lambda: Image.new("LA", (3, 2), (50, 0)), (255, 255, 255)),
    ("RGBA", lambda: Image.new("RGBA", (3, 2), (200, 100, 0, 255)), (200, 100, 0)),
    # CMYK (0, 0, 0, 0) is white
    ("CMYK", lambda: Image.new("CMYK", (3, 2), (0, 0, 0, 0)), (255, 255, 255)),
    ("1", lambda: Image.new("1", (3, 2), 1), (255, 255, 255)),
    ("RGB", lambda: Image.new("RGB", (3, 2), (1, 2, 3)), (1, 2, 3)),
])
def test_pil_images_of_every_mode_become_rgb_uint8(mode, make, expected):
    from frcnn_lib.datasets.pipeline import as_rgb_uint8

    image = make()
    assert image.mode == mode
    rgb = as_rgb_uint8(image)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    np.testing.assert_array_equal(rgb, np.broadcast_to(np.array(expected, np.uint8), (2, 3, 3)))


def _palette_image():
    image = Image.new("P", (3, 2), 5)
    palette = [0] * 768
    palette[15:18] = [10, 200, 30]
    image.putpalette(palette)
    return image


def test_detect_on_a_pil_image_equals_detect_on_its_array(model):
    pixels = (make_batch()[0][0]).astype(np.uint8)
    from_array = model.detect(pixels)
    from_pil = model.detect(Image.fromarray(pixels))
    both = model.detect([Image.fromarray(pixels).convert("RGBA"), pixels])
    for result in (from_pil, *both):
        for key in ("boxes", "scores", "labels"):
            np.testing.assert_array_equal(result[key], from_array[key])


@pytest.mark.parametrize("bad, words", [
    (None, ["image 2", "got None", "cv2.imread returns None"]),
    ("no-such-photo.jpg", ["image 2", "no-such-photo.jpg", "not found"]),
    (b"\xff\xd8 jpeg bytes", ["image 2", "got bytes", "decode them first"]),
    (3.5, ["image 2", "got float"]),
    ({"image": 1}, ["image 2", "got dict"]),
    ([[1, 2], [3, 4]], ["image 2", "got list"]),
], ids=["None", "missing-path", "bytes", "number", "dict", "nested-list"])
def test_detect_rejects_non_images_naming_the_index(model, bad, words):
    good = np.zeros((20, 30, 3), np.uint8)
    with pytest.raises(FrcnnError) as info:
        model.detect([good, good, bad])
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    with pytest.raises(FrcnnError, match="image 0"):
        model.detect(bad)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, "2", None, True])
def test_detect_batch_size_must_be_a_positive_int(model, batch_size):
    with pytest.raises(FrcnnError, match=r"batch_size: expected a positive int, got"):
        model.detect([np.zeros((20, 30, 3), np.uint8)], batch_size=batch_size)


@pytest.mark.parametrize("how, option, value", [
    ("predict", "batch_size", 0), ("predict", "steps", -1), ("evaluate", "batch_size", 2.5),
    ("fit", "steps_per_epoch", 0), ("fit", "batch_size", True)])
def test_counting_options_of_fit_evaluate_predict_are_checked(model, how, option, value):
    images, targets = make_batch()
    call = {"fit": lambda: model.fit(images, targets, epochs=1, verbose=0, **{option: value}),
            "evaluate": lambda: model.evaluate(images, targets, verbose=0, **{option: value}),
            "predict": lambda: model.predict(images, verbose=0, **{option: value})}[how]
    assert_rejected(model, call, f"{option}: expected a positive int", repr(value))
