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
