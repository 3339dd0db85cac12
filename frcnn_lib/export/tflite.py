"""TFLite (float32) export of a FasterRCNN on the detection contract, and running it on LiteRT.

Shape glossary: ``H, W`` the input image (dynamic: the interpreter resizes its input tensor
to each image), ``D`` detections (``detections_max``).

The file has one signature, ``serving_default``, the TF Object Detection API contract
(``frcnn_lib.export.contract``): ``input_tensor`` uint8 ``(1, H, W, 3)`` of any size ->
``detection_boxes (1, D, 4)`` normalised ``[ymin, xmin, ymax, xmax]`` of the input,
``detection_scores (1, D)``, ``detection_classes (1, D)``, ``num_detections (1,)``.  The
resize, the padding and the mapping back run inside the file, so its detections are those
of ``model.detect``.  TensorFlow's converter maps every op onto TFLite's builtin set (the
SavedModel is traced with the portable ops and ``export.resize``): no Flex delegate.

The class names are in the flatbuffer's ``metadata`` list, under the name ``frcnn_labels``:
a buffer holding ``contract.labels_json`` (UTF-8 JSON).  The TFLite Support metadata writer
(``tflite-support``) needs protobuf < 4, which TensorFlow >= 2.16 does not allow, so the
file uses the schema's own metadata field; :func:`read_labels` reads it with the flatbuffer
schema that ships with LiteRT (or TensorFlow), and any flatbuffer reader of
``schema.fbs`` (``Model.metadata[i].name``, ``Model.buffers[metadata[i].buffer].data``) can.

:func:`run_tflite` runs the file with LiteRT (``ai_edge_litert``, the ``litert`` extra:
``pip install "frcnn_lib[litert]"``), and with TensorFlow's deprecated ``tf.lite.Interpreter``
only where LiteRT is not installed (its deprecation warning silenced, and without its default
XNNPack delegate, which miscomputes this graph in TensorFlow 2.21).
"""
import os
import tempfile
import warnings

import numpy as np
import tensorflow as tf

from frcnn_lib.export import contract
from frcnn_lib.runtime.errors import FrcnnError

METADATA_NAME = "frcnn_labels"


def export_tflite(model, filepath):
    """Write ``model`` as a float32 ``.tflite`` file at ``filepath``; returns its size in bytes."""
    from frcnn_lib.export.savedmodel import export_saved_model

    with tempfile.TemporaryDirectory(prefix="frcnn_tflite_") as folder:
        saved = os.path.join(folder, "saved_model")
        export_saved_model(model, saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=[contract.SIGNATURE])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        try:
            blob = converter.convert()
        except Exception as err:  # the converter's errors are long MLIR dumps
            raise FrcnnError(f"TFLite export of {model.name} failed: {str(err).splitlines()[0]}") from None
    blob = with_metadata(blob, METADATA_NAME, contract.labels_json(model).encode("utf-8"))
    partial = f"{filepath}.partial"   # renamed when complete: a reader never sees half a file
    with open(partial, "wb") as f:
        f.write(blob)
    os.replace(partial, filepath)
    return len(blob)


def with_metadata(blob, name, data):
    """The ``.tflite`` flatbuffer ``blob`` with a metadata entry ``name`` holding the bytes
    ``data`` (replacing one of that name), repacked as TensorFlow's converter repacks its
    own conversion metadata (``tensorflow.lite.tools.flatbuffer_utils``)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(blob))
    model.metadata = [m for m in (model.metadata or []) if m.name.decode("utf-8") != name]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(data, np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    return flatbuffer_utils.convert_object_to_bytearray(model)


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def read_metadata(filepath, name):
    """The bytes of the metadata entry ``name`` of the ``.tflite`` file, or None."""
    with open(filepath, "rb") as f:
        blob = bytearray(f.read())
    model = _schema().Model.GetRootAs(blob, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode("utf-8") == name:
            return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    return None


def read_labels(filepath):
    """The labels (``contract.parse_labels``) of the ``.tflite`` file."""
    data = read_metadata(filepath, METADATA_NAME)
    if data is None:
        raise FrcnnError(f"{filepath}: no '{METADATA_NAME}' metadata (a file exported by an older "
                         f"frcnn_lib, or its metadata was stripped)")
    return contract.parse_labels(data.decode("utf-8"), f"{filepath} metadata '{METADATA_NAME}'")


def interpreter(filepath):
    """A TFLite interpreter for the file: LiteRT's where installed, else TensorFlow's."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        # TensorFlow 2.21's default XNNPack delegate gives wrong boxes on this graph (up to
        # 0.28 of the width off on a 333 x 127 image; LiteRT 2.3's XNNPack gives detect's):
        # its builtin kernels alone.
        with warnings.catch_warnings():          # "tf.lite.Interpreter is deprecated ..."
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter(
                model_path=os.fspath(filepath),
                experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return Interpreter(model_path=os.fspath(filepath))


def run_tflite(filepath, image):
    """The contract's outputs of the ``.tflite`` file for one raw ``image`` (uint8
    ``(H, W, 3)`` or ``(1, H, W, 3)``, or what ``model.detect`` takes): a dict of numpy
    arrays, plus ``detection_names (n,)`` when the file has class names.  Builds an
    interpreter at each call: for tests and examples."""
    runner = interpreter(filepath).get_signature_runner(contract.SIGNATURE)
    out = runner(**{contract.INPUT: contract.as_input(image)})
    outputs = {key: np.asarray(value) for key, value in out.items()}
    return contract.with_names(outputs, read_labels(filepath))
