"""frcnn_lib.boxes against hand-computed values, the loop reference and its invariants."""
import math

import numpy as np
import pytest
import tensorflow as tf

import reference as ref
from frcnn_lib import boxes as B

WEIGHTS = [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (0.5, 2.0, 1.0, 3.0)]


# ----------------------------------------------------------------------------- IoU
def test_iou_hand_computed():
    a = [[0.0, 0.0, 10.0, 10.0]]
    b = [[5.0, 5.0, 15.0, 15.0],    # inter 5*5 = 25, union 100 + 100 - 25 = 175
         [0.0, 0.0, 10.0, 20.0],    # inter 100, union 100 + 200 - 100 = 200 -> 0.5
         [10.0, 0.0, 20.0, 10.0],   # touches along x = 10: inter 0
         [2.0, 2.0, 4.0, 4.0],      # inside: inter 4, union 100 -> 0.04
         [20.0, 20.0, 30.0, 30.0]]  # disjoint
    got = B.iou(a, b).numpy()
    np.testing.assert_allclose(got, [[25 / 175, 0.5, 0.0, 0.04, 0.0]], rtol=1e-6)


def test_area_hand_computed():
    # 10*20 = 200; zero width -> 0; inverted (x2 < x1) -> 0, not negative
    got = B.area([[0, 0, 10, 20], [5, 5, 5, 9], [10, 10, 0, 0]]).numpy()
    np.testing.assert_allclose(got, [200.0, 0.0, 0.0])


def test_iou_matches_loop_reference():
    rng = np.random.default_rng(1)
    a = ref.random_boxes(rng, 9)
    b = ref.random_boxes(rng, 7)
    np.testing.assert_allclose(B.iou(a, b).numpy(), ref.iou(a, b), atol=1e-6)


def test_iou_batched_broadcast_against_reference():
    rng = np.random.default_rng(2)
    a = np.stack([ref.random_boxes(rng, 5) for _ in range(3)])   # (3, 5, 4)
    b = ref.random_boxes(rng, 4)[None]                            # (1, 4, 4)
    got = B.iou(a, b).numpy()
    assert got.shape == (3, 5, 4)
    for i in range(3):
        np.testing.assert_allclose(got[i], ref.iou(a[i], b[0]), atol=1e-6)


def test_iou_invariants():
    rng = np.random.default_rng(3)
    a = ref.random_boxes(rng, 20, min_size=0.5)
    b = ref.random_boxes(rng, 15, min_size=0.5)
    ab = B.iou(a, b).numpy()
    np.testing.assert_allclose(ab, B.iou(b, a).numpy().T, atol=1e-7)   # symmetric
    assert np.all((ab >= 0) & (ab <= 1))
    np.testing.assert_allclose(np.diag(B.iou(a, a).numpy()), 1.0, rtol=1e-6)  # 1 on itself


def test_iou_degenerate_boxes_are_zero_and_finite():
    degenerate = np.array([[5, 5, 5, 5],        # a point
                           [0, 5, 10, 5],       # zero height
                           [10, 10, 0, 0],      # inverted
                           [3, 0, 2, 10]],      # inverted in x only
                          np.float32)
    normal = np.array([[0, 0, 10, 10], [1, 1, 4, 4]], np.float32)
    for x, y in [(degenerate, normal), (normal, degenerate), (degenerate, degenerate)]:
        got = B.iou(x, y).numpy()
        assert np.all(np.isfinite(got))
        np.testing.assert_array_equal(got, 0.0)


def test_iou_empty_inputs():
    assert B.iou(np.zeros((0, 4), np.float32), np.zeros((3, 4), np.float32)).shape == (0, 3)
    assert B.iou(np.zeros((2, 4), np.float32), np.zeros((0, 4), np.float32)).shape == (2, 0)


# ----------------------------------------------------------------------------- encode / decode
def test_encode_hand_computed():
    # box centre (10, 10) size 20x20, anchor centre (5, 5) size 10x10:
    # tx = (10 - 5) / 10 = 0.5, ty = 0.5, tw = th = log(20 / 10) = log 2
    box, anchor = [[0.0, 0.0, 20.0, 20.0]], [[0.0, 0.0, 10.0, 10.0]]
    np.testing.assert_allclose(B.encode(box, anchor).numpy(),
                               [[0.5, 0.5, math.log(2), math.log(2)]], rtol=1e-6)
    # weights (10, 10, 5, 5) multiply: 5, 5, 5 log 2, 5 log 2
    np.testing.assert_allclose(B.encode(box, anchor, (10, 10, 5, 5)).numpy(),
                               [[5.0, 5.0, 5 * math.log(2), 5 * math.log(2)]], rtol=1e-6)
    # box centre (12, 5) size 4x30 on anchor centre (10, 10) size 8x16:
    # tx = 2/8 = 0.25, ty = -5/16 = -0.3125, tw = log(0.5), th = log(30/16)
    np.testing.assert_allclose(
        B.encode([[10.0, -10.0, 14.0, 20.0]], [[6.0, 2.0, 14.0, 18.0]]).numpy(),
        [[0.25, -0.3125, math.log(0.5), math.log(30 / 16)]], rtol=1e-6)


def test_decode_hand_computed():
    anchor = [[0.0, 0.0, 10.0, 10.0]]
    np.testing.assert_allclose(B.decode([[0.0, 0.0, 0.0, 0.0]], anchor).numpy(), anchor)
    # tx = 1 moves the centre by one anchor width (5 -> 15); tw = log 3 triples the width (30)
    np.testing.assert_allclose(B.decode([[1.0, 0.0, math.log(3), 0.0]], anchor).numpy(),
                               [[0.0, 0.0, 30.0, 10.0]], atol=1e-5)


@pytest.mark.parametrize("weights", WEIGHTS)
def test_encode_decode_match_reference(weights):
    rng = np.random.default_rng(4)
    boxes = ref.random_boxes(rng, 30)
    anchors = ref.random_boxes(rng, 30)
    deltas = B.encode(boxes, anchors, weights).numpy()
    np.testing.assert_allclose(deltas, ref.encode(boxes, anchors, weights), rtol=1e-4, atol=1e-4)
    random_deltas = rng.normal(0, 1, (30, 4)).astype(np.float32)
    np.testing.assert_allclose(B.decode(random_deltas, anchors, weights).numpy(),
                               ref.decode(random_deltas, anchors, weights), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("weights", WEIGHTS)
def test_round_trip(weights):
    rng = np.random.default_rng(5)
    boxes = ref.random_boxes(rng, 50)
    anchors = ref.random_boxes(rng, 50)
    back = B.decode(B.encode(boxes, anchors, weights), anchors, weights).numpy()
    np.testing.assert_allclose(back, boxes, rtol=1e-5, atol=1e-3)


def test_round_trip_batched_and_broadcast():
    rng = np.random.default_rng(6)
    boxes = np.stack([ref.random_boxes(rng, 8) for _ in range(3)])   # (3, 8, 4)
    anchors = ref.random_boxes(rng, 8)[None]                          # (1, 8, 4)
    deltas = B.encode(boxes, anchors, (10, 10, 5, 5))
    assert deltas.shape == (3, 8, 4)
    np.testing.assert_allclose(B.decode(deltas, anchors, (10, 10, 5, 5)).numpy(), boxes,
                               rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("scale", [1e5, 1e-3])
def test_extreme_sizes_finite_and_round_trip(scale):
    rng = np.random.default_rng(7)
    boxes = (ref.random_boxes(rng, 20) * scale).astype(np.float32)
    anchors = (ref.random_boxes(rng, 20) * scale).astype(np.float32)
    deltas = B.encode(boxes, anchors, (10, 10, 5, 5))
    back = B.decode(deltas, anchors, (10, 10, 5, 5)).numpy()
    assert np.all(np.isfinite(deltas.numpy())) and np.all(np.isfinite(back))
    # sizes are within 50x of each other here, below the 62.5x clamp: exact round trip
    np.testing.assert_allclose(back, boxes, rtol=1e-4, atol=1e-4 * scale)


def test_extreme_mixed_sizes_finite():
    # a 1e5 box on a 1e-3 anchor and vice versa: tw = log(1e8) is large but finite; decode clamps
    big = np.array([[0, 0, 1e5, 1e5]], np.float32)
    small = np.array([[0, 0, 1e-3, 1e-3]], np.float32)
    for b, a in [(big, small), (small, big)]:
        d = B.encode(b, a).numpy()
        out = B.decode(d, a).numpy()
        assert np.all(np.isfinite(d)) and np.all(np.isfinite(out))


def test_encode_degenerate_boxes_finite():
    # zero-size boxes and anchors are floored at an epsilon: no inf, no NaN
    boxes = np.array([[5, 5, 5, 5], [0, 0, 10, 10], [0, 0, 0, 0]], np.float32)
    anchors = np.array([[0, 0, 10, 10], [3, 3, 3, 3], [0, 0, 0, 0]], np.float32)
    assert np.all(np.isfinite(B.encode(boxes, anchors).numpy()))


def test_decode_clamps_huge_size_deltas():
    anchor = np.array([[0.0, 0.0, 16.0, 16.0]] * 4, np.float32)
    deltas = np.array([[0, 0, 1e4, 1e4], [0, 0, np.inf, np.inf],
                       [0, 0, 1e30, 0.0], [0, 0, -1e4, -1e4]], np.float32)
    out = B.decode(deltas, anchor).numpy()
    assert np.all(np.isfinite(out))
    # clamped at log(1000/16): a 16-pixel anchor grows to at most 1000 pixels
    np.testing.assert_allclose(out[0, 2] - out[0, 0], 1000.0, rtol=1e-5)
    np.testing.assert_allclose(out[1, 3] - out[1, 1], 1000.0, rtol=1e-5)
    np.testing.assert_allclose(out[3, 2] - out[3, 0], 0.0, atol=1e-6)  # shrinks to 0, fine


def test_decode_clamp_applies_after_removing_weights():
    anchor = np.array([[0.0, 0.0, 10.0, 10.0]] * 2, np.float32)
    # with ww = wh = 5: tw = 5 * log 40 unweights to log 40 < log 62.5: not clamped -> 400
    # and tw = 5 * log 100 unweights to log 100 > log 62.5: clamped -> 625
    deltas = np.array([[0, 0, 5 * math.log(40), 5 * math.log(40)],
                       [0, 0, 5 * math.log(100), 5 * math.log(100)]], np.float32)
    out = B.decode(deltas, anchor, (10, 10, 5, 5)).numpy()
    np.testing.assert_allclose(out[:, 2] - out[:, 0], [400.0, 625.0], rtol=1e-5)


# ----------------------------------------------------------------------------- clip and friends
def test_clip_hand_and_reference():
    boxes = np.array([[-5, -5, 50, 50], [10, 20, 30, 40], [120, -3, 130, 2]], np.float32)
    # height 30, width 100: x in [0, 100], y in [0, 30]
    expected = [[0, 0, 50, 30], [10, 20, 30, 30], [100, 0, 100, 2]]
    got = B.clip(boxes, 30, 100).numpy()
    np.testing.assert_allclose(got, expected)
    np.testing.assert_allclose(got, ref.clip(boxes, 30, 100))
    np.testing.assert_allclose(B.clip(got, 30, 100).numpy(), got)  # idempotent


def test_clip_per_image_sizes():
    boxes = np.tile(np.array([[[-5, -5, 500, 500]]], np.float32), (2, 3, 1))  # (2, 3, 4)
    got = B.clip(boxes, tf.constant([[10.0], [20.0]]), tf.constant([[30.0], [40.0]])).numpy()
    np.testing.assert_allclose(got[0], [[0, 0, 30, 10]] * 3)
    np.testing.assert_allclose(got[1], [[0, 0, 40, 20]] * 3)


def test_normalized_yxyx_hand_and_round_trip():
    boxes = np.array([[10, 20, 30, 60]], np.float32)
    # image 80 high, 40 wide: (y1/h, x1/w, y2/h, x2/w) = (20/80, 10/40, 60/80, 30/40)
    np.testing.assert_allclose(B.to_normalized_yxyx(boxes, 80, 40).numpy(),
                               [[0.25, 0.25, 0.75, 0.75]])
    rng = np.random.default_rng(8)
    b = ref.random_boxes(rng, 10)
    np.testing.assert_allclose(
        B.from_normalized_yxyx(B.to_normalized_yxyx(b, 123, 77), 123, 77).numpy(), b, rtol=1e-5)


def test_centre_size_conversion():
    # (0, 0, 10, 20) -> centre (5, 10), size 10 x 20
    np.testing.assert_allclose(B.xyxy_to_cxcywh([[0, 0, 10, 20]]).numpy(), [[5, 10, 10, 20]])
    rng = np.random.default_rng(9)
    b = ref.random_boxes(rng, 10)
    np.testing.assert_allclose(B.cxcywh_to_xyxy(B.xyxy_to_cxcywh(b)).numpy(), b, atol=1e-5)


def test_small_boxes():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 2, 10], [0, 0, 10, 3], [0, 0, 3, 3]], np.float32)
    # sides >= 3 on both axes: rows 0 and 3 (3 is kept: "at least")
    np.testing.assert_array_equal(B.small_boxes_mask(boxes, 3).numpy(), [True, False, True, True])
    kept, idx = B.remove_small_boxes(boxes, 3.5)
    np.testing.assert_array_equal(idx.numpy(), [0])
    np.testing.assert_allclose(kept.numpy(), boxes[[0]])


def test_tf_function_matches_eager():
    rng = np.random.default_rng(10)
    a = tf.constant(np.stack([ref.random_boxes(rng, 6) for _ in range(2)]))
    b = tf.constant(np.stack([ref.random_boxes(rng, 6) for _ in range(2)]))

    def run(a, b):
        d = B.encode(a, b, (10, 10, 5, 5))
        return B.iou(a, b), d, B.decode(d, b, (10, 10, 5, 5)), B.clip(a, 50.0, 60.0)

    for eager, graph in zip(run(a, b), tf.function(run)(a, b)):
        np.testing.assert_allclose(eager.numpy(), graph.numpy(), rtol=1e-6, atol=1e-6)
