"""Detection datasets and the ``tf.data`` pipeline.

Readers return a :class:`DetectionData` (records with boxes in original pixels, plus the
class names); :func:`make_dataset` turns it into padded batches for the model::

    data = frcnn_lib.datasets.load("shapes")                     # embedded, no download
    data = frcnn_lib.datasets.load("voc:datasets/data/VOCdevkit/VOC2007:test")
    data = frcnn_lib.datasets.load("coco:ann/instances_val2017.json:images/val2017")
    ds = frcnn_lib.datasets.make_dataset(data, batch_size=2, training=True)
    gts = data.ground_truths()                                   # for frcnn_lib.evaluation

Modules: ``records`` (the common types), ``shapes``, ``voc``, ``coco`` (readers),
``imageio`` (image files), ``pipeline`` (batches).
"""
from __future__ import annotations

from frcnn_lib.datasets import coco, shapes, voc
from frcnn_lib.datasets.imageio import read_image
from frcnn_lib.datasets.records import DetectionData, ImageRecord
from frcnn_lib.runtime.errors import FrcnnError

_PIPELINE = ("canvas_for", "canvas_size", "make_dataset", "pad_to_canvas", "resize_for_inference",
             "resize_image")


def __getattr__(name):
    # The pipeline imports TensorFlow: load it on first use, so that reading annotations
    # (and the fetch / fixture scripts) stays light.
    if name in _PIPELINE:
        from frcnn_lib.datasets import pipeline
        return getattr(pipeline, name)
    raise AttributeError(f"module 'frcnn_lib.datasets' has no attribute {name!r}")

__all__ = [
    "DetectionData", "ImageRecord", "load", "make_dataset", "resize_for_inference",
    "resize_image", "canvas_for", "canvas_size", "pad_to_canvas", "read_image", "shapes", "voc", "coco",
    "SPEC_FORMS",
]

SPEC_FORMS = (
    "'shapes' or 'shapes:SPLIT' (SPLIT: train, val, test)",
    "'voc:PATH/TO/VOCdevkit/VOC2007' or 'voc:PATH:SPLIT' (SPLIT default trainval; any "
    "classes: class_names= a list, or 'auto' to read them from the annotations)",
    "'coco:ANNOTATIONS.json:IMAGE_DIR'",
)


def load(spec, **kwargs) -> DetectionData:
    """Load a dataset from a string ``spec`` (see ``SPEC_FORMS``).

    ``kwargs`` go to the reader (e.g. ``num_images=`` and ``seed=`` for shapes).  A
    DetectionData is returned as is.  Paths must not contain ``':'``.
    """
    if isinstance(spec, DetectionData):
        return spec
    forms = "; ".join(SPEC_FORMS)
    if not isinstance(spec, str) or not spec.strip():
        raise FrcnnError(f"dataset spec {spec!r}: expected a string, one of: {forms}")
    kind, _, rest = spec.strip().partition(":")
    parts = rest.split(":") if rest else []
    if kind == "shapes" and len(parts) <= 1:
        return shapes.load(split=parts[0] if parts else "train", **kwargs)
    if kind == "voc" and 1 <= len(parts) <= 2 and parts[0]:
        return voc.load(parts[0], split=parts[1] if len(parts) == 2 else "trainval", **kwargs)
    if kind == "coco" and len(parts) == 2 and all(parts):
        return coco.load(parts[0], parts[1], **kwargs)
    raise FrcnnError(f"dataset spec {spec!r} not understood; expected one of: {forms}")
