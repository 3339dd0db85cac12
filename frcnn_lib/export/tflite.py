"""TFLite (float32) export of a FasterRCNN, and running the exported file.

Shape glossary: ``B`` images (the TFLite graph runs one batch size at a time; resize its
input for others), ``H, W`` image size, ``D`` detections per image.

The SavedModel of ``model.export`` uses the portable ops (RoI sampling by gathers, the tiled
NMS of ``frcnn_lib.nms``, no ``crop_and_resize`` and no ``ensure_shape``), so TensorFlow's
converter maps every op onto TFLite's builtin set: no Flex (select TF ops) delegate is
needed.  The file's ``serve`` signature maps ``images (B, H, W, 3)`` float32 0..255 to the
padded ``boxes (B, D, 4)``, ``scores (B, D)``, ``labels (B, D)`` and ``num_detections (B,)``
of ``model(images)``; an image with no detection gives ``num_detections = 0`` and padding.
"""
import os
import tempfile

import numpy as np
import tensorflow as tf

from frcnn_lib.runtime.errors import FrcnnError


def export_tflite(model, filepath):
    """Write ``model`` as a float32 ``.tflite`` file at ``filepath``; returns its size in bytes."""
    with tempfile.TemporaryDirectory(prefix="frcnn_tflite_") as folder:
        saved = os.path.join(folder, "saved_model")
        model.export(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=["serve"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        try:
            blob = converter.convert()
        except Exception as err:  # the converter's errors are long MLIR dumps
            raise FrcnnError(f"TFLite export of {model.name} failed: {str(err).splitlines()[0]}") from None
    with open(filepath, "wb") as f:
        f.write(blob)
    return len(blob)


def run_tflite(filepath, images):
    """Detections of the ``.tflite`` file for ``images (B, H, W, 3)`` float32: a dict of numpy
    arrays as ``model.predict`` gives."""
    interpreter = tf.lite.Interpreter(model_path=str(filepath))
    runner = interpreter.get_signature_runner("serve")
    out = runner(images=np.asarray(images, np.float32))
    return {key: np.asarray(value) for key, value in out.items()}
