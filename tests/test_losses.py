"""frcnn_lib.losses: smooth-L1 by formula and at its switch point; normalisation of the helpers."""
import math

import numpy as np
import pytest
import tensorflow as tf

import reference as ref
from frcnn_lib.losses import box_regression_loss, classification_loss, objectness_loss, smooth_l1


def test_smooth_l1_hand_computed():
    # sigma 1: |x| < 1 -> 0.5 x^2 ; else |x| - 0.5
    #   0.5 -> 0.125, -2 -> 1.5, 0 -> 0, 1 -> 0.5 (both branches agree)
    np.testing.assert_allclose(smooth_l1([0.5, -2.0, 0.0, 1.0]).numpy(), [0.125, 1.5, 0.0, 0.5])
    # sigma 3 (the RPN's in py-faster-rcnn): switch at 1/9;
    #   0.1 -> 0.5 * 9 * 0.01 = 0.045 ; 1 -> 1 - 0.5/9 = 0.94444
    np.testing.assert_allclose(smooth_l1([0.1, 1.0], sigma=3.0).numpy(), [0.045, 1 - 0.5 / 9], rtol=1e-6)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0, 10.0])
def test_smooth_l1_against_formula(sigma):
    x = np.random.default_rng(60).normal(0, 2, (4, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(smooth_l1(x, sigma).numpy(), ref.smooth_l1(x, sigma), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
def test_smooth_l1_continuous_value_and_derivative_at_switch(sigma):
    s = 1.0 / sigma ** 2
    eps = 1e-3 * s
    x = tf.constant([s - eps, s, s + eps, -s + eps, -s, -s - eps], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = smooth_l1(x, sigma)
    grad = tape.gradient(y, x).numpy()
    y = y.numpy()
    # value 0.5 / sigma^2 at the switch from both sides
    np.testing.assert_allclose(y[[0, 1, 2]], 0.5 * s, rtol=3e-3)
    np.testing.assert_allclose(y[[3, 4, 5]], 0.5 * s, rtol=3e-3)
    # derivative sigma^2 x -> 1 from inside, 1 (sign x) outside: continuous at +-1/sigma^2
    np.testing.assert_allclose(grad, [1, 1, 1, -1, -1, -1], atol=2e-3)
    # and linear growth outside: slope exactly 1
    with tf.GradientTape() as tape:
        x = tf.constant([0.0, 3.0 * s, -5.0 * s])
        tape.watch(x)
        y = smooth_l1(x, sigma)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), [0.0, 1.0, -1.0], atol=1e-6)


def test_objectness_loss_hand_and_normalisation():
    # logits 0 -> CE log 2 for either label; three sampled, one ignored (weight 0)
    logits = np.array([[0.0, 0.0, 0.0, 100.0]], np.float32)
    labels = np.array([[1, 0, 1, -1]], np.int32)
    weights = np.array([[1, 1, 1, 0]], np.float32)
    np.testing.assert_allclose(objectness_loss(logits, labels, weights).numpy(), math.log(2), rtol=1e-6)
    # against the reference on random data: sum over sampled / number sampled
    rng = np.random.default_rng(61)
    logits = rng.normal(0, 3, (2, 20)).astype(np.float32)
    labels = rng.choice([-1, 0, 1], (2, 20)).astype(np.int32)
    weights = (labels >= 0).astype(np.float32)
    want = sum(ref.sigmoid_ce(float(z), float(y)) for z, y, w in
               zip(logits.ravel(), labels.ravel(), weights.ravel()) if w) / weights.sum()
    np.testing.assert_allclose(objectness_loss(logits, labels, weights).numpy(), want, rtol=1e-5)
    # nothing sampled: 0, not NaN
    assert objectness_loss(logits, labels, np.zeros_like(weights)).numpy() == 0.0


def test_classification_loss_hand_and_reference():
    # uniform logits over K = 4: CE = log 4 for every RoI; the padding RoI (weight 0) is ignored
    logits = np.zeros((1, 3, 4), np.float32)
    logits[0, 2] = [50, -50, 0, 0]
    np.testing.assert_allclose(
        classification_loss(logits, [[0, 3, -1]], [[1.0, 1.0, 0.0]]).numpy(), math.log(4), rtol=1e-6)
    rng = np.random.default_rng(62)
    logits = rng.normal(0, 2, (2, 6, 5)).astype(np.float32)
    labels = rng.integers(-1, 5, (2, 6)).astype(np.int32)
    weights = (labels >= 0).astype(np.float32)
    want = sum(ref.softmax_ce(list(map(float, l)), int(y)) for l, y, w in
               zip(logits.reshape(-1, 5), labels.ravel(), weights.ravel()) if w) / weights.sum()
    np.testing.assert_allclose(classification_loss(logits, labels, weights).numpy(), want, rtol=1e-5)


def test_box_regression_loss_normalisers():
    # two boxes with targets; deltas off by (0.5, 0, 0, 2) and (1, 1, 1, 1):
    # smooth-L1 sums: 0.125 + 0 + 0 + 1.5 = 1.625 and 4 * 0.5 = 2.0
    deltas = np.array([[[0.5, 0, 0, 2], [1, 1, 1, 1], [9, 9, 9, 9]]], np.float32)
    targets = np.zeros((1, 3, 4), np.float32)
    weights = np.array([[1.0, 1.0, 0.0]])          # the third element carries no box target
    sampled = np.array([[1.0, 1.0, 1.0]])          # but was sampled (e.g. a background RoI)
    # default: divided by sum(weights) = 2 -> 3.625 / 2
    np.testing.assert_allclose(box_regression_loss(deltas, targets, weights).numpy(), 3.625 / 2)
    # with normalizer_weights: divided by the 3 sampled elements
    np.testing.assert_allclose(box_regression_loss(deltas, targets, weights, sampled).numpy(), 3.625 / 3)
    # sigma = 3: switch at 1/9 -> 0.5 - 1/18 + (2 - 1/18) = 2.3889 and 4 * (1 - 1/18) = 3.7778
    np.testing.assert_allclose(box_regression_loss(deltas, targets, weights, sigma=3.0).numpy(),
                               (0.5 + 2 + 4 - 6 / 18) / 2, rtol=1e-6)
    # no target at all: 0, not NaN
    assert box_regression_loss(deltas, targets, np.zeros((1, 3))).numpy() == 0.0


def test_box_regression_loss_against_reference_batched():
    rng = np.random.default_rng(63)
    deltas = rng.normal(0, 1, (3, 8, 4)).astype(np.float32)
    targets = rng.normal(0, 1, (3, 8, 4)).astype(np.float32)
    weights = (rng.random((3, 8)) < 0.4).astype(np.float32)
    sampled = np.maximum(weights, (rng.random((3, 8)) < 0.5)).astype(np.float32)
    per_box = ref.smooth_l1(deltas - targets, 3.0).sum(-1)
    want = (per_box * weights).sum() / sampled.sum()
    np.testing.assert_allclose(box_regression_loss(deltas, targets, weights, sampled, 3.0).numpy(),
                               want, rtol=1e-5)


def test_zero_weight_elements_have_no_gradient():
    logits = tf.Variable(np.random.default_rng(64).normal(0, 1, (1, 4, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = classification_loss(logits, [[1, 2, 0, -1]], [[1.0, 1.0, 0.0, 0.0]])
    g = tape.gradient(loss, logits).numpy()
    assert np.abs(g[0, :2]).sum() > 0 and np.all(g[0, 2:] == 0)


def test_tf_function_matches_eager():
    rng = np.random.default_rng(65)
    args = [tf.constant(v) for v in (rng.normal(0, 1, (2, 6)).astype(np.float32),
                                     rng.normal(0, 1, (2, 6, 3)).astype(np.float32),
                                     rng.normal(0, 1, (2, 6, 4)).astype(np.float32),
                                     rng.normal(0, 1, (2, 6, 4)).astype(np.float32),
                                     rng.integers(0, 3, (2, 6)).astype(np.int32),
                                     (rng.random((2, 6)) < 0.5).astype(np.float32))]

    def fn(obj, cls, d, t, lab, w):
        return (objectness_loss(obj, tf.minimum(lab, 1), w), classification_loss(cls, lab, w),
                box_regression_loss(d, t, w, None, 3.0))

    for eager, graph in zip(fn(*args), tf.function(fn)(*args)):
        np.testing.assert_allclose(eager.numpy(), graph.numpy(), rtol=1e-6)
