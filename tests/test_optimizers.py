"""The fused optimizers against Keras' own update and against numpy, written out step by step."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from frcnn_lib.training.optimizers import FusedAdam, FusedSGD
from frcnn_lib.training.runs import make_optimizer

SHAPES = [(3, 3, 4, 8), (8,), (50, 6)]


def _start_and_gradients(steps=12, seed=0):
    """Start weights and gradients spanning ten decades, so that some are far below
    ``epsilon`` and some are clipped."""
    rng = np.random.default_rng(seed)
    start = [rng.normal(size=s).astype("float32") for s in SHAPES]
    grads = [[(rng.normal(size=s) * 10.0 ** rng.uniform(-9, 1)).astype("float32") for s in SHAPES]
             for _ in range(steps)]
    return start, grads


def _run(optimizer, start, grads, jit_compile=False):
    variables = [keras.Variable(w) for w in start]

    @tf.function(jit_compile=jit_compile)
    def step(gs):
        optimizer.apply_gradients(zip(gs, variables))

    for g in grads:
        step([tf.constant(x) for x in g])
    return [v.numpy() for v in variables]


def _numpy_adam(start, grads, lr, beta_1=0.9, beta_2=0.999, eps=1e-7):
    """Kingma & Ba's Adam, in Keras' placement of epsilon: bias correction folded into
    the step size, ``eps`` added to the uncorrected ``sqrt(v)``."""
    w = [x.astype(np.float64) for x in start]
    m = [np.zeros_like(x) for x in w]
    v = [np.zeros_like(x) for x in w]
    for t, gs in enumerate(grads, start=1):
        for i, g in enumerate(gs):
            m[i] = beta_1 * m[i] + (1 - beta_1) * g
            v[i] = beta_2 * v[i] + (1 - beta_2) * g.astype(np.float64) ** 2
            w[i] = w[i] - lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t) * m[i] / (np.sqrt(v[i]) + eps)
    return w


def _numpy_momentum(start, grads, lr, momentum):
    w = [x.astype(np.float64) for x in start]
    velocity = [np.zeros_like(x) for x in w]
    for gs in grads:
        for i, g in enumerate(gs):
            velocity[i] = momentum * velocity[i] - lr * g
            w[i] = w[i] + velocity[i]
    return w


def _assert_close(got, want, moved_from):
    for g, w, s in zip(got, want, moved_from):
        assert np.abs(w - s).max() > 5e-5                # moved by far more than the tolerance
        np.testing.assert_allclose(g, w, rtol=0, atol=2e-6)


def test_fused_adam_is_keras_adam_and_the_numpy_formula():
    start, grads = _start_and_gradients()
    fused = _run(FusedAdam(1e-3), start, grads)
    _assert_close(fused, _run(keras.optimizers.Adam(1e-3), start, grads), start)
    _assert_close(fused, _numpy_adam(start, grads, 1e-3), start)


def test_fused_sgd_is_keras_momentum_and_the_numpy_formula():
    start, grads = _start_and_gradients()
    fused = _run(FusedSGD(0.01, momentum=0.9), start, grads)
    _assert_close(fused, _run(keras.optimizers.SGD(0.01, momentum=0.9), start, grads), start)
    _assert_close(fused, _numpy_momentum(start, grads, 0.01, 0.9), start)


@pytest.mark.parametrize("make", [
    lambda cls: cls(1e-3, clipnorm=1.0) if cls.__name__.endswith("Adam") else cls(0.01, 0.9, clipnorm=1.0),
    lambda cls: cls(1e-3, amsgrad=True) if cls.__name__.endswith("Adam") else cls(0.01, 0.9, nesterov=True),
    lambda cls: cls(1e-3, beta_1=0.5, epsilon=1e-3) if cls.__name__.endswith("Adam") else cls(0.5),
], ids=["clipnorm", "amsgrad-or-nesterov", "other-settings"])
@pytest.mark.parametrize("pair", [(FusedAdam, keras.optimizers.Adam), (FusedSGD, keras.optimizers.SGD)],
                         ids=["adam", "sgd"])
def test_every_setting_matches_keras(pair, make):
    """Clipping and the other settings are Keras' code around the kernel; the cases the
    kernels do not cover (amsgrad, Nesterov, no momentum) fall back to Keras' update."""
    start, grads = _start_and_gradients(steps=6, seed=1)
    fused_cls, keras_cls = pair
    _assert_close(_run(make(fused_cls), start, grads), _run(make(keras_cls), start, grads), start)


def test_the_fused_update_compiles_with_xla():
    start, grads = _start_and_gradients(steps=4)
    want = _numpy_adam(start, grads, 1e-3)
    _assert_close(_run(FusedAdam(1e-3, clipnorm=10.0), start, grads, jit_compile=True), want, start)
    _assert_close(_run(FusedSGD(0.1, momentum=0.9), start, grads, jit_compile=True),
                  _numpy_momentum(start, grads, 0.1, 0.9), start)


def test_make_optimizer_builds_the_fused_ones_and_they_round_trip():
    adam = make_optimizer(dict(optimizer="adam", learning_rate=1e-3, schedule="cosine", epochs=2), 10)
    sgd = make_optimizer(dict(optimizer="sgd", learning_rate=1e-3, momentum=0.9, epochs=2), 10)
    assert type(adam) is FusedAdam and type(sgd) is FusedSGD
    for optimizer in (adam, sgd):
        restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
        assert type(restored) is type(optimizer)
        assert restored.get_config() == optimizer.get_config()


def test_a_saved_model_keeps_the_fused_optimizer_and_its_state(tmp_path):
    """``.keras`` save/load restores the class and its moments, and training goes on with
    the same updates as an uninterrupted run."""
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(16, 5)).astype("float32")
    y = x @ np.arange(5, dtype="float32")[:, None]

    def model():
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
        m.compile(optimizer=FusedAdam(0.05), loss="mse")
        return m

    a = model()
    a.fit(x, y, epochs=3, batch_size=4, verbose=0, shuffle=False)
    path = os.path.join(tmp_path, "m.keras")
    a.save(path)
    b = keras.models.load_model(path)
    assert type(b.optimizer) is FusedAdam and int(b.optimizer.iterations) == 12
    for m in (a, b):
        m.fit(x, y, epochs=2, batch_size=4, verbose=0, shuffle=False)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
