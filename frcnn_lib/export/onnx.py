"""ONNX export of a FasterRCNN on the detection contract (tf2onnx), and running it with onnxruntime.

Shape glossary: ``H, W`` the input image (dynamic in the file), ``D`` detections
(``detections_max``, static).

The path: ``export.savedmodel`` writes a SavedModel traced with the portable ops (RoI
sampling by gathers, the tiled NMS of ``frcnn_lib.nms``, the resize of ``export.resize``:
no ``crop_and_resize``, no TF NMS kernel, no ``ScaleAndTranslate``), and tf2onnx (the ONNX
project's maintained TensorFlow converter) turns its ``serving_default`` signature into an
ONNX graph of standard operators (opset 17 by default).  The graph follows the TF Object
Detection API contract (``frcnn_lib.export.contract``): input ``input_tensor`` uint8
``(1, H, W, 3)`` of any size; outputs ``detection_boxes (1, D, 4)`` normalised
``[ymin, xmin, ymax, xmax]`` of the input, ``detection_scores (1, D)``,
``detection_classes (1, D)``, ``num_detections (1,)``; the resize, the padding and the
mapping back run inside, so its detections are those of ``model.detect``.

The class names are the model's ``metadata_props``: ``class_names`` (a JSON list, or
``null``) and ``category_ids`` (a JSON list, the ``detection_classes`` values of labels
``1..K``); onnxruntime shows them as ``session.get_modelmeta().custom_metadata_map``.

The converter runs in a child process (``python -m tf2onnx.convert``): it prints hundreds of
log lines, which stay out of the caller's terminal unless the conversion fails.
Needs the ``onnx`` extra: ``pip install "frcnn_lib[onnx]"`` (tf2onnx, onnx, onnxruntime).
"""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from frcnn_lib.export import contract
from frcnn_lib.runtime.errors import FrcnnError

DEFAULT_OPSET = 17


def _require(module):
    if importlib.util.find_spec(module) is None:
        raise FrcnnError(f"ONNX export needs the '{module}' package: pip install \"frcnn_lib[onnx]\"")


def export_onnx(model, filepath, opset=DEFAULT_OPSET):
    """Write ``model`` as an ONNX file at ``filepath``; returns its size in bytes."""
    _require("tf2onnx")
    _require("onnx")
    from frcnn_lib.export.savedmodel import export_saved_model

    partial = f"{filepath}.partial"   # renamed when complete: a reader never sees half a file
    try:
        with tempfile.TemporaryDirectory(prefix="frcnn_onnx_") as folder:
            saved = os.path.join(folder, "saved_model")
            export_saved_model(model, saved, verbose=False)
            command = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", saved, "--tag", "serve",
                       "--signature_def", contract.SIGNATURE, "--opset", str(int(opset)),
                       "--output", partial]
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0 or not os.path.exists(partial):
                errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
                last = (errors or done.stderr.strip().splitlines() or ["no output"])[-1]
                raise FrcnnError(f"ONNX export of {model.name} failed (tf2onnx, opset {opset}): {last}")
        _add_labels(partial, model)
        os.replace(partial, filepath)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return os.path.getsize(filepath)


def _add_labels(path, model):
    """Set the ``class_names`` and ``category_ids`` metadata_props of the ONNX file at ``path``."""
    import onnx

    proto = onnx.load(path)
    labels = json.loads(contract.labels_json(model))
    props = {p.key: p.value for p in proto.metadata_props}
    props.update({key: json.dumps(value, ensure_ascii=False) for key, value in labels.items()})
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, path)


def read_labels(filepath):
    """The labels (``contract.parse_labels``) in the ``.onnx`` file's ``metadata_props``."""
    _require("onnx")
    import onnx

    try:
        proto = onnx.load(os.fspath(filepath), load_external_data=False)
    except Exception as err:  # onnx raises DecodeError, OSError, ... on a file it cannot read
        raise FrcnnError(f"{filepath}: not a readable ONNX file ({type(err).__name__})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    return _labels_of(props, filepath)


def _labels_of(props, where):
    if "category_ids" not in props:
        raise FrcnnError(f"{where}: no 'category_ids' / 'class_names' metadata_props (a file exported "
                         f"by an older frcnn_lib?)")
    text = '{"class_names": %s, "category_ids": %s}' % (props.get("class_names", "null"), props["category_ids"])
    return contract.parse_labels(text, f"{where} metadata_props")


def run_onnx(filepath, image):
    """The contract's outputs of the ``.onnx`` file for one raw ``image`` (uint8
    ``(H, W, 3)`` or ``(1, H, W, 3)``, or what ``model.detect`` takes), run by onnxruntime
    on the CPU: a dict of numpy arrays, plus ``detection_names (n,)`` when the file has
    class names.  Opens a session at each call: for tests and examples."""
    _require("onnxruntime")
    import onnxruntime

    session = onnxruntime.InferenceSession(os.fspath(filepath), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    values = session.run(names, {contract.INPUT: contract.as_input(image)})
    labels = _labels_of(session.get_modelmeta().custom_metadata_map, filepath)
    return contract.with_names({name: np.asarray(value) for name, value in zip(names, values)}, labels)
