"""frcnn_lib.anchors: hand-computed anchors, the nested-loop reference, and invariants."""
import math

import numpy as np
import tensorflow as tf

import reference as ref
from frcnn_lib import anchors as A

SCALES, RATIOS = (32, 64, 128), (0.5, 1.0, 2.0)


def test_hand_computed():
    # one location, stride 16: centre (8, 8); scale 16, ratio 1 -> 16x16 box
    np.testing.assert_allclose(A.generate_anchors(1, 1, 16, (16,), (1.0,)).numpy(), [[0, 0, 16, 16]])
    # ratio 2 (h/w): w = 16/sqrt(2) = 11.3137, h = 16*sqrt(2) = 22.6274, centre (8, 8)
    w, h = 16 / math.sqrt(2), 16 * math.sqrt(2)
    np.testing.assert_allclose(A.generate_anchors(1, 1, 16, (16,), (2.0,)).numpy(),
                               [[8 - w / 2, 8 - h / 2, 8 + w / 2, 8 + h / 2]], rtol=1e-6)
    # a 1x2 map: the second location is one stride to the right, centre (24, 8)
    np.testing.assert_allclose(A.generate_anchors(1, 2, 16, (16,), (1.0,)).numpy(),
                               [[0, 0, 16, 16], [16, 0, 32, 16]])


def test_matches_nested_loop_reference():
    got = A.generate_anchors(3, 5, 16, SCALES, RATIOS).numpy()
    np.testing.assert_allclose(got, ref.anchors(3, 5, 16, SCALES, RATIOS), rtol=1e-5, atol=1e-4)
    got = A.generate_anchors(4, 2, 8, (10, 20), (0.25, 1.0, 3.0, 4.0)).numpy()
    np.testing.assert_allclose(got, ref.anchors(4, 2, 8, (10, 20), (0.25, 1.0, 3.0, 4.0)),
                               rtol=1e-5, atol=1e-4)


def test_count_area_ratio_centre_order():
    h, w, stride = 4, 6, 16
    anchors = A.generate_anchors(h, w, stride, SCALES, RATIOS).numpy()
    a = A.num_anchors_per_location(SCALES, RATIOS)
    assert a == 9 and anchors.shape == (h * w * a, 4)
    grid = anchors.reshape(h, w, len(SCALES), len(RATIOS), 4)  # location-major, scale-major
    widths = grid[..., 2] - grid[..., 0]
    heights = grid[..., 3] - grid[..., 1]
    np.testing.assert_allclose(widths * heights,
                               np.broadcast_to(np.square(SCALES)[:, None], (h, w, 3, 3)), rtol=1e-5)
    np.testing.assert_allclose(heights / widths, np.broadcast_to(RATIOS, (h, w, 3, 3)), rtol=1e-5)
    cx = (grid[..., 0] + grid[..., 2]) / 2
    cy = (grid[..., 1] + grid[..., 3]) / 2
    np.testing.assert_allclose(cx, np.broadcast_to(((np.arange(w) + 0.5) * stride)[None, :, None, None],
                                                   cx.shape), atol=1e-4)
    np.testing.assert_allclose(cy, np.broadcast_to(((np.arange(h) + 0.5) * stride)[:, None, None, None],
                                                   cy.shape), atol=1e-4)


def test_base_anchors_scale_major():
    base = A.base_anchors((10, 20), (0.5, 2.0)).numpy()
    # order: (10, 0.5), (10, 2), (20, 0.5), (20, 2); widths s / sqrt(r)
    widths = base[:, 2] - base[:, 0]
    np.testing.assert_allclose(widths, [10 / math.sqrt(0.5), 10 / math.sqrt(2),
                                        20 / math.sqrt(0.5), 20 / math.sqrt(2)], rtol=1e-6)
    np.testing.assert_allclose(base[:, :2], -base[:, 2:])  # centred on the origin


def test_order_matches_head_reshape():
    # A (1, H, W, A*k) head output reshaped to (1, H*W*A, k) lines up with the anchors:
    # put each anchor's own coordinates into a "head" laid out as (H, W, A, 4) and reshape.
    h, w = 3, 4
    ref_grid = ref.anchors(h, w, 16, SCALES, RATIOS).reshape(h, w, 9 * 4)
    head = tf.reshape(tf.constant(ref_grid[None], tf.float32), [1, -1, 4])
    np.testing.assert_allclose(head[0].numpy(), A.generate_anchors(h, w, 16, SCALES, RATIOS).numpy(),
                               atol=1e-4)


def test_single_anchor_and_tensor_sizes_in_tf_function():
    fn = tf.function(lambda h, w: A.generate_anchors(h, w, 16, (64,), (1.0,)))
    np.testing.assert_allclose(fn(tf.constant(1), tf.constant(1)).numpy(), [[-24, -24, 40, 40]])
    np.testing.assert_allclose(fn(tf.constant(3), tf.constant(2)).numpy(),
                               A.generate_anchors(3, 2, 16, (64,), (1.0,)).numpy())


def test_inside_image_mask_hand():
    anchors = np.array([[0, 0, 10, 10], [-1, 0, 10, 10], [0, 0, 20, 10], [5, 5, 20, 30]], np.float32)
    # image 30 high, 20 wide: row 1 overhangs the left by 1, row 3 fits exactly (y2 = 30)
    np.testing.assert_array_equal(A.inside_image_mask(anchors, 30, 20).numpy(), [1, 0, 1, 1])
    # image 29 high: row 3 now overhangs by 1; a border of 1 tolerates both overhangs
    np.testing.assert_array_equal(A.inside_image_mask(anchors, 29, 20).numpy(), [1, 0, 1, 0])
    np.testing.assert_array_equal(A.inside_image_mask(anchors, 29, 20, 1.0).numpy(), [1, 1, 1, 1])


def test_inside_image_mask_per_image_against_reference():
    anchors = A.generate_anchors(5, 6, 16, SCALES, RATIOS).numpy()
    sizes = np.array([[80.0, 96.0], [50.0, 200.0]], np.float32)
    got = A.inside_image_mask(anchors[None], sizes[:, 0:1], sizes[:, 1:2], 8.0).numpy()
    assert got.shape == (2, len(anchors))
    for i, (h, w) in enumerate(sizes):
        np.testing.assert_array_equal(got[i], ref.inside(anchors, h, w, 8.0))
    assert got.any() and not got.all()
