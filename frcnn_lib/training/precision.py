"""Training precision: Keras' dtype policies, chosen per model rather than per process.

* ``float32`` -- everything in float32 (the default).
* ``mixed_float16`` -- layers compute in float16, variables stay float32; Keras scales the
  loss (``LossScaleOptimizer``).  The usual choice on NVIDIA GPUs with tensor cores.
* ``mixed_bfloat16`` -- layers compute in bfloat16 (float32's exponent range, so no loss
  scaling), variables float32.  For TPUs, recent GPUs, and CPUs with bfloat16 units
  (Intel AMX, AVX512-BF16), where oneDNN runs the convolutions and matmuls in bfloat16.

A Keras layer takes the global policy when it is built, so :func:`policy_scope` sets it
for the construction of one model and restores the previous one after: a ``.keras`` file
stores each layer's policy, so the model keeps its precision when saved, loaded or resumed.
Proposals, targets, losses and detections are computed in float32 whatever the policy
(``rpn.py``, ``rcnn.py``, ``losses.py`` cast to float32).
"""
import contextlib

from frcnn_lib.runtime.errors import FrcnnError   # (no Keras import here: the CLI's parser reads PRECISIONS)

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def check_precision(name, field="precision"):
    """``name`` if it is one of :data:`PRECISIONS`, else a FrcnnError naming ``field``."""
    if name not in PRECISIONS:
        raise FrcnnError(f"{field}={name!r}: expected one of {', '.join(PRECISIONS)}")
    return name


@contextlib.contextmanager
def policy_scope(name):
    """Build models under the dtype policy ``name`` (None: leave the global policy alone)."""
    if name is None:
        yield
        return
    import keras

    check_precision(name)
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def precision_of(model):
    """The name of ``model``'s dtype policy (``"float32"``, ``"mixed_bfloat16"``, ...)."""
    return model.dtype_policy.name
