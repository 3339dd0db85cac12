"""ONNX export of a FasterRCNN through tf2onnx, and running the exported file with onnxruntime.

Shape glossary: ``B`` images, ``H, W`` image size (both dynamic in the file), ``D`` detections
per image (``detections_max``, static).

The path: ``model.export`` writes a SavedModel with the portable ops (RoI sampling by gathers,
the tiled NMS of ``frcnn_lib.nms``: no ``crop_and_resize``, no TF NMS kernel), and tf2onnx
(the ONNX project's maintained TensorFlow converter) turns its ``serve`` signature into an ONNX
graph of standard operators (opset 17 by default). The graph has one input ``images (B, H, W, 3)``
float32 0..255 and the outputs of ``model(images)``: ``boxes (B, D, 4)``, ``scores (B, D)``,
``labels (B, D)`` and ``num_detections (B,)``; an image with no detection gives
``num_detections = 0`` and padding (labels -1), as in Keras.

The converter runs in a child process (``python -m tf2onnx.convert``): it prints hundreds of
log lines, which stay out of the caller's terminal unless the conversion fails.
Needs the ``onnx`` extra: ``pip install "frcnn_lib[onnx]"`` (tf2onnx, onnx, onnxruntime).
"""
import importlib.util
import os
import subprocess
import sys
import tempfile

import numpy as np

from frcnn_lib.runtime.errors import FrcnnError

DEFAULT_OPSET = 17


def _require(module):
    if importlib.util.find_spec(module) is None:
        raise FrcnnError(f"ONNX export needs the '{module}' package: pip install \"frcnn_lib[onnx]\"")


def export_onnx(model, filepath, opset=DEFAULT_OPSET):
    """Write ``model`` as an ONNX file at ``filepath``; returns its size in bytes."""
    _require("tf2onnx")
    with tempfile.TemporaryDirectory(prefix="frcnn_onnx_") as folder:
        saved = os.path.join(folder, "saved_model")
        model.export(saved, verbose=False)
        partial = f"{filepath}.partial"   # renamed when complete: a reader never sees half a file
        command = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", saved, "--tag", "serve",
                   "--signature_def", "serve", "--opset", str(int(opset)), "--output", partial]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0 or not os.path.exists(partial):
            if os.path.exists(partial):
                os.remove(partial)
            errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
            last = (errors or done.stderr.strip().splitlines() or ["no output"])[-1]
            raise FrcnnError(f"ONNX export of {model.name} failed (tf2onnx, opset {opset}): {last}")
        os.replace(partial, filepath)
    return os.path.getsize(filepath)


def run_onnx(filepath, images):
    """Detections of the ``.onnx`` file for ``images (B, H, W, 3)`` float32 (onnxruntime, CPU):
    a dict of numpy arrays as ``model.predict`` gives."""
    _require("onnxruntime")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(filepath), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    values = session.run(names, {"images": np.asarray(images, np.float32)})
    return dict(zip(names, values))
