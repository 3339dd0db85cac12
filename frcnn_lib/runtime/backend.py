"""Which Keras backend is in use, and a clear error when it is not TensorFlow.

frcnn_lib builds its model from TensorFlow ops (``tf.image.crop_and_resize``, ``tf.data``,
padded NMS), so Keras 3 must run on its TensorFlow backend.  Keras picks the backend once,
at its first import, from the ``KERAS_BACKEND`` environment variable, else from
``$KERAS_HOME/keras.json`` (default ``~/.keras/keras.json``), else ``"tensorflow"``.
``configured_backend`` repeats that choice without importing Keras (importing it would
load TensorFlow, or fail inside Keras when the named backend's package is missing).
"""
import json
import os
import sys

from frcnn_lib.runtime.errors import FrcnnError


def configured_backend():
    """``(name, where it comes from)`` of the Keras backend, as Keras itself would choose it."""
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):  # Keras already chose
        return keras.backend.backend(), "the backend of the Keras already imported"
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"], "KERAS_BACKEND"
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    path = os.path.join(home, "keras.json")
    try:
        with open(path) as f:
            name = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        name = None
    if name:
        return name, path
    return "tensorflow", "the default"


def require_tensorflow_backend():
    """Raise ``FrcnnError`` naming the setting to change unless Keras runs on TensorFlow."""
    name, where = configured_backend()
    if name != "tensorflow":
        raise FrcnnError(f"Keras backend {name!r} (from {where}): frcnn_lib needs the TensorFlow "
                         f"backend; set the environment variable KERAS_BACKEND=tensorflow before "
                         f"Python first imports keras")
