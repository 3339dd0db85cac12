"""Keras' Adam and SGD with momentum, each variable updated by one fused TensorFlow kernel.

Keras 3 writes the update of every variable as a handful of element-wise ops (Adam: a
subtract, two multiplies, a square, a square root, a divide and three assignments).  Each op
has a fixed cost on a CPU and, on a GPU, streams the variable through memory once more; for a
small model with many small kernels (``small``: ~30 variables) Keras' Adam with its clipping
was 13 % of the op time of a ``shapes_cpu`` step (``benchmarks/profile_ops.py``).
TensorFlow's training kernels compute the same update in one pass:

* :class:`FusedAdam` -- ``ResourceApplyAdam``, with ``t`` the step (from 1)::

      m <- m + (g - m) * (1 - beta_1)
      v <- v + (g**2 - v) * (1 - beta_2)
      w <- w - lr * sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (sqrt(v) + epsilon)

* :class:`FusedSGD` -- ``ResourceApplyKerasMomentum`` (not Nesterov)::

      m <- momentum * m - lr * g
      w <- w + m

These are Keras' own formulas, term for term (``keras.optimizers.Adam.update_step`` and
``SGD.update_step``), so the results agree to float32 rounding (``tests/test_optimizers.py``
checks both against Keras and against numpy).  Everything around the update -- gradient
clipping, loss scaling, EMA, gradient accumulation, distribution, the saved variables -- is
Keras' code, unchanged: the classes only override ``update_step``.  The cases the kernels do
not cover (``amsgrad=True``, ``nesterov=True``, ``momentum=0``) fall back to Keras' update.

``training.make_optimizer`` (the presets, ``frcnn train``, ``frcnn demo``) builds these; a
model compiled with ``"adam"`` or any other Keras optimizer trains as before.
"""
import keras
import tensorflow as tf


def _handle(variable):
    """The resource handle of a Keras or TensorFlow variable."""
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle


@keras.saving.register_keras_serializable(package="frcnn")
class FusedAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` whose per-variable update is one ``ResourceApplyAdam``."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]),
            beta1_power=tf.pow(tf.cast(self.beta_1, dtype), step),
            beta2_power=tf.pow(tf.cast(self.beta_2, dtype), step),
            lr=tf.cast(learning_rate, dtype), beta1=tf.cast(self.beta_1, dtype),
            beta2=tf.cast(self.beta_2, dtype), epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype))


@keras.saving.register_keras_serializable(package="frcnn")
class FusedSGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` with momentum, each update one ``ResourceApplyKerasMomentum``."""

    def update_step(self, gradient, variable, learning_rate):
        if self.nesterov or not self.momentum:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=_handle(variable), accum=_handle(self.momentums[self._get_variable_index(variable)]),
            lr=tf.cast(learning_rate, dtype), grad=tf.cast(gradient, dtype),
            momentum=tf.cast(self.momentum, dtype), use_nesterov=False)
