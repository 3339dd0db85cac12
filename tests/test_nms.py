"""frcnn_lib.nms: greedy NMS against the loop reference, and its invariants."""
import numpy as np
import pytest
import tensorflow as tf

import reference as ref
from frcnn_lib import boxes as B
from frcnn_lib.nms import batched_nms, gather_padded, nms, padded_nms


def _check_nms_invariants(boxes, scores, keep, thr, max_out):
    keep = np.asarray(keep)
    assert len(keep) <= max_out and len(set(keep.tolist())) == len(keep)
    s = np.asarray(scores)[keep]
    assert np.all(s[:-1] >= s[1:])                          # sorted by descending score
    if len(keep) > 1:
        ious = B.iou(boxes[keep], boxes[keep]).numpy()
        np.fill_diagonal(ious, 0.0)
        assert ious.max() <= thr                             # no kept pair overlaps > thr


def test_hand_computed():
    boxes = np.array([[0, 0, 10, 10],     # score 0.9, kept first
                      [1, 1, 11, 11],     # IoU 81 / (100 + 100 - 81) = 81/119 = 0.68 with box 0
                      [20, 20, 30, 30],   # disjoint
                      [0, 0, 10, 20]],    # IoU 100 / 200 = 0.5 with box 0, exactly
                     np.float32)
    scores = [0.9, 0.8, 0.7, 0.6]
    np.testing.assert_array_equal(nms(boxes, scores, 0.5, 10).numpy(), [0, 2, 3])  # 0.5 is not > 0.5
    np.testing.assert_array_equal(nms(boxes, scores, 0.49, 10).numpy(), [0, 2])
    np.testing.assert_array_equal(nms(boxes, scores, 0.7, 10).numpy(), [0, 1, 2, 3])
    np.testing.assert_array_equal(nms(boxes, scores, 0.7, 2).numpy(), [0, 1])     # max_output_size
    # score_threshold drops scores <= 0.7 first
    np.testing.assert_array_equal(nms(boxes, scores, 0.7, 10, score_threshold=0.7).numpy(), [0, 1])


def test_ties_go_to_the_lower_index():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]], np.float32)
    # all equal scores: box 0 beats 1 and 3; box 2 is alone
    np.testing.assert_array_equal(nms(boxes, [0.5] * 4, 0.5, 10).numpy(), [0, 2])
    # box 1 scores higher: it wins, suppressing 0 and 3 (IoU 0.68)
    np.testing.assert_array_equal(nms(boxes, [0.5, 0.6, 0.5, 0.5], 0.5, 10).numpy(), [1, 2])


@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_against_reference_random(thr):
    rng = np.random.default_rng(40)
    for trial in range(4):
        boxes = ref.random_boxes(rng, 40, high=80, min_size=5, max_size=40)
        scores = rng.choice(np.linspace(0, 1, 8), 40).astype(np.float32)   # many ties
        keep = nms(boxes, scores, thr, 25).numpy()
        assert keep.tolist() == ref.nms(boxes, scores, thr, 25)
        _check_nms_invariants(boxes, scores, keep, thr, 25)


def test_inverted_and_degenerate_boxes_follow_boxes_iou():
    # boxes.iou gives an inverted box area 0 and IoU 0 with everything: NMS must agree
    boxes = np.array([[0, 0, 10, 10], [10, 10, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], np.float32)
    keep = nms(boxes, [0.9, 0.8, 0.7, 0.6], 0.5, 10).numpy()
    assert keep.tolist() == ref.nms(boxes, [0.9, 0.8, 0.7, 0.6], 0.5, 10) == [0, 1, 2, 3]


def test_empty_input():
    assert nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), 0.5, 10).shape == (0,)


def test_batched_nms_never_suppresses_across_labels():
    # identical boxes with different labels all survive; same label suppresses
    boxes = np.array([[0, 0, 10, 10]] * 4, np.float32)
    labels = np.array([1, 2, 1, 3])
    keep = batched_nms(boxes, [0.9, 0.8, 0.7, 0.6], labels, 0.5, 10).numpy()
    np.testing.assert_array_equal(keep, [0, 1, 3])


def test_batched_nms_against_reference():
    rng = np.random.default_rng(41)
    boxes = ref.random_boxes(rng, 60, high=80, min_size=5, max_size=40)
    scores = rng.random(60).astype(np.float32)
    labels = rng.integers(0, 4, 60)
    keep = batched_nms(boxes, scores, labels, 0.4, 30).numpy()
    assert keep.tolist() == ref.batched_nms(boxes, scores, labels, 0.4, 30)
    for lab in range(4):   # within a label, the usual invariants hold
        kl = keep[labels[keep] == lab]
        _check_nms_invariants(boxes, scores, kl, 0.4, 30)


def test_padded_nms_pads_and_counts():
    rng = np.random.default_rng(42)
    boxes = np.stack([ref.random_boxes(rng, 20, high=60, min_size=5, max_size=30) for _ in range(3)])
    scores = rng.random((3, 20)).astype(np.float32)
    boxes[2] = [[0, 0, 10, 10]] * 20        # all the same box: one survivor
    d = 15
    indices, num = padded_nms(boxes, scores, 0.5, d)
    indices, num = indices.numpy(), num.numpy()
    assert indices.shape == (3, d) and num.shape == (3,)
    for b in range(3):
        want = ref.nms(boxes[b], scores[b], 0.5, d)
        assert num[b] == len(want)
        assert indices[b, :num[b]].tolist() == want
        np.testing.assert_array_equal(indices[b, num[b]:], -1)
    assert num[2] == 1
    labels = rng.integers(0, 3, (3, 20))
    indices, num = padded_nms(boxes, scores, 0.5, d, labels=labels)
    for b in range(3):
        want = ref.batched_nms(boxes[b], scores[b], labels[b], 0.5, d)
        assert indices.numpy()[b, :num.numpy()[b]].tolist() == want


def test_gather_padded():
    values = np.arange(2 * 4 * 2, dtype=np.float32).reshape(2, 4, 2)
    out = gather_padded(values, np.array([[3, 0, -1], [-1, -1, -1]], np.int32)).numpy()
    np.testing.assert_array_equal(out, [[[6, 7], [0, 1], [0, 0]], [[0, 0], [0, 0], [0, 0]]])
    out = gather_padded(values[..., 0], np.array([[1, -1]], np.int32)[[0, 0]]).numpy()
    np.testing.assert_array_equal(out, [[2, 0], [10, 0]])


def test_padded_nms_tf_function_matches_eager():
    rng = np.random.default_rng(43)
    boxes = tf.constant(np.stack([ref.random_boxes(rng, 12) for _ in range(2)]))
    scores = tf.constant(rng.random((2, 12)).astype(np.float32))
    labels = tf.constant(rng.integers(0, 3, (2, 12)))
    fn = lambda b, s, l: padded_nms(b, s, 0.5, 8, labels=l)  # noqa: E731
    for eager, graph in zip(fn(boxes, scores, labels), tf.function(fn)(boxes, scores, labels)):
        np.testing.assert_array_equal(eager.numpy(), graph.numpy())
