"""Gaussian Soft-NMS against a direct numpy loop of Algorithm 1 (Bodla et al. 2017), by
hand on three boxes, graph- and XLA-compiled, and wired into the model's post-processing."""
import numpy as np
import pytest
import tensorflow as tf

from frcnn_lib import FrcnnError
from frcnn_lib.soft_nms import soft_nms
from helpers.synthetic import make_batch, tiny_model


def reference(boxes, scores, sigma, max_out, threshold, labels=None, valid=None):
    """Algorithm 1 on one image, as written in the paper, with a Python loop."""
    boxes = [np.asarray(b, np.float64) for b in boxes]
    s = [float(v) for v in scores]
    labels = [0] * len(s) if labels is None else list(labels)
    remaining = [i for i in range(len(s)) if s[i] > threshold and (valid is None or valid[i])]
    out_i, out_s = [], []
    while remaining and len(out_i) < max_out:
        m = max(remaining, key=lambda i: (s[i], -i))              # ties: the lower index
        out_i.append(m)
        out_s.append(s[m])
        remaining.remove(m)
        for i in list(remaining):
            if labels[i] != labels[m]:
                continue
            a, b = boxes[m], boxes[i]
            iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            inter = iw * ih
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            overlap = inter / union if union > 0 else 0.0
            s[i] *= np.exp(-overlap ** 2 / sigma)
            if s[i] <= threshold:
                remaining.remove(i)
    return out_i, out_s


def random_case(rng, n):
    xy = rng.uniform(0, 80, (n, 2))
    wh = rng.uniform(5, 40, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    # clusters of near-duplicates, so that decay matters
    boxes[n // 2:] = boxes[:n - n // 2] + rng.normal(0, 2, (n - n // 2, 4)).astype(np.float32)
    return boxes, rng.uniform(0, 1, n).astype(np.float32), rng.integers(1, 4, n).astype(np.int32)


def test_three_boxes_by_hand():
    # Box 1 overlaps box 0 by IoU 0.6 (area 100 each, intersection 75): decayed by
    # exp(-0.36 / 0.5) = 0.4868; box 2 is far away.
    boxes = np.array([[[0, 0, 10, 10], [2.5, 0, 12.5, 10], [50, 50, 60, 60]]], np.float32)
    scores = np.array([[0.9, 0.8, 0.5]], np.float32)
    idx, out, num = soft_nms(boxes, scores, 0.5, 4, 0.001)
    np.testing.assert_array_equal(idx.numpy(), [[0, 2, 1, -1]])
    np.testing.assert_allclose(out.numpy(), [[0.9, 0.5, 0.8 * np.exp(-0.36 / 0.5), 0.0]], rtol=1e-5)
    assert num.numpy().tolist() == [3]


@pytest.mark.parametrize("sigma, threshold, classwise, masked", [
    (0.5, 0.001, False, False), (0.5, 0.05, True, False), (0.1, 0.3, True, True), (2.0, 0.0, False, True)])
def test_against_the_numpy_loop(sigma, threshold, classwise, masked):
    rng = np.random.default_rng(int(sigma * 10) + int(threshold * 100))
    cases = [random_case(rng, 40) for _ in range(3)]
    boxes = np.stack([c[0] for c in cases])
    scores = np.stack([c[1] for c in cases])
    labels = np.stack([c[2] for c in cases]) if classwise else None
    valid = rng.random(scores.shape) > 0.2 if masked else None   # invalid: never kept
    max_out = 25
    idx, out, num = soft_nms(boxes, scores, sigma, max_out, threshold, labels=labels, valid=valid)
    for b in range(3):
        ref_i, ref_s = reference(boxes[b], scores[b], sigma, max_out, threshold,
                                 None if labels is None else labels[b],
                                 None if valid is None else valid[b])
        n = len(ref_i)
        assert int(num[b]) == n
        np.testing.assert_array_equal(idx[b, :n].numpy(), ref_i)
        np.testing.assert_allclose(out[b, :n].numpy(), ref_s, rtol=1e-4, atol=1e-6)
        assert np.all(idx[b, n:].numpy() == -1) and np.all(out[b, n:].numpy() == 0)
        assert np.all(np.diff(out[b, :n].numpy()) <= 1e-6)            # non-increasing


def test_compiles_with_xla_and_matches_eager():
    rng = np.random.default_rng(1)
    boxes, scores, labels = random_case(rng, 60)
    args = (boxes[None], scores[None])
    eager = soft_nms(*args, 0.5, 30, 0.01, labels=labels[None])
    compiled = tf.function(lambda b, s, l: soft_nms(b, s, 0.5, 30, 0.01, labels=l), jit_compile=True)
    xla = compiled(*args, labels[None])
    for a, b in zip(eager, xla):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_large_sigma_is_no_suppression_and_tiny_sigma_is_greedy_nms():
    rng = np.random.default_rng(2)
    boxes, scores, _ = random_case(rng, 30)
    idx, out, _ = soft_nms(boxes[None], scores[None], 1e6, 30, 0.0)
    np.testing.assert_array_equal(idx[0].numpy(), np.argsort(-scores, kind="stable"))
    np.testing.assert_allclose(out[0].numpy(), np.sort(scores)[::-1], rtol=1e-4)
    # sigma -> 0: any overlap kills the score (exp(-iou^2/sigma) underflows), like NMS at IoU 0.
    idx, _, num = soft_nms(boxes[None], scores[None], 1e-6, 30, 1e-3)
    kept = idx[0, :int(num[0])].numpy()
    from frcnn_lib.boxes import iou
    overlaps = iou(boxes[kept], boxes[kept]).numpy() - np.eye(len(kept))
    assert np.all(overlaps < 1e-2)


def test_model_option_round_trips_and_changes_the_scores():
    images, _ = make_batch()
    hard = tiny_model(2, detections_score_threshold=0.0)
    hard.build()
    soft = tiny_model(2, detections_score_threshold=0.0, detections_soft_nms_sigma=0.5)
    soft.build()
    soft.set_weights(hard.get_weights())
    assert soft.get_config()["detections_soft_nms_sigma"] == 0.5
    a, b = hard.predict_step(images), soft.predict_step(images)
    assert b["boxes"].shape == a["boxes"].shape and b["scores"].shape == a["scores"].shape
    # Soft-NMS keeps at least as many boxes (nothing is deleted outright) and its top box
    # per image is NMS's top box with the same score.
    assert np.all(b["num_detections"].numpy() >= a["num_detections"].numpy())
    np.testing.assert_allclose(b["scores"][:, 0].numpy(), a["scores"][:, 0].numpy(), rtol=1e-5)
    with pytest.raises(FrcnnError, match="detections_soft_nms_sigma"):
        tiny_model(2, detections_soft_nms_sigma=-1.0)


@pytest.mark.parametrize("classwise", [False, True])
def test_no_boxes_gives_only_pads(classwise):
    for batch in (1, 3):
        boxes = np.zeros((batch, 0, 4), np.float32)
        scores = np.zeros((batch, 0), np.float32)
        labels = np.zeros((batch, 0), np.int32) if classwise else None
        idx, out, num = soft_nms(boxes, scores, 0.5, 5, 0.001, labels=labels)
        assert idx.shape == (batch, 5) and np.all(idx.numpy() == -1)
        assert np.all(out.numpy() == 0) and num.numpy().tolist() == [0] * batch
    compiled = tf.function(lambda b, s: soft_nms(b, s, 0.5, 5, 0.001), jit_compile=True)
    idx, _, num = compiled(np.zeros((2, 0, 4), np.float32), np.zeros((2, 0), np.float32))
    assert np.all(idx.numpy() == -1) and num.numpy().tolist() == [0, 0]


def test_classwise_at_large_coordinates_decays_by_the_true_iou():
    # Two boxes of one label at x = 214,000 with IoU 0.5000039 (see test_nms.py): the second
    # decays by exp(-IoU**2 / sigma) of that IoU, not of an IoU rounded by a label shift.
    far = 214000.0
    boxes = np.array([[[far, 10, far + 325, 144], [far + 106.703125, 11, far + 431.703125, 145],
                       [far, 10, far + 325, 144]]], np.float32)
    scores = np.array([[0.9, 0.8, 0.7]], np.float32)
    labels = np.array([[5, 5, 6]], np.int32)
    idx, out, _ = soft_nms(boxes, scores, 0.5, 3, 0.0, labels=labels)
    ref_i, ref_s = reference(boxes[0], scores[0], 0.5, 3, 0.0, labels[0])
    assert idx[0].numpy().tolist() == ref_i == [0, 2, 1]
    np.testing.assert_allclose(out[0].numpy(), ref_s, rtol=1e-6)
    assert out[0, 1].numpy() == np.float32(0.7)                  # another label: not decayed
    np.testing.assert_allclose(out[0, 2].numpy(), 0.8 * np.exp(-0.5000039 ** 2 / 0.5), rtol=1e-6)


def test_a_non_finite_box_never_spreads():
    # A box with a NaN or infinite coordinate overlaps nothing: kept with its own score, it
    # decays no other box (a NaN IoU would have made every other score NaN and dropped them).
    rng = np.random.default_rng(3)
    boxes, scores, labels = random_case(rng, 30)
    boxes[4] = [np.nan, 0, 20, 20]
    boxes[9] = [-np.inf, -np.inf, np.inf, np.inf]
    scores[4], scores[9] = 0.99, 0.98
    finite = np.array([i for i in range(30) if i not in (4, 9)])
    for lab in (None, labels):
        idx, out, num = soft_nms(boxes[None], scores[None], 0.5, 30, 0.001,
                                 labels=None if lab is None else lab[None])
        ref_i, ref_s = reference(boxes[finite], scores[finite], 0.5, 30, 0.001,
                                 None if lab is None else lab[finite])
        n = int(num[0])
        assert idx[0, :n].numpy().tolist() == [4, 9] + finite[ref_i].tolist()
        np.testing.assert_allclose(out[0, :n].numpy(), [0.99, 0.98] + ref_s, rtol=1e-4, atol=1e-6)
