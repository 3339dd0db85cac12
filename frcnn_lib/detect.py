"""Detection on raw images of any size: ``FasterRCNN.detect``.

Shape glossary: ``H, W`` an image's own size, ``Hc, Wc`` the canvas it is padded to,
``D`` detections per image.

Each image is converted to RGB uint8, then resized and padded exactly as the training
pipeline does (``frcnn_lib.datasets.pipeline``): aspect ratio kept (shorter side
``image_min_side``, longer side at most ``image_max_side``), padded bottom-right onto the
canvas of its size (``pipeline.canvas_for``: sides rounded up to 32), and images of one
canvas are batched together, so the compiled graph is traced once per canvas (a bounded
set), never per image size.

Mapping back: the model clips its boxes to the resized content ``(h', w')``, whose sides
are ``h * scale``, ``w * scale`` rounded to whole pixels, so up to half a pixel of it lies
beyond the original image.  Boxes are clipped to ``(w * scale, h * scale)`` first, in that
space, then divided by ``scale`` (and clipped to ``(w, h)`` again, against rounding).
Clipping only after the division squeezed a thin box in that last half pixel to zero area
(a 0.1 px-tall detection at the bottom of a 101x300 image came back as
``[18.75, 101, 93.75, 101]``); a box left with no area at all is dropped, so ``detect``
never returns an empty box.
"""
import numpy as np
import tensorflow as tf

from frcnn_lib.datasets.pipeline import as_rgb_uint8, canvas_for, resize_image
from frcnn_lib.datasets.records import is_int
from frcnn_lib.runtime.errors import FrcnnError


def detect_images(model, images, batch_size=4, score_threshold=None):
    """``model.detect`` for a list of raw images; see :meth:`FasterRCNN.detect`."""
    if not is_int(batch_size, 1):
        raise FrcnnError(f"batch_size: expected a positive int, got {batch_size!r}")
    if score_threshold is not None and (isinstance(score_threshold, bool) or not isinstance(
            score_threshold, (int, float, np.integer, np.floating)) or not 0 <= score_threshold <= 1):
        raise FrcnnError(f"score_threshold: expected a number in [0, 1] (or None), got {score_threshold!r}")
    min_side = model.settings["image_min_side"]
    max_side = model.settings["image_max_side"]
    prepared = []
    for index, image in enumerate(images):
        rgb = as_rgb_uint8(image, index)
        resized, scale = _resize(rgb, min_side, max_side)
        canvas = canvas_for(int(resized.shape[0]), int(resized.shape[1]), min_side, max_side)
        prepared.append((index, rgb, float(scale), resized, canvas))

    serve = _serving_function(model)
    results = [None] * len(prepared)
    for canvas in sorted({p[4] for p in prepared}):
        group = [p for p in prepared if p[4] == canvas]
        for start in range(0, len(group), batch_size):
            chunk = group[start:start + batch_size]
            batch = np.zeros((len(chunk),) + canvas + (3,), np.float32)   # padded bottom-right
            for row, p in enumerate(chunk):
                batch[row, :p[3].shape[0], :p[3].shape[1]] = p[3]
            sizes = np.array([p[3].shape[:2] for p in chunk], np.int32)
            try:
                out = serve(tf.constant(batch), tf.constant(sizes))
            except tf.errors.OperatorNotAllowedInGraphError:
                # Python control flow on tensors (a promoted learner part, a custom
                # backbone): trace again with AutoGraph, which converts it.
                if getattr(model, "_frcnn_detect_fn", (None, None, True))[2]:
                    raise
                serve = _serving_function(model, autograph=True)
                out = serve(tf.constant(batch), tf.constant(sizes))
            out = {k: v.numpy() for k, v in out.items()}
            for row, (index, rgb, scale, _, _) in enumerate(chunk):
                n = int(out["num_detections"][row])
                results[index] = map_back(out["boxes"][row, :n], out["scores"][row, :n],
                                          out["labels"][row, :n], rgb.shape[:2], scale,
                                          score_threshold)
    return results


def map_back(boxes, scores, labels, size, scale, score_threshold=None):
    """Detections in the resized content -> the original image's pixels (see the module
    docstring): clipped to the original image's extent in the resized space, divided by
    ``scale``, clipped to ``size = (h, w)``; boxes left with no area are dropped, and so are
    scores below ``score_threshold`` when given.  Returns the dict ``detect`` gives."""
    h, w = size
    boxes = clip_back(np.asarray(boxes, np.float64), np.array([w, h, w, h], np.float64), scale,
                      np.clip).astype(np.float32)
    keep = has_area(boxes)
    if score_threshold is not None:
        keep &= np.asarray(scores) >= score_threshold
    return {"boxes": boxes[keep], "scores": np.asarray(scores)[keep], "labels": np.asarray(labels)[keep]}


def clip_back(boxes, extent, scale, clip):
    """The mapping back of :func:`map_back`, shared with the exported files
    (``frcnn_lib.export.contract``): ``boxes (D, 4)`` xyxy in the resized content, clipped to
    ``extent * scale`` (``extent = (w, h, w, h)``, the original image), divided by ``scale``
    and clipped to ``extent``.  ``clip``: ``np.clip`` on numpy arrays, ``tf.clip_by_value``
    in a graph."""
    return clip(clip(boxes, 0.0, extent * scale) / scale, 0.0, extent)


def has_area(boxes):
    """``(D,)`` bool: the xyxy boxes ``(D, 4)`` (numpy or tensor) with a positive width and height."""
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


@tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8),
                              tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.float32)],
             autograph=False)  # graph code already (tf.cond): converting it cost ~1 s
def _resize_graph(image, min_side, max_side):
    return resize_image(image, min_side, max_side)


def _resize(rgb, min_side, max_side):
    """``pipeline.resize_image`` as one compiled call (traced once for every size): run
    eagerly, its ~20 small ops cost more than the small model's whole forward pass.
    Returns ``(resized (h', w', 3) float32 numpy, scale float)``."""
    resized, scale = _resize_graph(rgb, float(min_side), float(max_side))
    return resized.numpy(), float(scale)


def _serving_function(model, autograph=False):
    """One ``tf.function`` per model (and ``jit_compile`` value), traced once per canvas shape.

    Traced without AutoGraph unless ``autograph``: the model's graph code uses TensorFlow's
    own control flow, and converting its ~50 functions cost about 3 s of the first call (most of
    ``frcnn predict`` on one image beyond the imports).  The graph is the same either way;
    ``detect_images`` switches AutoGraph on for a model whose tracing needs it.
    Cached as ``model._frcnn_detect_fn = (jit, fn, autograph)``.
    """
    # XLA when Keras would use it for this model (``jit_compile``: True on a GPU or TPU).
    # A promoted part that runs on the host (frcnn_lib.course.promotion) rules XLA out.
    jit = bool(model.jit_compile) and not model.parts.host_parts
    cached = getattr(model, "_frcnn_detect_fn", None)
    if cached is None or cached[0] != jit or (autograph and not cached[2]):
        @tf.function(reduce_retracing=True, jit_compile=jit, autograph=autograph)
        def fn(images, image_sizes):
            return model.detect_padded(images, image_sizes, portable=jit)
        cached = model._frcnn_detect_fn = (jit, fn, autograph)
    return cached[1]
