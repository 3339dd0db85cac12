"""``FasterRCNN.detect``: raw images of any size, kind and orientation -> detections in each
image's own pixel coordinates, without a retrace per image size.

A tiny detector (``image_min_side=64``, ``image_max_side=96``) is trained for a few seconds
to find the red (class 1) and green (class 2) rectangles of the synthetic batch (the same
model as test_model's), so that its detections are confident and stable enough to compare
across scales.
"""
import keras
import numpy as np
import pytest

from frcnn_lib import FrcnnError
from helpers.synthetic import iou_xyxy, match_ground_truth, shared_overfit, tiny_model

KEYS = {"boxes", "scores", "labels"}


@pytest.fixture(scope="module")
def trained():
    # The model test_model trains (trained once per process); its images are whole numbers.
    model, images, targets, _ = shared_overfit(150, seed=0)
    assert np.array_equal(images, images.round())
    return model, images.astype(np.uint8), targets


def _assert_result(result, height, width):
    assert isinstance(result, dict) and set(result) == KEYS, result
    boxes, scores, labels = result["boxes"], result["scores"], result["labels"]
    assert all(isinstance(v, np.ndarray) for v in result.values())
    n = len(scores)
    assert boxes.shape == (n, 4) and labels.shape == (n,)
    assert boxes.dtype == np.float32 and scores.dtype == np.float32 and labels.dtype == np.int32
    assert np.all(np.diff(scores) <= 0) and np.all((scores > 0) & (scores <= 1))
    assert np.all((labels >= 1) & (labels <= 2))
    x1, y1, x2, y2 = boxes.T
    assert np.all((0 <= x1) & (x1 <= x2) & (x2 <= width)), (height, width, boxes)
    assert np.all((0 <= y1) & (y1 <= y2) & (y2 <= height)), (height, width, boxes)


def _assert_same(a, b, atol=1e-4):
    assert set(a) == set(b) == KEYS
    np.testing.assert_array_equal(a["labels"], b["labels"])
    np.testing.assert_allclose(a["scores"], b["scores"], atol=atol)
    np.testing.assert_allclose(a["boxes"], b["boxes"], atol=atol)


def test_single_image_gives_one_dict_matching_predict(trained):
    model, images, targets = trained
    result = model.detect(images[0])
    _assert_result(result, 64, 96)
    # The image is at the model's size (64 x 96): detect == predict on the same pixels.
    padded = model.predict(images[:1].astype(np.float32), verbose=0)
    n = int(padded["num_detections"][0])
    _assert_same(result, {k: padded[k][0, :n] for k in KEYS})
    best = match_ground_truth(result, targets["boxes"][0], targets["labels"][0])
    assert len(best) == 2 and min(best) >= 0.7, best


def _upscale2(image):
    return np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)


def test_images_of_different_sizes_get_boxes_in_their_own_coordinates(trained):
    model, images, targets = trained
    landscape = images[0]                                      # 64 x 96
    # 96 x 64: image 0's left part (red box) above empty noise, so that what surrounds the
    # box is what the model was trained on.
    portrait = np.concatenate([images[0, :, :64], images[2, :32, :64]], axis=0)
    square = np.ascontiguousarray(images[1, :, 16:80])         # 64 x 64
    bases = [landscape, portrait, square]
    inputs = bases + [_upscale2(image) for image in bases]  # 128 x 192, 192 x 128, 128 x 128
    results = model.detect(inputs)
    assert isinstance(results, list) and len(results) == len(inputs)
    for image, result in zip(inputs, results):
        _assert_result(result, *image.shape[:2])

    # Order and batching do not matter: each image alone gives the same detections.
    for image, result in zip(inputs, results):
        _assert_same(model.detect(image), result, atol=1e-3)

    # The same picture twice as large: the network sees almost the same input (resizing
    # back blurs block edges a little), so each confident detection comes back with its
    # box x 2.  Measured: IoU >= 0.88 over 6 trainings; a mapping error (scale,
    # orientation, clipping) gives IoU < 0.3 (a box of half or twice the size).
    for base, big in zip(results[:3], results[3:]):
        confident = base["scores"] >= 0.5
        assert confident.sum() >= 1, base
        for box, label in zip(base["boxes"][confident], base["labels"][confident]):
            same = big["boxes"][big["labels"] == label] / 2.0
            best = max((iou_xyxy(box, other) for other in same), default=0.0)
            assert best >= 0.7, (box, label, big)

    # And the upscaled landscape image's boxes sit on the upscaled ground truth.
    best = match_ground_truth(results[3], 2 * targets["boxes"][0], targets["labels"][0])
    assert len(best) == 2 and min(best) >= 0.7, best


def test_grayscale_rgba_and_uint16_images_are_accepted(trained):
    model, images, _ = trained
    rgb = images[0]
    gray = rgb.mean(axis=-1).round().astype(np.uint8)
    alpha = np.random.default_rng(0).integers(0, 256, rgb.shape[:2] + (1,), dtype=np.uint8)
    inputs = [gray, gray[..., None], np.repeat(gray[..., None], 3, axis=-1),
              np.concatenate([rgb, alpha], axis=-1), rgb.astype(np.uint16) * 257, rgb]
    results = model.detect(inputs)
    for result in results:
        _assert_result(result, 64, 96)
    # (H, W) and (H, W, 1) are grey RGB; RGBA drops alpha; uint16 is 257 x uint8.
    _assert_same(results[0], results[2])
    _assert_same(results[1], results[2])
    _assert_same(results[3], results[5])
    _assert_same(results[4], results[5])
    # Singly, too (a 2-D array is one grayscale image, not a list of rows).
    _assert_same(model.detect(gray), results[2])


@pytest.mark.parametrize("bad", [
    np.full((64, 96, 3), np.nan, np.float32),
    np.where(np.eye(64, 96, dtype=bool)[..., None], np.nan, 100.0),
    np.arange(10, dtype=np.uint8),
    np.zeros((0, 0), np.uint8),
    np.zeros((0, 0, 3), np.uint8),
], ids=["nan", "some-nan-float64", "1-D", "0x0", "0x0x3"])
def test_bad_images_raise_frcnn_error_naming_the_index(trained, bad):
    model, images, _ = trained
    with pytest.raises(FrcnnError, match=r"image 2\b"):
        model.detect([images[0], images[1], bad])
    with pytest.raises(FrcnnError, match=r"image 0\b"):
        model.detect(bad)


def test_gray_plus_alpha_image_is_read_as_gray(trained):
    # (H, W, 2) is PIL's "LA" mode: the alpha channel is dropped, like RGBA's.
    model, images, _ = trained
    gray = images[0].mean(axis=-1).round().astype(np.uint8)
    with_alpha = np.stack([gray, np.full_like(gray, 255)], axis=-1)
    got, want = model.detect([images[1], with_alpha]), model.detect([images[1], gray])
    for key in ("boxes", "scores", "labels"):
        np.testing.assert_array_equal(got[1][key], want[1][key])


def test_five_channel_image_is_rejected_by_index(trained):
    model, images, _ = trained
    with pytest.raises(FrcnnError, match=r"image 1\b.*\(64, 96, 5\)"):
        model.detect([images[0], np.zeros((64, 96, 5), np.uint8)])


def test_no_retracing_per_image_size(monkeypatch):
    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.build()
    traced_shapes = []
    original = model.detect_padded

    def spy(images, image_sizes=None, training=False, portable=None):
        traced_shapes.append(tuple(images.shape))  # runs only while tracing
        return original(images, image_sizes, training, portable)
    monkeypatch.setattr(model, "detect_padded", spy)

    rng = np.random.default_rng(0)
    sizes = [(50, 70), (64, 96), (100, 120), (30, 90), (201, 203)]  # all landscape or square
    images = [rng.integers(0, 256, size + (3,), dtype=np.uint8) for size in sizes]
    results = model.detect(images)  # one batch of 4 and one of 1
    assert len(results) == 5
    for image in images:            # and each alone
        model.detect(image)
    fn = model._frcnn_detect_fn[1]
    assert fn.experimental_get_tracing_count() <= 2, traced_shapes
    # Canvases follow the images (sides rounded up to 32), and retracing relaxes the shape.
    assert traced_shapes and len(traced_shapes) <= 2, traced_shapes


@pytest.mark.parametrize("size", [(64, 96), (30, 45), (201, 203), (96, 64), (700, 20)])
def test_compiled_resize_equals_the_pipelines_bit_for_bit(size):
    """detect resizes with one compiled call (its eager ops cost more than a small model's
    forward pass); it must give the training pipeline's pixels and scale exactly, whether the
    image grows, shrinks or keeps its size."""
    from frcnn_lib import detect
    from frcnn_lib.datasets.pipeline import resize_image
    image = np.random.default_rng(size[0]).integers(0, 256, size + (3,), dtype=np.uint8)
    for low, high in ((64, 96), (600, 1000), (160, 160)):
        want, want_scale = resize_image(image, low, high)
        got, got_scale = detect._resize(image, low, high)
        assert isinstance(got, np.ndarray) and got.dtype == np.float32
        np.testing.assert_array_equal(got, want.numpy())
        assert got_scale == float(want_scale)
    assert detect._resize_graph.experimental_get_tracing_count() == 1   # one trace for every size


# ----------------------------------------------------------------------------- input conventions
def test_file_paths_are_read_like_frcnn_predict(trained, tmp_path):
    from pathlib import Path

    from PIL import Image
    model, images, _ = trained
    Image.fromarray(images[0]).save(tmp_path / "a.png")
    Image.fromarray(images[1]).save(tmp_path / "b.png")
    want = model.detect([images[0], images[1]])
    # (Batches of other sizes may differ in the last float32 bits: atol as elsewhere.)
    _assert_same(model.detect(str(tmp_path / "a.png")), want[0])
    _assert_same(model.detect(Path(tmp_path / "b.png")), want[1])
    mixed = model.detect([tmp_path / "b.png", images[0], str(tmp_path / "a.png")])
    for got, index in zip(mixed, (1, 0, 0)):
        _assert_same(got, want[index])
    # A missing or unreadable file: FrcnnError naming the image index and the file.
    with pytest.raises(FrcnnError, match=r"image 1\b.*missing\.jpg.*not found"):
        model.detect([images[0], tmp_path / "missing.jpg"])
    (tmp_path / "junk.jpg").write_bytes(b"not a picture")
    with pytest.raises(FrcnnError, match=r"image 0\b.*junk\.jpg"):
        model.detect(str(tmp_path / "junk.jpg"))


def test_score_threshold_keeps_the_detections_scoring_at_least_it(trained):
    model, images, _ = trained
    everything = model.detect(list(images))
    scores = np.concatenate([r["scores"] for r in everything])
    cut = float(np.median(scores))
    assert scores.min() < cut < scores.max()
    for got, full in zip(model.detect(list(images), score_threshold=cut), everything):
        keep = full["scores"] >= cut
        for key in KEYS:
            np.testing.assert_array_equal(got[key], full[key][keep])
    none = model.detect(images[0], score_threshold=1.0)
    assert none["boxes"].shape == (0, 4) and none["scores"].shape == (0,) and none["labels"].shape == (0,)
    _assert_same(model.detect(images[0], score_threshold=0), everything[0])
    for bad in (-0.1, 1.5, "0.5", True, float("nan"), [0.5]):
        with pytest.raises(FrcnnError, match=r"score_threshold: expected a number in \[0, 1\]"):
            model.detect(images[0], score_threshold=bad)


def test_float_images_in_zero_one_are_refused_with_the_convention_named(trained):
    # torchvision's [0, 1] floats gave no detection at all, silently: now a FrcnnError that
    # names the convention and the fix.  0..255 floats and all-black floats still work.
    model, images, _ = trained
    unit = images[0].astype(np.float32) / 255.0
    words = r"expected pixel values 0\.\.255.*max 0\.\d+ <= 1\.0.*\[0, 1\] convention.*multiply by 255"
    with pytest.raises(FrcnnError, match=r"image 1\b.*" + words):
        model.detect([images[0], unit])
    with pytest.raises(FrcnnError, match=r"image 0\b.*" + words):
        model.detect(unit.astype(np.float64))
    with pytest.raises(FrcnnError, match=r"images: " + words):
        model.predict(unit[None], verbose=0)
    with pytest.raises(FrcnnError, match=r"images: " + words):
        model.predict_on_batch(unit[None])
    with pytest.raises(FrcnnError, match=r"images: " + words):
        model(unit[None])
    _assert_same(model.detect(images[0].astype(np.float32)), model.detect(images[0]), atol=0)
    _assert_same(model.detect(unit * 255.0), model.detect(images[0]), atol=1e-3)
    black = np.zeros((64, 96, 3), np.float32)                     # max 0: black either way
    _assert_same(model.detect(black), model.detect(black.astype(np.uint8)), atol=0)
    assert model(black[None])["boxes"].shape[0] == 1
    model.predict(black[None], verbose=0)
    # Integer images are never refused, whatever their range (a 0/1 mask is uint8 0..1).
    _assert_result(model.detect((images[0] > 40).astype(np.uint8)), 64, 96)


def _fixed_serving(boxes, scores, labels):
    """A stand-in for the compiled model: these detections, in the resized content space."""
    import tensorflow as tf

    def serve(batch, sizes):
        b = int(batch.shape[0])
        n = len(scores)
        return {"boxes": tf.constant(np.tile(np.asarray(boxes, np.float32)[None], (b, 1, 1))),
                "scores": tf.constant(np.tile(np.asarray(scores, np.float32)[None], (b, 1))),
                "labels": tf.constant(np.tile(np.asarray(labels, np.int32)[None], (b, 1))),
                "num_detections": tf.constant(np.full((b,), n, np.int32))}
    return serve


def test_boxes_are_clipped_in_the_resized_space_and_never_come_back_empty(monkeypatch):
    # The case: a 101 x 300 image at the paper's sides (600, 1000) has scale 10/3 and
    # resized content 337 x 1000 rows/columns, of which 336.67 x 1000 are the image.  A
    # detection 0.1 px tall in the last two thirds of a pixel used to come back, after
    # dividing by the scale and clipping to the image, as [18.75, 101, 93.75, 101]: no area.
    from types import SimpleNamespace

    from frcnn_lib import detect
    fake = SimpleNamespace(settings={"image_min_side": 600, "image_max_side": 1000})
    boxes = [[62.5, 336.8, 312.5, 336.9],     # wholly beyond the image: dropped
             [62.5, 336.0, 312.5, 336.9],     # partly: clipped to the image's bottom edge
             [999.95, 10.0, 1000.0, 20.0],    # the right edge, inside the content (1000 = 300 * 10/3)
             [10.0, 20.0, 110.0, 220.0]]      # an ordinary box
    monkeypatch.setattr(detect, "_serving_function",
                        lambda model: _fixed_serving(boxes, [0.9, 0.8, 0.7, 0.6], [1, 2, 1, 2]))
    image = np.zeros((101, 300, 3), np.uint8)
    _, scale = detect._resize(image, 600, 1000)
    assert round(101 * scale) == 337 and 101 * scale < 336.7
    (result,) = detect.detect_images(fake, [image])
    got = result["boxes"]
    assert result["labels"].tolist() == [2, 1, 2] and result["scores"].tolist() == pytest.approx([0.8, 0.7, 0.6])
    assert np.all(got[:, 2] > got[:, 0]) and np.all(got[:, 3] > got[:, 1])          # no empty box
    assert np.all(got >= 0) and np.all(got[:, [0, 2]] <= 300) and np.all(got[:, [1, 3]] <= 101)
    np.testing.assert_allclose(got[0], [18.75, 336.0 / scale, 93.75, 101.0], rtol=1e-6)
    np.testing.assert_allclose(got[1], [999.95 / scale, 3.0, 300.0, 6.0], rtol=1e-6)
    np.testing.assert_allclose(got[2], np.array([10, 20, 110, 220]) / scale, rtol=1e-6)
    # With a score threshold the mapping is the same, only filtered.
    (cut,) = detect.detect_images(fake, [image], score_threshold=0.65)
    np.testing.assert_array_equal(cut["boxes"], got[:2])


def test_map_back_drops_boxes_that_only_rounding_leaves_empty():
    from frcnn_lib.detect import map_back
    scale = 10.0 / 3.0
    # x1 and x2 one float32 step apart near 101: positive in float64, equal in float32.
    x = np.float32(100.99999)
    boxes = np.array([[x, 0, np.nextafter(x, np.float32(200)), 5], [0, 0, 30, 30]], np.float32) * scale
    out = map_back(boxes, np.array([0.9, 0.8], np.float32), np.array([1, 1], np.int32), (101, 101), scale)
    assert np.all(out["boxes"][:, 2] > out["boxes"][:, 0]) and np.all(out["boxes"][:, 3] > out["boxes"][:, 1])
    assert out["boxes"].dtype == np.float32 and len(out["scores"]) == len(out["labels"]) == len(out["boxes"])
