"""Promotion: a learner's functions take the library's place inside ``FasterRCNN``.

Shape glossary: ``B`` images, ``N`` anchors or boxes, ``G`` ground-truth boxes, ``R`` RoIs,
``n`` samples per axis, ``D`` kept boxes.

The course's exercises ask for one image's version of each part (the contract below); the
model's stages call batched functions (:class:`frcnn_lib.parts.Parts`).  :func:`promote`
wraps each learner's function in an adapter with the batched signature and gives the model
a ``Parts`` that holds them, so the next ``fit``, ``evaluate``, ``predict`` or ``detect``
traces the learner's code into its compiled step.  A model never promoted keeps
``parts.LIBRARY`` and runs exactly the library's graph.

==================  ==========================================================  ==========
part                the learner writes (one image; ``keras.ops`` / TensorFlow)  where
==================  ==========================================================  ==========
``anchors``         ``(Hf, Wf, stride, scales, ratios) -> (Hf*Wf*A, 4)``         graph
``iou``             ``(boxes_a (N, 4), boxes_b (M, 4)) -> (N, M)``               graph
``label_anchors``   ``(ious (N, G), positive_iou, negative_iou) -> (N,)``        graph
``sample``          ``(labels (N,), keys (N,), num_samples, fraction) -> (N,)``  graph
``encode``          ``(boxes (..., 4), anchors (..., 4), weights) -> (..., 4)``  graph
``decode``          ``(deltas (..., 4), anchors (..., 4), weights) -> (..., 4)`` graph
``smooth_l1``       ``(x, sigma) -> x.shape``                                    graph
``nms``             ``(boxes (N, 4), scores (N,), iou_threshold) -> kept (D,)``  host
``roi_align_grid``  ``(rois (R, 4), stride, output_size, ratio) -> ys, xs (R, n)``  graph
==================  ==========================================================  ==========

"graph": the adapter calls the learner's function while Keras traces the step (``map_fn``
over the images where the function is written for one), so it runs inside the compiled
step and, for TensorFlow / ``keras.ops`` code, under XLA too.  "host": greedy NMS is a loop
whose length depends on the data; the learner's runs through ``tf.numpy_function`` inside
the step (numpy or ``keras.ops`` code alike), so a model with it promoted is compiled
without XLA (``jit_compile=False``, which :func:`promote` sets and reports).  The library's
own NMS is a tiled fixed point that XLA compiles (``frcnn_lib.nms``).

``sample`` takes the random keys instead of drawing them: the adapter draws them with the
library's stateless seed, and a correct answer keeps, per class, the members with the
smallest keys -- the library's choice, exactly.  ``roi_align_grid`` replaces RoIAlign's
sample positions (the bilinear gathers are the library's); it takes effect in a model with
``roi_pooling="roi_align"``.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from frcnn_lib import matching
from frcnn_lib.runtime.errors import FrcnnError
from frcnn_lib.parts import LIBRARY, Parts

# The learner's names (the notebooks' exercises) -> the Parts field each one fills.
PART_FIELDS = {"anchors": "anchors", "iou": "iou", "label_anchors": "match", "sample": "sample",
               "encode": "encode", "decode": "decode", "smooth_l1": "smooth_l1", "nms": "nms",
               "roi_align_grid": "roi_grid"}
HOST_PARTS = ("nms",)


# ----------------------------------------------------------------- adapters
def _float(x):
    return tf.cast(tf.convert_to_tensor(x), tf.float32)


def iou_adapter(learner_iou):
    """``learner_iou((N, 4), (M, 4)) -> (N, M)`` as ``iou((B|1, N, 4), (B, M, 4)) -> (B, N, M)``
    (rank-2 arguments are passed straight through)."""
    def iou(boxes_a, boxes_b):
        a, b = _float(boxes_a), _float(boxes_b)
        if a.shape.rank == 2 and b.shape.rank == 2:
            return _float(learner_iou(a, b))
        batch = tf.maximum(tf.shape(a)[0], tf.shape(b)[0])
        a = tf.broadcast_to(a, tf.concat([[batch], tf.shape(a)[1:]], 0))
        b = tf.broadcast_to(b, tf.concat([[batch], tf.shape(b)[1:]], 0))
        return tf.map_fn(lambda ab: _float(learner_iou(ab[0], ab[1])), (a, b),
                         fn_output_signature=tf.float32)
    return iou


def match_adapter(learner_label_anchors):
    """``label_anchors(ious (N, G), positive, negative) -> (N,)`` as ``matching.match``.

    Pairs that may not match (padded ground truth, invalid anchors) get IoU -1, as in the
    library, so a correct learner's rule gives the library's labels; the matched box is each
    anchor's best valid one (the library's argmax), and invalid anchors are ignored.
    """
    def match(iou_matrix, gt_valid, positive_threshold, negative_threshold,
              allow_low_quality_matches=True, anchor_valid=None):
        if not allow_low_quality_matches:
            raise FrcnnError("the promoted label_anchors always applies the best-anchor rule; "
                             "allow_low_quality_matches=False needs the library's match")
        ious, _, anchor_valid = matching.mask_invalid_pairs(iou_matrix, gt_valid, anchor_valid)
        labels = tf.map_fn(
            lambda m: tf.cast(learner_label_anchors(m, positive_threshold, negative_threshold), tf.int32),
            ious, fn_output_signature=tf.int32)
        _, matched = matching.best_match(ious)
        if anchor_valid is not None:
            labels = tf.where(tf.broadcast_to(anchor_valid, tf.shape(labels)), labels, -1)
        return labels, matched
    return match


def sample_adapter(learner_sample):
    """``sample(labels (N,), keys (N,), num_samples, fraction) -> (N,)`` as
    ``sampling.sample_balanced(labels (B, N), num_samples, fraction, seed)``: the keys are the
    library's stateless uniform draw for ``seed``."""
    def sample(labels, num_samples, positive_fraction, seed):
        labels = tf.cast(labels, tf.int32)
        keys = tf.random.stateless_uniform(tf.shape(labels), seed=tf.cast(seed, tf.int32))
        return tf.map_fn(
            lambda lk: tf.cast(learner_sample(lk[0], lk[1], num_samples, positive_fraction), tf.int32),
            (labels, keys), fn_output_signature=tf.int32)
    return sample


def coder_adapter(learner_coder):
    """``encode`` / ``decode`` ``(x (..., 4), anchors (..., 4), weights)``, cast to float32."""
    def coder(values, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
        return _float(learner_coder(_float(values), _float(anchors), tuple(float(w) for w in weights)))
    return coder


def smooth_l1_adapter(learner_smooth_l1):
    def smooth_l1(x, sigma=1.0):
        return _float(learner_smooth_l1(_float(x), float(sigma)))
    return smooth_l1


def anchors_adapter(learner_anchors):
    def anchors(feature_height, feature_width, stride, scales, ratios):
        return tf.reshape(_float(learner_anchors(feature_height, feature_width, stride,
                                                 tuple(scales), tuple(ratios))), [-1, 4])
    return anchors


def nms_adapter(learner_nms):
    """``nms(boxes (N, 4), scores (N,), iou_threshold) -> kept (D',)`` as ``nms.padded_nms``.

    Runs on the host (``tf.numpy_function``) for each image, and for each label separately
    when ``labels`` are given (class-wise NMS); candidates are the valid boxes scoring above
    ``score_threshold``; the kept ones, by descending score (ties to the lower index), fill
    the first of ``max_output_size`` slots.
    """
    def host(boxes, scores, candidate, labels, iou_threshold, max_output_size):
        out = np.full((len(boxes), max_output_size), -1, np.int32)
        for b in range(len(boxes)):
            kept = []
            for label in np.unique(labels[b][candidate[b]]):
                members = np.flatnonzero(candidate[b] & (labels[b] == label))
                keep = np.asarray(learner_nms(boxes[b][members], scores[b][members],
                                              float(iou_threshold)), np.int64).reshape(-1)
                kept.append(members[keep])
            kept = np.concatenate(kept) if kept else np.zeros(0, np.int64)
            order = np.lexsort((kept, -scores[b][kept]))          # by score, ties to the lower
            kept = kept[order][:max_output_size]
            out[b, :len(kept)] = kept
        return out

    def padded_nms(boxes, scores, iou_threshold, max_output_size, score_threshold=float("-inf"),
                   labels=None, valid=None, method=None, tile_size=None):
        del method, tile_size  # the learner's NMS has one implementation
        boxes, scores = _float(boxes), _float(scores)
        candidate = scores > score_threshold
        if valid is not None:
            candidate &= tf.cast(valid, tf.bool)
        labels = tf.zeros_like(scores, tf.int32) if labels is None else tf.cast(labels, tf.int32)
        indices = tf.numpy_function(
            lambda b, s, c, lab: host(b, s, c, lab, iou_threshold, int(max_output_size)),
            [boxes, scores, candidate, labels], tf.int32, stateful=False)
        indices = tf.reshape(indices, [-1, int(max_output_size)])
        return indices, tf.reduce_sum(tf.cast(indices >= 0, tf.int32), axis=1)
    return padded_nms


def roi_grid_adapter(learner_grid):
    def grid(rois, stride, output_size, sampling_ratio):
        ys, xs = learner_grid(_float(rois), stride, output_size, sampling_ratio)
        return _float(ys), _float(xs)
    return grid


_ADAPTERS = {"anchors": anchors_adapter, "iou": iou_adapter, "label_anchors": match_adapter,
             "sample": sample_adapter, "encode": coder_adapter, "decode": coder_adapter,
             "smooth_l1": smooth_l1_adapter, "nms": nms_adapter, "roi_align_grid": roi_grid_adapter}


# ----------------------------------------------------------------- promote
def make_parts(**learner_functions) -> Parts:
    """A :class:`Parts` with the given learner's functions (names: ``PART_FIELDS``) in the
    library's place; ``None`` values are left to the library."""
    unknown = sorted(set(learner_functions) - set(PART_FIELDS))
    if unknown:
        raise FrcnnError(f"promote: unknown part(s) {', '.join(unknown)}; expected some of "
                         f"{', '.join(PART_FIELDS)}")
    given = {name: fn for name, fn in learner_functions.items() if fn is not None}
    for name, fn in given.items():
        if not callable(fn):
            raise FrcnnError(f"promote: {name} must be a function, got {type(fn).__name__}")
    fields = {PART_FIELDS[name]: _ADAPTERS[name](fn) for name, fn in given.items()}
    order = list(PART_FIELDS)
    promoted = tuple(sorted(given, key=order.index))
    return dataclasses.replace(LIBRARY, **fields, promoted=promoted,
                               host_parts=tuple(n for n in promoted if n in HOST_PARTS))


def promote(model, **learner_functions):
    """Put the learner's functions in the library's place inside ``model``; returns ``model``.

    Args:
      model: a :class:`frcnn_lib.FasterRCNN`.
      **learner_functions: some of ``anchors``, ``iou``, ``label_anchors``, ``sample``,
        ``encode``, ``decode``, ``smooth_l1``, ``nms``, ``roi_align_grid`` (one image's
        version each; see this module's table).  ``None`` keeps the library's.

    The model's compiled functions are dropped, so the next ``fit`` / ``evaluate`` /
    ``predict`` / ``detect`` traces the promoted parts.  With ``nms`` promoted the model runs
    without XLA (``jit_compile=False``).  ``promote(model)`` with no function returns the
    model to the library's parts.  The parts are not saved: a ``.keras`` file written from a
    promoted model loads with the library's.
    """
    parts = make_parts(**learner_functions)
    model.parts = parts if parts.promoted else LIBRARY
    for attr in ("train_function", "test_function", "predict_function"):
        if hasattr(model, attr):
            setattr(model, attr, None)
    if hasattr(model, "_frcnn_detect_fn"):
        model._frcnn_detect_fn = None
    return model


def describe(model) -> str:
    """One line per part: whose function ``model`` runs (the learner's or the library's)."""
    parts = getattr(model, "parts", LIBRARY)
    lines = []
    for name in PART_FIELDS:
        mine = name in parts.promoted
        where = " (on the host: no XLA)" if name in parts.host_parts else ""
        lines.append(f"  {name:<15} {'yours' if mine else 'frcnn_lib'}{where}")
    return "\n".join(lines)
