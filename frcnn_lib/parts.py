"""The paper's parts that the detector's stages call, gathered in one object.

Shape glossary: ``B`` images, ``N`` anchors or boxes, ``M``, ``G`` boxes, ``R`` RoIs,
``n`` samples per axis of an RoI, ``D`` kept boxes.

A :class:`Parts` holds the functions the stages of :class:`frcnn_lib.FasterRCNN` call for
the paper's geometry: anchors, IoU, anchor labelling, balanced sampling, box encoding and
decoding, smooth-L1, NMS and RoIAlign's sampling grid.  Every field has the signature of the
library function it defaults to (batched, in TensorFlow), so :data:`LIBRARY` is exactly
the code the stages ran before there was a ``Parts``: nothing is added to the traced
graph when nothing is replaced.

The course replaces them with the learner's own functions (``frcnn_lib.course.promotion.promote``),
which wraps each learner's function, written for one image, in an adapter with this
signature.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from frcnn_lib import boxes as box_ops
from frcnn_lib import losses, matching, sampling
from frcnn_lib import nms as nms_ops
from frcnn_lib.anchors import generate_anchors


@dataclasses.dataclass(frozen=True)
class Parts:
    """The replaceable parts, each with its library signature.

    Attributes:
      anchors: ``(Hf, Wf, stride, scales, ratios) -> (Hf * Wf * A, 4)``.
      iou: ``((..., N, 4), (..., M, 4)) -> (..., N, M)``.
      match: ``(ious (B, N, G), gt_valid, positive, negative, allow_low_quality,
        anchor_valid) -> labels (B, N), matched (B, N)`` (:func:`frcnn_lib.matching.match`).
      sample: ``(labels (B, N), num_samples, positive_fraction, seed) -> (B, N)``.
      encode, decode: ``((..., 4), (..., 4), weights) -> (..., 4)``.
      smooth_l1: ``(x, sigma) -> x``'s shape.
      nms: :func:`frcnn_lib.nms.padded_nms`'s signature, ``-> indices (B, D), num (B,)``.
      roi_grid: ``None`` (the library's RoIAlign) or ``(rois (R, 4), stride, output_size,
        sampling_ratio) -> (ys (R, n), xs (R, n))``, RoIAlign's sample positions in
        continuous feature coordinates.
      promoted: names of the fields that hold a learner's function (empty for the library).
      host_parts: names of promoted fields that run on the host (``tf.numpy_function``):
        a step with one of them cannot be compiled with XLA.
    """

    anchors: Callable = generate_anchors
    iou: Callable = box_ops.iou
    match: Callable = matching.match
    sample: Callable = sampling.sample_balanced
    encode: Callable = box_ops.encode
    decode: Callable = box_ops.decode
    smooth_l1: Callable = losses.smooth_l1
    nms: Callable = nms_ops.padded_nms
    roi_grid: Optional[Callable] = None
    promoted: tuple = ()
    host_parts: tuple = ()


LIBRARY = Parts()
