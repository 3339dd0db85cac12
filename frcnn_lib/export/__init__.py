"""Export: the files a trained detector is deployed as (``model.export(path, format=...)``).

Every file follows the TF Object Detection API's exported-model contract and carries the
class names (``contract``; docs/deploy.md):

- ``contract``: the raw image -> detections graph, and the class names' JSON;
- ``resize``: the pipeline's resize in builtin ops (no ``ScaleAndTranslate``);
- ``savedmodel``: a SavedModel folder (``serving_default``, plus the padded ``serve``);
- ``tflite``: a LiteRT (TFLite) flatbuffer, run with ``ai_edge_litert``;
- ``onnx``: an ONNX file, converted with tf2onnx, run with onnxruntime.
`read_labels(path)` reads the class names back from any of the three.
"""
import os

from frcnn_lib.runtime.errors import FrcnnError


def read_labels(path):
    """The labels inside an exported file: a SavedModel folder, a ``.tflite`` or a ``.onnx``
    file.  Returns ``{"class_names": list or None, "category_ids": list}``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        from frcnn_lib.export.savedmodel import read_labels as read
    elif path.endswith(".tflite"):
        from frcnn_lib.export.tflite import read_labels as read
    elif path.endswith(".onnx"):
        from frcnn_lib.export.onnx import read_labels as read
    else:
        raise FrcnnError(f"{path}: expected a SavedModel folder, a .tflite or a .onnx file")
    return read(path)
