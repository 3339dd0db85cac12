"""SavedModel export of a FasterRCNN: the contract as ``serving_default``, plus ``serve``.

Shape glossary: ``B`` images, ``H, W`` image size (dynamic), ``D`` detections per image.

Signatures (TF Serving lists both; ``serving_default`` is its default):

- ``serving_default``: the TF Object Detection API contract (``frcnn_lib.export.contract``):
  ``input_tensor`` uint8 ``(1, H, W, 3)``, any size -> ``detection_boxes`` (normalised
  ``[ymin, xmin, ymax, xmax]`` of the input), ``detection_scores``, ``detection_classes``,
  ``num_detections``; the resize, padding and mapping back happen inside.
- ``serve``: ``images`` float32 ``(B, H, W, 3)`` in 0..255 -> the padded, network-space
  detections of ``model(images)``: ``boxes (B, D, 4)`` in the pixels of ``images`` (which the
  caller has resized and padded), ``scores``, ``labels`` (-1 pads), ``num_detections``.  For
  batches of images already at the model's size.

Both are traced with the portable ops (RoI sampling by gathers, the tiled NMS, the resize of
``export.resize``), so the same SavedModel converts to TFLite and ONNX with builtin ops and
compiles with XLA.  The class names are the asset ``assets/labels.json``
(``contract.labels_json``; ``tf.saved_model.load(path).labels_file.asset_path`` names it).
"""
import os
import tempfile

import keras
import tensorflow as tf

from frcnn_lib.export import contract
from frcnn_lib.runtime.errors import FrcnnError


def export_saved_model(model, filepath, verbose=True):
    """Write ``model`` as a SavedModel folder at ``filepath`` (see the module docstring)."""
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serving_default(input_tensor):
        return contract.detections(model, input_tensor)

    def serve(images):
        return model.detect_padded(images, portable=True)

    archive.add_endpoint(contract.SIGNATURE, serving_default, input_signature=contract.input_signature())
    archive.add_endpoint("serve", serve,
                         input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    with tempfile.TemporaryDirectory(prefix="frcnn_labels_") as folder:
        labels = os.path.join(folder, contract.LABELS_FILE)
        with open(labels, "w", encoding="utf-8") as f:
            f.write(contract.labels_json(model))
        # Tracked on the archive's root object, the asset is copied into assets/ and its
        # path resolves wherever the SavedModel is moved (ExportArchive has no public hook).
        archive._tf_trackable.labels_file = tf.saved_model.Asset(labels)
        archive.write_out(filepath, verbose=verbose)


def read_labels(path):
    """The labels of the SavedModel folder ``path`` (``contract.parse_labels``), read from
    ``assets/labels.json`` without loading the model."""
    file = os.path.join(os.fspath(path), "assets", contract.LABELS_FILE)
    try:
        with open(file, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise FrcnnError(f"{path}: no class names in this SavedModel ({file}: {err.strerror})") from None
    return contract.parse_labels(text, file)


def run_saved_model(path, image):
    """The contract's outputs of the SavedModel at ``path`` for one raw ``image`` (see
    ``contract.as_input``): a dict of numpy arrays, plus ``detection_names`` when the file
    has class names.  Loads the model at each call: for tests and examples."""
    loaded = tf.saved_model.load(os.fspath(path))
    out = loaded.signatures[contract.SIGNATURE](**{contract.INPUT: tf.constant(contract.as_input(image))})
    return contract.with_names({k: v.numpy() for k, v in out.items()}, read_labels(path))
