"""The embedded ``shapes`` dataset: determinism, tight boxes, coverage, occlusion rule."""
import numpy as np
import pytest

import frcnn_lib.datasets as fd
from frcnn_lib.datasets import shapes
from frcnn_lib.runtime.errors import FrcnnError


def _arrays(data):
    return [(r.image, r.boxes, r.labels) for r in data.records]


def _same(a, b):
    return all(np.array_equal(x, y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


def test_same_seed_gives_identical_arrays_even_without_cache():
    first = _arrays(shapes.load("train", num_images=6, seed=3))
    shapes._render_cached.cache_clear()
    second = _arrays(shapes.load("train", num_images=6, seed=3))
    assert _same(first, second)


def test_different_seed_or_split_gives_different_images():
    base = shapes.load("train", num_images=4, seed=3)
    other_seed = shapes.load("train", num_images=4, seed=4)
    other_split = shapes.load("val", num_images=4, seed=3)
    for other in (other_seed, other_split):
        assert not any(np.array_equal(a.image, b.image)
                       for a, b in zip(base.records, other.records))


def test_an_image_does_not_depend_on_how_many_are_asked_for():
    few = shapes.load("test", num_images=3, seed=9).records[2]
    shapes._render_cached.cache_clear()
    many = shapes.load("test", num_images=12, seed=9).records[2]
    assert np.array_equal(few.image, many.image) and np.array_equal(few.boxes, many.boxes)


def test_records_are_well_formed_and_boxes_inside_images():
    data = shapes.load("train", num_images=200)
    assert data.class_names == shapes.CLASS_NAMES and len(data) == 200
    assert data.default_sides == (160, 160)
    for r in data.records:
        assert r.image.shape == (160, 160, 3) and r.image.dtype == np.uint8
        assert r.boxes.dtype == np.float32 and r.labels.dtype == np.int32
        assert r.boxes.shape == (len(r.labels), 4) and not r.difficult.any()
        x1, y1, x2, y2 = r.boxes.T
        assert np.all(x1 >= 0) and np.all(y1 >= 0) and np.all(x2 <= 160) and np.all(y2 <= 160)
        assert np.all(x2 > x1) and np.all(y2 > y1)
        assert np.all((r.labels >= 1) & (r.labels <= len(shapes.CLASS_NAMES)))


def test_classes_sizes_and_counts_are_varied():
    data = shapes.load("train", num_images=300)
    labels = np.concatenate([r.labels for r in data.records])
    counts = np.bincount(labels, minlength=6)[1:]
    assert counts.min() > 0.5 * counts.mean()          # every class, roughly balanced
    per_image = np.array([len(r.labels) for r in data.records])
    assert (per_image == 0).sum() >= 3 and per_image.max() == 6
    boxes = np.concatenate([r.boxes for r in data.records])
    longer = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert 11 <= longer.min() < 20 and 70 < longer.max() <= 81
    aspect = (boxes[:, 2] - boxes[:, 0]) / (boxes[:, 3] - boxes[:, 1])
    assert aspect.min() < 0.6 and aspect.max() > 1.6


def test_boxes_are_tight_to_the_visible_pixels():
    """Checked against the rendered pixels: along each side of a box, the band of pixels
    just inside holds the shape's colour, and the band just outside does not (much)."""
    checked = 0
    for index in range(40):
        image, boxes, labels, placed = shapes._draw(0, shapes.SPLITS["val"], index, 160, 160)
        image = image.astype(np.float32)
        for box, obj in zip(boxes, placed):
            x1, y1 = int(np.floor(box[0])), int(np.floor(box[1]))
            x2, y2 = int(np.ceil(box[2])), int(np.ceil(box[3]))
            # The visible coverage spans the box (occlusion never cuts the extremes).
            ys, xs = np.nonzero(obj["visible"] > 0.02)
            assert abs(xs.min() - x1) <= 1 and abs(xs.max() + 1 - x2) <= 1
            assert abs(ys.min() - y1) <= 1 and abs(ys.max() + 1 - y2) <= 1
            # Hand check on the image itself.
            near = np.linalg.norm(image - obj["colour"], axis=-1) < 60   # (H, W)
            inside = near[y1:y2, x1:x2]
            assert inside[:3].any() and inside[-3:].any()         # top and bottom rows
            assert inside[:, :3].any() and inside[:, -3:].any()   # left and right columns
            ring = np.zeros_like(near)
            ring[max(y1 - 2, 0):y2 + 2, max(x1 - 2, 0):x2 + 2] = True
            ring[y1:y2, x1:x2] = False
            assert near[ring].mean() < 0.2
            checked += 1
    assert checked > 80


def test_occlusion_rule_keeps_forty_percent_visible():
    for index in range(30):
        _, _, _, placed = shapes._draw(1, shapes.SPLITS["train"], index, 160, 160)
        for obj in placed:
            assert obj["visible"].sum() >= shapes.MIN_VISIBLE * obj["full"].sum() > 0
    # The rule itself: a placement hiding most of an earlier shape is refused.
    alpha = np.zeros((20, 20), np.float32)
    alpha[5:15, 5:15] = 1
    earlier = {"full": alpha, "visible": alpha.copy(), "extent": np.array([5, 5, 15, 15])}
    cover_most = np.zeros_like(alpha)
    cover_most[5:15, 5:12] = 1
    assert not shapes._keeps_others_visible(cover_most, [earlier])
    cover_corner = np.zeros_like(alpha)
    cover_corner[4:8, 4:8] = 1
    assert shapes._keeps_others_visible(cover_corner, [earlier])


def test_other_image_sizes():
    data = shapes.load("val", num_images=10, image_size=(96, 128), seed=2)
    assert data.records[0].image.shape == (96, 128, 3)
    assert data.default_sides == (96, 128)
    for r in data.records:
        assert np.all(r.boxes[:, 2] <= 128) and np.all(r.boxes[:, 3] <= 96)


@pytest.mark.parametrize("kwargs, field", [
    ({"split": "training"}, "split"),
    ({"num_images": -1}, "num_images"),
    ({"seed": -5}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"image_size": (16, 16)}, "image_size"),
    ({"image_size": "big"}, "image_size"),
])
def test_bad_arguments_raise_frcnn_error(kwargs, field):
    with pytest.raises(FrcnnError, match=field):
        shapes.load(**{"num_images": 1, **kwargs})


def test_spec_parsing():
    assert fd.load("shapes", num_images=2).name == "shapes:train"
    assert fd.load("shapes:val", num_images=2).name == "shapes:val"
    data = fd.load("shapes:test", num_images=2)
    assert fd.load(data) is data
    for bad in ("shape", "shapes:val:extra", "voc", "coco:only_one_path", "", "mnist:/x"):
        with pytest.raises(FrcnnError, match="expected") as info:
            fd.load(bad)
        assert repr(bad) in str(info.value) and "coco:" in str(info.value)
