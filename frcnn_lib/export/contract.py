"""The exported-model contract of the TF Object Detection API, for every exported file.

Shape glossary: ``H, W`` the input image, ``h', w'`` after resizing, ``Hc, Wc`` the canvas
it is padded to, ``D`` detections (``detections_max``, static), ``K`` object classes.

TF Hub detectors, TFLite detection models and TF Serving users know this interface:

===================== ====================== ============================================
name                  dtype, shape           meaning
===================== ====================== ============================================
``input_tensor``      uint8 ``(1, H, W, 3)`` one RGB image of any size
``detection_boxes``   float32 ``(1, D, 4)``  ``[ymin, xmin, ymax, xmax]`` normalised by
                                             the input's ``H`` and ``W`` (0..1)
``detection_scores``  float32 ``(1, D)``     by descending score
``detection_classes`` float32 ``(1, D)``     the model's category ids:
                                             ``model.category_ids`` when it has them,
                                             else the labels ``1..K``
``num_detections``    float32 ``(1,)``       ``n``: rows ``n..D-1`` are padding (all 0)
===================== ====================== ============================================

:func:`detections` computes it from the raw image, all inside the graph, with the steps
``model.detect`` takes (``frcnn_lib.detect``): resize as ``pipeline.resize_image`` does
(``export.resize``: the same filter in builtin ops), pad bottom-right onto the canvas of
``pipeline.canvas_for`` (the model paints the padding ``backbones.NEUTRAL_RGB``), detect
(``model.detect_padded`` with the portable ops: gathers, tiled NMS), then map back with
``detect.clip_back`` and drop the boxes left with no area (``detect.has_area``).  The
canvas is dynamic (``H, W`` unknown until run time) in every format: SavedModel, TFLite
(the interpreter resizes its input tensor) and ONNX.  In float32, where ``detect`` maps
back in float64: the boxes agree within 1e-3 px.

``model(images)``, ``model.predict`` and the SavedModel's ``serve`` endpoint keep the
padded, network-space outputs (boxes in the pixels of the images given, no resize).

The class names travel in each file (:func:`labels_json`: ``{"class_names": [...] or null,
"category_ids": [...]}``, ``category_ids[k - 1]`` being the ``detection_classes`` value of
label ``k``): a SavedModel asset ``assets/labels.json``, the TFLite flatbuffer's metadata
``frcnn_labels``, the ONNX ``metadata_props`` ``class_names`` and ``category_ids``.
:func:`read_labels` reads them back from any of the three.
"""
import json

import numpy as np
import tensorflow as tf

from frcnn_lib.datasets.pipeline import as_rgb_uint8, canvas_for
from frcnn_lib.detect import clip_back, has_area
from frcnn_lib.export.resize import resize_image
from frcnn_lib.runtime.errors import FrcnnError

INPUT = "input_tensor"
OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
SIGNATURE = "serving_default"
LABELS_FILE = "labels.json"


def input_signature():
    """``[TensorSpec uint8 (1, None, None, 3) named input_tensor]``."""
    return [tf.TensorSpec([1, None, None, 3], tf.uint8, name=INPUT)]


def detection_class_ids(model):
    """The ``detection_classes`` value of labels ``1..K``: ``model.category_ids`` or ``1..K``."""
    ids = getattr(model, "category_ids", None)
    return [int(i) for i in ids] if ids is not None else list(range(1, model.num_classes + 1))


def detections(model, input_tensor):
    """The contract (module docstring) for ``input_tensor (1, H, W, 3)`` uint8, traceable
    with ``H, W`` unknown.  Returns the dict of the four outputs."""
    s = model.settings
    min_side, max_side = float(s["image_min_side"]), float(s["image_max_side"])
    image = input_tensor[0]
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    resized, scale = resize_image(image, min_side, max_side)
    size = tf.shape(resized)[:2]
    canvas = canvas_for(size[0], size[1], min_side, max_side)
    padding = tf.stack([tf.stack([0, canvas[0] - size[0]]), tf.stack([0, canvas[1] - size[1]]),
                        tf.constant([0, 0])])
    padded = tf.pad(resized, padding)[None]                       # (1, Hc, Wc, 3), zeros
    out = model.detect_padded(padded, size[None], portable=True)
    d = int(s["detections_max"])

    extent = tf.cast(tf.stack([width, height, width, height]), tf.float32)
    boxes = clip_back(tf.cast(out["boxes"][0], tf.float32), extent, scale, tf.clip_by_value)
    rows = tf.range(d)
    keep = (rows < tf.cast(out["num_detections"][0], tf.int32)) & has_area(boxes)
    # The kept rows first, in their order (distinct keys, so no tie for top_k to break).
    key = tf.cast(tf.where(keep, rows, rows + d), tf.float32)
    order = tf.math.top_k(-key, k=d).indices
    count = tf.reduce_sum(tf.cast(keep, tf.int32))
    valid = rows < count
    boxes = tf.where(valid[:, None], tf.gather(boxes, order), 0.0)
    scores = tf.where(valid, tf.cast(tf.gather(out["scores"][0], order), tf.float32), 0.0)
    labels = tf.gather(out["labels"][0], order)
    ids = tf.constant(detection_class_ids(model), tf.float32)
    classes = tf.where(valid, tf.gather(ids, tf.maximum(labels - 1, 0)), 0.0)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=1)
    h, w = extent[1], extent[0]
    normalised = tf.stack([y1 / h, x1 / w, y2 / h, x2 / w], axis=1)
    return {"detection_boxes": normalised[None], "detection_scores": scores[None],
            "detection_classes": classes[None],
            "num_detections": tf.cast(count, tf.float32)[None]}


def as_input(image):
    """A raw image (uint8 ``(H, W, 3)`` or ``(1, H, W, 3)``; gray, RGBA, ``PIL.Image`` or a
    file path as ``model.detect`` takes them) -> uint8 ``(1, H, W, 3)`` numpy."""
    if getattr(image, "ndim", None) == 4:
        if image.shape[0] != 1:
            raise FrcnnError(f"image: the exported model takes one image, (1, H, W, 3); got shape {image.shape}")
        image = image[0]
    return as_rgb_uint8(image)[None]


def to_pixels(outputs, height, width):
    """The contract's outputs (numpy) -> ``model.detect``'s dict for the ``n`` detections:
    ``boxes (n, 4)`` xyxy in the input's pixels, ``scores (n,)``, ``classes (n,)`` int
    (``detection_classes``)."""
    n = int(outputs["num_detections"][0])
    ymin, xmin, ymax, xmax = np.asarray(outputs["detection_boxes"][0, :n], np.float32).T
    boxes = np.stack([xmin * width, ymin * height, xmax * width, ymax * height], axis=1)
    return {"boxes": boxes.reshape(n, 4), "scores": np.asarray(outputs["detection_scores"][0, :n]),
            "classes": np.asarray(outputs["detection_classes"][0, :n]).astype(np.int64)}


# ------------------------------------------------------------------ class names
def labels_json(model):
    """The labels every file carries, as JSON text: ``{"class_names": [...] or null,
    "category_ids": [...]}`` (``category_ids``: :func:`detection_class_ids`)."""
    names = getattr(model, "class_names", None)
    return json.dumps({"class_names": None if names is None else list(names),
                       "category_ids": detection_class_ids(model)}, ensure_ascii=False)


def parse_labels(text, where):
    """:func:`labels_json`'s text -> ``{"class_names": list or None, "category_ids": list}``;
    FrcnnError naming ``where`` when it is not that."""
    try:
        labels = json.loads(text)
        names, ids = labels["class_names"], labels["category_ids"]
        ok = isinstance(ids, list) and all(isinstance(i, int) for i in ids) and (
            names is None or isinstance(names, list) and len(names) == len(ids)
            and all(isinstance(n, str) for n in names))
    except (ValueError, TypeError, KeyError):
        ok = False
    if not ok:
        raise FrcnnError(f"{where}: expected the labels JSON {{\"class_names\": [...], "
                         f"\"category_ids\": [...]}}, got {str(text)[:80]!r}")
    return {"class_names": names, "category_ids": ids}


def with_names(outputs, labels):
    """Add ``detection_names`` (``(n,)`` str, the ``n`` detections' class names) to the
    contract's ``outputs`` when ``labels`` (:func:`parse_labels`) has names."""
    if labels["class_names"] is not None:
        name_of = dict(zip(labels["category_ids"], labels["class_names"]))
        n = int(outputs["num_detections"][0])
        outputs["detection_names"] = np.array([name_of[int(c)] for c in outputs["detection_classes"][0, :n]],
                                              dtype=str)
    return outputs
