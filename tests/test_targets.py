"""frcnn_lib.targets: RPN and R-CNN training targets against the loop references."""
import numpy as np
import pytest
import tensorflow as tf

import reference as ref
from frcnn_lib import boxes as B
from frcnn_lib.anchors import generate_anchors
from frcnn_lib.targets import RCNNTargetConfig, RPNTargetConfig, rcnn_targets, rpn_targets

SEED = tf.constant([7, 8], tf.int32)
RCNN_W = (10.0, 10.0, 5.0, 5.0)


def _gt_batch(rng, counts, g, height=96.0, width=128.0):
    """Padded GT: image b has counts[b] random boxes inside the image, the rest padding."""
    boxes = np.zeros((len(counts), g, 4), np.float32)
    labels = -np.ones((len(counts), g), np.int32)
    for b, n in enumerate(counts):
        x1 = rng.uniform(0, width - 40, n)
        y1 = rng.uniform(0, height - 40, n)
        w = rng.uniform(15, 40, n)
        h = rng.uniform(15, 40, n)
        boxes[b, :n] = np.stack([x1, y1, x1 + w, y1 + h], 1)
        labels[b, :n] = rng.integers(1, 4, n)
    return boxes, labels


# ----------------------------------------------------------------------------- RPN
def test_rpn_hand_computed():
    # 4 anchors of 10x10, one GT [0, 0, 10, 10]:
    #  a0 = GT exactly          IoU 1               -> positive
    #  a1 = [5, 0, 15, 10]      inter 50, union 150 -> 1/3: ignore band [0.3, 0.7)
    #  a2 = [0, 8, 10, 18]      inter 20, union 180 -> 1/9 < 0.3: negative
    #  a3 = [30, 30, 40, 40]    IoU 0 -> negative
    anchors = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [0, 8, 10, 18], [30, 30, 40, 40]], np.float32)
    labels, deltas = rpn_targets(anchors, [[[0, 0, 10, 10]]], [[1]], [[50, 50]], SEED,
                                 RPNTargetConfig(num_samples=4, positive_fraction=0.5))
    np.testing.assert_array_equal(labels.numpy(), [[1, -1, 0, 0]])
    np.testing.assert_allclose(deltas.numpy()[0, 0], [0, 0, 0, 0], atol=1e-6)


def test_rpn_labels_match_reference_before_sampling():
    rng = np.random.default_rng(30)
    anchors = generate_anchors(6, 8, 16, (32, 64), (0.5, 1.0, 2.0)).numpy()   # 288 anchors
    n = len(anchors)
    gt_boxes, gt_labels = _gt_batch(rng, [3, 1, 0], 4)
    sizes = np.array([[96, 128], [80, 100], [96, 128]], np.float32)
    # budget = N and fraction 1: nothing is subsampled away, so labels equal the matching
    labels, deltas = rpn_targets(anchors, gt_boxes, gt_labels, sizes, SEED,
                                 RPNTargetConfig(num_samples=n, positive_fraction=1.0, allowed_border=0.0))
    labels, deltas = labels.numpy(), deltas.numpy()
    for b in range(3):
        valid = gt_labels[b] >= 0
        want, matched = ref.match(ref.iou(anchors, gt_boxes[b]), valid, 0.7, 0.3, True,
                                  ref.inside(anchors, sizes[b, 0], sizes[b, 1]))
        np.testing.assert_array_equal(labels[b], want)
        pos = want == 1
        # deltas of positives decode back onto their matched GT boxes
        np.testing.assert_allclose(B.decode(deltas[b][pos], anchors[pos]).numpy(),
                                   gt_boxes[b][matched[pos]], atol=1e-3)
    assert (labels[0] == 1).sum() >= 1 and (labels[1] == 1).sum() >= 1
    # image without ground truth: nothing positive, inside anchors negative, deltas finite
    assert not (labels[2] == 1).any() and (labels[2] == 0).any()
    assert np.all(np.isfinite(deltas))


def test_rpn_sampling_budget_and_subset():
    rng = np.random.default_rng(31)
    anchors = generate_anchors(6, 8, 16, (16, 32), (0.5, 1.0, 2.0)).numpy()
    gt_boxes, gt_labels = _gt_batch(rng, [4, 2], 5)
    sizes = np.array([[96, 128], [96, 128]], np.float32)
    full, _ = rpn_targets(anchors, gt_boxes, gt_labels, sizes, SEED,
                          RPNTargetConfig(num_samples=len(anchors), positive_fraction=1.0))
    sampled, _ = rpn_targets(anchors, gt_boxes, gt_labels, sizes, SEED,
                             RPNTargetConfig(num_samples=16, positive_fraction=0.25))
    full, sampled = full.numpy(), sampled.numpy()
    assert np.all((sampled == full) | (sampled == -1))
    for b in range(2):
        n_pos = min((full[b] == 1).sum(), 4)      # round(16 * 0.25) = 4
        assert (sampled[b] == 1).sum() == n_pos
        assert (sampled[b] == 0).sum() == min((full[b] == 0).sum(), 16 - n_pos)


def test_rpn_border_anchors_ignored_unless_border_negative():
    anchors = np.array([[-2, -2, 28, 28], [0, 0, 30, 30]], np.float32)
    gt = [[[0, 0, 30, 30]]]
    # the first anchor crosses the image border: ignored, though its IoU is 28*28 = 784 over
    # 900 + 900 - 784 = 1016, i.e. 0.77 >= 0.7
    labels, _ = rpn_targets(anchors, gt, [[1]], [[60, 60]], SEED, RPNTargetConfig(num_samples=2))
    np.testing.assert_array_equal(labels.numpy(), [[-1, 1]])
    labels, _ = rpn_targets(anchors, gt, [[1]], [[60, 60]], SEED,
                            RPNTargetConfig(num_samples=2, positive_fraction=1.0, allowed_border=-1.0))
    np.testing.assert_array_equal(labels.numpy(), [[1, 1]])


def test_rpn_all_padding_batch():
    anchors = generate_anchors(3, 3, 16, (16,), (1.0,)).numpy()
    labels, deltas = rpn_targets(anchors, np.zeros((2, 3, 4), np.float32), -np.ones((2, 3), np.int32),
                                 [[48, 48], [48, 48]], SEED,
                                 RPNTargetConfig(num_samples=100))
    np.testing.assert_array_equal(labels.numpy(), 0)   # every anchor negative, within budget
    assert np.all(np.isfinite(deltas.numpy()))


def test_rpn_tf_function_matches_eager():
    rng = np.random.default_rng(32)
    anchors = tf.constant(generate_anchors(4, 5, 16, (32,), (0.5, 1.0)).numpy())
    gt_boxes, gt_labels = _gt_batch(rng, [2, 0], 3, 64, 80)
    args = (anchors, tf.constant(gt_boxes), tf.constant(gt_labels), tf.constant([[64, 80], [60, 70]]))
    fn = lambda a, g, l, s: rpn_targets(a, g, l, s, SEED, RPNTargetConfig(num_samples=20))  # noqa: E731
    for eager, graph in zip(fn(*args), tf.function(fn)(*args)):
        np.testing.assert_allclose(eager.numpy(), graph.numpy(), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- R-CNN
def _rcnn_reference_labels(candidates, cand_valid, gt_boxes, gt_labels, fg, lo, hi):
    """Per candidate: class (foreground), 0 (background) or -1, and the matched GT."""
    labels, matched = [], []
    valid_gt = [j for j in range(len(gt_labels)) if gt_labels[j] >= 0]
    for c, ok in zip(candidates, cand_valid):
        ious = [ref.iou_pair(c, gt_boxes[j]) for j in valid_gt]
        if not ok or not ious:
            labels.append(-1)
            matched.append(-1)
            continue
        k = int(np.argmax(ious))
        best = ious[k]
        matched.append(valid_gt[k])
        labels.append(int(gt_labels[valid_gt[k]]) if best >= fg else (0 if lo <= best < hi else -1))
    return np.array(labels), np.array(matched)


def test_rcnn_hand_computed():
    gt = [[[0, 0, 10, 10]]]
    proposals = [[[0, 0, 10, 12],      # IoU 100/120 = 0.833: foreground, class 2
                  [0, 5, 10, 15],      # IoU 50/150 = 0.333: background [0.1, 0.5)
                  [9, 9, 19, 19],      # IoU 1/199 = 0.005: < 0.1, ignored
                  [0, 0, 10, 10]]]     # identical but invalid: never a RoI
    rois, labels, deltas = rcnn_targets(proposals, [[True, True, True, False]], gt, [[2]], SEED,
                                        RCNNTargetConfig(num_samples=6, foreground_fraction=0.5))
    # foreground first (proposal 0, then the GT box itself), then background, then padding
    np.testing.assert_allclose(rois.numpy()[0, :3], [[0, 0, 10, 12], [0, 0, 10, 10], [0, 5, 10, 15]])
    np.testing.assert_array_equal(labels.numpy(), [[2, 2, 0, -1, -1, -1]])
    # proposal 0 -> GT: centre y 6 -> 5 over height 12: ty = 10 * (-1/12); th = 5 * log(10/12)
    np.testing.assert_allclose(deltas.numpy()[0, 0], [0, -10 / 12, 0, 5 * np.log(10 / 12)], atol=1e-5)
    # padding slots and background carry no deltas
    np.testing.assert_array_equal(deltas.numpy()[0, 1:], 0.0)


def test_rcnn_against_reference_without_subsampling():
    rng = np.random.default_rng(33)
    gt_boxes, gt_labels = _gt_batch(rng, [3, 1], 3)
    props = np.zeros((2, 40, 4), np.float32)
    for b in range(2):
        # jittered copies of the GT (many foreground) and random boxes (background / ignored)
        base = gt_boxes[b][gt_labels[b] >= 0]
        jitter = base[rng.integers(0, len(base), 20)] + rng.normal(0, 4, (20, 4))
        props[b] = np.concatenate([jitter, ref.random_boxes(rng, 20, high=90, min_size=10)])
    prop_valid = rng.random((2, 40)) < 0.9
    r = 60  # > P + G + 1 candidates: every labelled candidate is kept
    rois, labels, deltas = rcnn_targets(props, prop_valid, gt_boxes, gt_labels, SEED,
                                        RCNNTargetConfig(num_samples=r, foreground_fraction=1.0))
    rois, labels, deltas = rois.numpy(), labels.numpy(), deltas.numpy()
    for b in range(2):
        cands = np.concatenate([props[b], gt_boxes[b], np.zeros((1, 4), np.float32)])
        cvalid = np.concatenate([prop_valid[b], gt_labels[b] >= 0, [False]])
        want, matched = _rcnn_reference_labels(cands, cvalid, gt_boxes[b], gt_labels[b], 0.5, 0.1, 0.5)
        fg = np.where(want >= 1)[0]
        bg = np.where(want == 0)[0]
        order = np.concatenate([fg, bg]).astype(int)
        k = len(order)
        np.testing.assert_allclose(rois[b, :k], cands[order])
        np.testing.assert_array_equal(labels[b, :k], want[order])
        np.testing.assert_array_equal(labels[b, k:], -1)
        np.testing.assert_array_equal(deltas[b, k:], 0.0)
        # foreground deltas decode (with the R-CNN weights) back to the matched GT
        np.testing.assert_allclose(B.decode(deltas[b, :len(fg)], rois[b, :len(fg)], RCNN_W).numpy(),
                                   gt_boxes[b][matched[fg]], atol=1e-3)
        # every valid GT box is a candidate, with its own class and zero deltas
        for j in np.where(gt_labels[b] >= 0)[0]:
            hit = np.where(np.all(np.abs(rois[b] - gt_boxes[b, j]) < 1e-6, axis=1) & (labels[b] >= 1))[0]
            assert len(hit) >= 1 and labels[b, hit[0]] == gt_labels[b, j]


def test_rcnn_bands_and_foreground_cap():
    rng = np.random.default_rng(34)
    gt_boxes, gt_labels = _gt_batch(rng, [2, 2], 2)
    props = np.concatenate([np.repeat(gt_boxes, 30, axis=1) + rng.normal(0, 2, (2, 60, 4)),
                            np.stack([ref.random_boxes(rng, 60, high=90, min_size=10) for _ in range(2)])],
                           axis=1).astype(np.float32)
    rois, labels, deltas = rcnn_targets(props, np.ones((2, 120), bool), gt_boxes, gt_labels, SEED,
                                        RCNNTargetConfig(num_samples=16, foreground_fraction=0.25))
    rois, labels = rois.numpy(), labels.numpy()
    for b in range(2):
        ious = ref.iou(rois[b], gt_boxes[b])
        n_fg = (labels[b] >= 1).sum()
        assert n_fg == 4        # round(16 * 0.25), and far more foreground candidates exist
        for i in range(16):
            if labels[b, i] >= 1:
                j = int(np.argmax(ious[i]))
                assert ious[i, j] >= 0.5 and labels[b, i] == gt_labels[b, j]
            elif labels[b, i] == 0:
                assert 0.1 <= ious[i].max() < 0.5
        assert np.all(labels[b, :n_fg] >= 1) and np.all(labels[b, n_fg:] <= 0)  # foreground first


def test_rcnn_padding_slot_deltas_are_zero_when_candidate_0_is_foreground():
    # proposal 0 is a foreground candidate; fewer candidates than slots -> padding slots
    # (which gather candidate 0) must still be label -1 with zero deltas
    gt = [[[0, 0, 10, 10]]]
    rois, labels, deltas = rcnn_targets([[[1, 1, 11, 11]]], [[True]], gt, [[1]], SEED,
                                        RCNNTargetConfig(num_samples=4, foreground_fraction=0.5))
    np.testing.assert_array_equal(labels.numpy(), [[1, 1, -1, -1]])
    assert np.abs(deltas.numpy()[0, 0]).sum() > 0
    np.testing.assert_array_equal(deltas.numpy()[0, 1:], 0.0)


def test_rcnn_no_ground_truth():
    rng = np.random.default_rng(35)
    props = ref.random_boxes(rng, 10)[None]
    # default background band [0.1, 0.5): nothing overlaps anything, so no RoI at all
    rois, labels, deltas = rcnn_targets(props, np.ones((1, 10), bool), np.zeros((1, 2, 4), np.float32),
                                        -np.ones((1, 2), np.int32), SEED,
                                        RCNNTargetConfig(num_samples=8))
    np.testing.assert_array_equal(labels.numpy(), -1)
    assert np.all(np.isfinite(deltas.numpy())) and np.all(deltas.numpy() == 0)
    # background band [0, 0.5): an image without objects is all background, as when it has some
    rois, labels, deltas = rcnn_targets(props, np.ones((1, 10), bool), np.zeros((1, 2, 4), np.float32),
                                        -np.ones((1, 2), np.int32), SEED,
                                        RCNNTargetConfig(num_samples=8, background_iou_low=0.0))
    np.testing.assert_array_equal(labels.numpy(), 0)
    assert np.all(np.isfinite(deltas.numpy()))


def test_rcnn_background_zero_iou_consistent_with_and_without_gt():
    # a proposal far from the only GT has IoU 0; with background_iou_low = 0 it is background
    rois, labels, _ = rcnn_targets([[[50, 50, 60, 60]]], [[True]], [[[0, 0, 10, 10]]], [[1]], SEED,
                                   RCNNTargetConfig(num_samples=3, foreground_fraction=0.25, background_iou_low=0.0))
    np.testing.assert_array_equal(labels.numpy(), [[1, 0, -1]])


def test_rcnn_tf_function_matches_eager():
    rng = np.random.default_rng(36)
    gt_boxes, gt_labels = _gt_batch(rng, [2, 1], 2)
    props = np.stack([ref.random_boxes(rng, 30, high=90, min_size=10) for _ in range(2)])
    props[:, :4] = np.repeat(gt_boxes, 2, axis=1) + 1.0
    args = [tf.constant(v) for v in (props, np.ones((2, 30), bool), gt_boxes, gt_labels)]
    fn = lambda p, v, g, l: rcnn_targets(p, v, g, l, SEED,
                                         RCNNTargetConfig(num_samples=12))  # noqa: E731
    for eager, graph in zip(fn(*args), tf.function(fn)(*args)):
        np.testing.assert_allclose(eager.numpy(), graph.numpy(), rtol=1e-6, atol=1e-6)


def test_zero_ground_truth_slots_g_0():
    """Targets ``(B, 0, 4)`` / ``(B, 0)`` (no objects): the RPN targets equal those of
    all-padding ground truth and of the reference matching (all valid anchors negative); the
    R-CNN targets are background or nothing, with zero deltas."""
    anchors = generate_anchors(4, 5, 16, (16, 32), (1.0,)).numpy()            # 40 anchors
    sizes = np.array([[64, 80], [48, 60]], np.float32)
    none_boxes, none_labels = np.zeros((2, 0, 4), np.float32), np.zeros((2, 0), np.int32)
    labels, deltas = rpn_targets(anchors, none_boxes, none_labels, sizes, SEED,
                                 RPNTargetConfig(num_samples=len(anchors)))
    padded, _ = rpn_targets(anchors, np.zeros((2, 3, 4), np.float32), -np.ones((2, 3), np.int32), sizes, SEED,
                            RPNTargetConfig(num_samples=len(anchors)))
    np.testing.assert_array_equal(labels.numpy(), padded.numpy())
    for b in range(2):
        want, _ = ref.match(np.zeros((len(anchors), 0)), np.zeros(0, bool), 0.7, 0.3, True,
                            ref.inside(anchors, sizes[b, 0], sizes[b, 1]))
        np.testing.assert_array_equal(labels.numpy()[b], want)
    assert np.all(np.isfinite(deltas.numpy()))

    rng = np.random.default_rng(36)
    props = np.stack([ref.random_boxes(rng, 10), ref.random_boxes(rng, 10)])
    valid = np.ones((2, 10), bool)
    valid[1, 7:] = False
    rois, roi_labels, roi_deltas = rcnn_targets(props, valid, none_boxes, none_labels, SEED,
                                                RCNNTargetConfig(num_samples=12, background_iou_low=0.0))
    roi_labels = roi_labels.numpy()
    # every valid proposal is background (IoU 0 with nothing); the rest of the 12 slots pad
    np.testing.assert_array_equal((roi_labels == 0).sum(axis=1), [10, 7])
    np.testing.assert_array_equal((roi_labels == -1).sum(axis=1), [2, 5])
    assert np.all(roi_deltas.numpy() == 0)
    for b in range(2):
        chosen = {tuple(r) for r in rois.numpy()[b][roi_labels[b] == 0]}
        assert chosen == {tuple(p) for p in props[b][valid[b]]}


def test_stage_configs_follow_the_flat_settings_and_the_model_builds_them_once():
    """Each stage's frozen config reads the model's flat, prefixed settings field by field, and
    the defaults of the configs are the paper's (the model's DEFAULTS)."""
    import dataclasses

    from frcnn_lib import FasterRCNN
    from frcnn_lib.model import DEFAULTS
    from frcnn_lib.rcnn import DetectionConfig
    from frcnn_lib.rpn import ProposalConfig

    s = dict(DEFAULTS, rpn_positive_iou=0.6, rpn_negative_iou=0.2, rpn_batch_size=64,
             rpn_positive_fraction=0.4, rpn_allowed_border=-1.0, roi_batch_size=32,
             roi_foreground_fraction=0.3, roi_foreground_iou=0.55, roi_background_iou_low=0.0,
             roi_background_iou_high=0.45, roi_box_weights=(8, 8, 4, 4), rpn_pre_nms_top_n_train=900,
             rpn_post_nms_top_n_train=90, rpn_pre_nms_top_n_test=800, rpn_post_nms_top_n_test=80,
             rpn_nms_iou=0.65, rpn_min_size=4.0, detections_score_threshold=0.2,
             detections_nms_iou=0.4, detections_max=17, detections_min_size=0.5,
             detections_soft_nms_sigma=0.3)
    assert RPNTargetConfig.from_settings(s) == RPNTargetConfig(0.6, 0.2, 64, 0.4, -1.0)
    assert RCNNTargetConfig.from_settings(s) == RCNNTargetConfig(32, 0.3, 0.55, 0.0, 0.45, (8.0, 8.0, 4.0, 4.0))
    assert ProposalConfig.from_settings(s, training=True) == ProposalConfig(900, 90, 0.65, 4.0)
    assert ProposalConfig.from_settings(s) == ProposalConfig(800, 80, 0.65, 4.0)
    assert DetectionConfig.from_settings(s, "tf_image") == DetectionConfig(
        (8.0, 8.0, 4.0, 4.0), 0.2, 0.4, 17, 0.5, "tf_image", 0.3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        RPNTargetConfig().num_samples = 1
    # The configs' defaults are the paper's values that DEFAULTS also holds.
    paper = dict(DEFAULTS)
    assert RPNTargetConfig.from_settings(paper) == RPNTargetConfig()
    assert RCNNTargetConfig.from_settings(paper) == RCNNTargetConfig()
    assert ProposalConfig.from_settings(paper) == ProposalConfig(min_size=paper["rpn_min_size"])
    assert DetectionConfig.from_settings(paper) == DetectionConfig(min_size=paper["detections_min_size"])

    overrides = {k: v for k, v in s.items() if k != "roi_box_weights" and s[k] != DEFAULTS[k]}
    model = FasterRCNN(2, backbone="small", roi_box_weights=(8, 8, 4, 4), **overrides)
    assert model.rpn_target_config == RPNTargetConfig.from_settings(s)
    assert model.rcnn_target_config == RCNNTargetConfig.from_settings(s)
    assert model.train_proposal_config == ProposalConfig.from_settings(s, training=True)
    assert model.test_proposal_config == ProposalConfig.from_settings(s)
    assert model.detection_config == DetectionConfig.from_settings(s)
