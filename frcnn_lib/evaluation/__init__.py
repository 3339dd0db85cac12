"""Detection metrics: Pascal VOC AP/mAP, the twelve COCO numbers, and a Keras callback.

* :func:`voc_ap`, :func:`evaluate_voc` (``voc.py``): the VOC devkit's matching and its
  VOC2007 11-point / VOC2010+ area AP, vectorised with numpy.
* :func:`evaluate_coco` (``coco.py``): COCO AP/AR by pycocotools, from in-memory lists.
* :func:`precision_recall_curves`, :func:`error_breakdown`, :func:`confusion_matrix`,
  :func:`ap_by_size`, :func:`worst_images` (``analysis.py``): what goes wrong (error types
  after Hoiem et al. 2012, confusions with background, AP by COCO object size, the worst
  images); their figures in ``frcnn_lib.evaluation.plots`` (matplotlib).
* :class:`MeanAveragePrecision` (``callback.py``): writes ``val_mAP`` into the Keras logs
  at the end of an epoch.  Imported lazily, so the metrics do not import TensorFlow.

Inputs everywhere: ``detections`` is a list (one per image) of dicts ``boxes (n, 4)``
xyxy float pixels, ``scores (n,)``, ``labels (n,)`` in ``1..num_classes``;
``ground_truths`` a list of dicts ``boxes (g, 4)``, ``labels (g,)``, optional
``difficult (g,)`` (VOC) and ``iscrowd (g,)`` (COCO) booleans.
"""
from frcnn_lib.evaluation.analysis import (ERROR_TYPES, SIZE_RANGES, ap_by_size,  # noqa: F401
                                           confusion_matrix, error_breakdown,
                                           precision_recall_curves, worst_images)
from frcnn_lib.evaluation.coco import COCO_METRIC_NAMES, evaluate_coco  # noqa: F401
from frcnn_lib.evaluation.voc import evaluate_voc, voc_ap  # noqa: F401

__all__ = ["voc_ap", "evaluate_voc", "evaluate_coco", "COCO_METRIC_NAMES",
           "MeanAveragePrecision", "precision_recall_curves", "error_breakdown", "confusion_matrix",
           "ap_by_size", "worst_images", "ERROR_TYPES", "SIZE_RANGES"]


def __getattr__(name):
    if name == "MeanAveragePrecision":
        from frcnn_lib.evaluation.callback import MeanAveragePrecision
        return MeanAveragePrecision
    raise AttributeError(f"module 'frcnn_lib.evaluation' has no attribute {name!r}")
