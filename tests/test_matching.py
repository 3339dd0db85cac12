"""frcnn_lib.matching: the paper's rule, by hand and against a per-anchor/per-GT loop."""
import numpy as np
import pytest
import tensorflow as tf

import reference as ref
from frcnn_lib import boxes as B
from frcnn_lib.matching import match


def _check_against_reference(ious, gt_valid, pos, neg, low, anchor_valid=None):
    labels, matched = match(ious, gt_valid, pos, neg, low, anchor_valid)
    labels, matched = labels.numpy(), matched.numpy()
    for b in range(ious.shape[0]):
        av = None
        if anchor_valid is not None:
            av = anchor_valid if np.ndim(anchor_valid) == 1 else anchor_valid[b]
        want_labels, want_matched = ref.match(ious[b], gt_valid[b], pos, neg, low, av)
        np.testing.assert_array_equal(labels[b], want_labels)
        pos_idx = want_labels == 1
        np.testing.assert_array_equal(matched[b][pos_idx], want_matched[pos_idx])
    return labels, matched


def test_hand_computed():
    # 5 anchors x 2 GT (thresholds 0.7 / 0.3):
    #  a0: best 0.8 -> positive (GT 0)
    #  a1: best 0.5 -> in the ignore band, and not any GT's best -> -1
    #  a2: best 0.2 -> negative
    #  a3: best 0.6 with GT 1; GT 1's highest IoU is 0.6 -> claimed, positive (low quality)
    #  a4: 0.6 with GT 1 too: a tie for GT 1's best -> positive as well
    ious = np.array([[[0.8, 0.1], [0.5, 0.4], [0.2, 0.0], [0.1, 0.6], [0.0, 0.6]]], np.float32)
    labels, matched = match(ious, [[True, True]], 0.7, 0.3)
    np.testing.assert_array_equal(labels.numpy(), [[1, -1, 0, 1, 1]])
    np.testing.assert_array_equal(matched.numpy()[0, [0, 3, 4]], [0, 1, 1])
    # without low-quality matches a3, a4 stay in the ignore band
    labels, _ = match(ious, [[True, True]], 0.7, 0.3, allow_low_quality_matches=False)
    np.testing.assert_array_equal(labels.numpy(), [[1, -1, 0, -1, -1]])
    # GT 1 as padding: a3, a4 now match nothing good (best 0.1 / 0.0) -> negative
    labels, matched = match(ious, [[True, False]], 0.7, 0.3)
    np.testing.assert_array_equal(labels.numpy(), [[1, -1, 0, 0, 0]])
    # anchor a3 invalid: ignored; it claims nothing, a4 still ties for GT 1's best
    labels, _ = match(ious, [[True, True]], 0.7, 0.3, anchor_valid=[True, True, True, False, True])
    np.testing.assert_array_equal(labels.numpy(), [[1, -1, 0, -1, 1]])


def test_invalid_best_anchor_passes_the_claim_on():
    # GT 0's best anchor (0.9) is invalid: the best valid one (0.4, below 0.7) is claimed
    ious = np.array([[[0.9], [0.4], [0.35]]], np.float32)
    labels, matched = match(ious, [[True]], 0.7, 0.3, anchor_valid=[[False, True, True]])
    np.testing.assert_array_equal(labels.numpy(), [[-1, 1, -1]])


@pytest.mark.parametrize("pos,neg,low", [(0.7, 0.3, True), (0.5, 0.5, True), (0.7, 0.3, False),
                                         (0.6, 0.2, True)])
def test_against_reference_with_ties(pos, neg, low):
    rng = np.random.default_rng(11)
    # IoUs from a coarse grid so that ties (per anchor and per GT) are frequent
    ious = rng.choice([0.0, 0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.9], size=(4, 30, 5)).astype(np.float32)
    gt_valid = rng.random((4, 5)) < 0.7
    gt_valid[0] = False          # an image with no ground truth
    anchor_valid = rng.random((4, 30)) < 0.8
    _check_against_reference(ious, gt_valid, pos, neg, low)
    _check_against_reference(ious, gt_valid, pos, neg, low, anchor_valid)
    _check_against_reference(ious, gt_valid, pos, neg, low, anchor_valid[0])  # shared (N,)


def test_against_reference_on_real_boxes():
    rng = np.random.default_rng(12)
    anchors = ref.random_boxes(rng, 60, high=200, min_size=10, max_size=80)
    gts = np.stack([ref.random_boxes(rng, 4, high=200, min_size=10, max_size=80) for _ in range(3)])
    ious = B.iou(anchors[None], gts).numpy()
    for b in range(3):
        np.testing.assert_allclose(ious[b], ref.iou(anchors, gts[b]), atol=1e-6)
    gt_valid = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]], bool)
    labels, matched = _check_against_reference(ious, gt_valid, 0.5, 0.3, True)
    assert (labels[0] == 1).any() and (labels[2] == 0).all()
    # padded GT are never matched by a positive
    assert np.all(gt_valid[np.arange(3)[:, None], matched][labels == 1])


def test_no_ground_truth_all_negative():
    ious = np.zeros((2, 7, 3), np.float32)
    labels, matched = match(ious, np.zeros((2, 3), bool), 0.7, 0.3,
                            anchor_valid=[True, True, False, True, True, True, True])
    np.testing.assert_array_equal(labels.numpy(), [[0, 0, -1, 0, 0, 0, 0]] * 2)
    np.testing.assert_array_equal(matched.numpy(), 0)


def test_zero_iou_gt_claims_nothing():
    # a GT that overlaps no anchor at all (best IoU 0) must not turn IoU-0 anchors positive
    ious = np.array([[[0.0, 0.8], [0.0, 0.1]]], np.float32)
    labels, _ = match(ious, [[True, True]], 0.7, 0.3)
    np.testing.assert_array_equal(labels.numpy(), [[1, 0]])


def test_single_anchor_single_gt():
    labels, matched = match(np.array([[[0.2]]], np.float32), [[True]], 0.7, 0.3)
    # best IoU 0.2 < 0.3 but it is the GT's best anchor -> positive
    np.testing.assert_array_equal(labels.numpy(), [[1]])
    np.testing.assert_array_equal(matched.numpy(), [[0]])


def test_tf_function_matches_eager():
    rng = np.random.default_rng(13)
    ious = tf.constant(rng.choice([0.0, 0.2, 0.5, 0.8], size=(3, 20, 4)).astype(np.float32))
    gt_valid = tf.constant(rng.random((3, 4)) < 0.7)
    anchor_valid = tf.constant(rng.random((3, 20)) < 0.8)
    fn = lambda i, g, a: match(i, g, 0.7, 0.3, True, a)  # noqa: E731
    for eager, graph in zip(fn(ious, gt_valid, anchor_valid), tf.function(fn)(ious, gt_valid, anchor_valid)):
        np.testing.assert_array_equal(eager.numpy(), graph.numpy())


def test_zero_ground_truth_slots_g_0_against_reference():
    """``G = 0`` (targets ``(B, 0, 4)``: no objects) matches like all-padding ground truth."""
    anchor_valid = np.array([[True, False, True, True, True], [True, True, True, False, True]])
    labels, matched = _check_against_reference(np.zeros((2, 5, 0), np.float32), np.zeros((2, 0), bool),
                                               0.7, 0.3, True, anchor_valid)
    np.testing.assert_array_equal(labels, np.where(anchor_valid, 0, -1))
    np.testing.assert_array_equal(matched, 0)
