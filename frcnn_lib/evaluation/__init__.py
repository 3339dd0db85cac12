"""Detection metrics: Pascal VOC AP/mAP, the twelve COCO numbers, and a Keras callback.

* :func:`voc_ap`, :func:`evaluate_voc` (``voc.py``): the VOC devkit's matching and its
  VOC2007 11-point / VOC2010+ area AP, vectorised with numpy.
* :func:`evaluate_coco` (``coco.py``): COCO AP/AR by pycocotools, from in-memory lists.
* :class:`MeanAveragePrecision` (``callback.py``): writes ``val_mAP`` into the Keras logs
  at the end of an epoch.  Imported lazily, so the metrics do not import TensorFlow.

Inputs everywhere: ``detections`` is a list (one per image) of dicts ``boxes (n, 4)``
xyxy float pixels, ``scores (n,)``, ``labels (n,)`` in ``1..num_classes``;
``ground_truths`` a list of dicts ``boxes (g, 4)``, ``labels (g,)``, optional
``difficult (g,)`` (VOC) and ``iscrowd (g,)`` (COCO) booleans.
"""
from frcnn_lib.evaluation.coco import COCO_METRIC_NAMES, evaluate_coco  # noqa: F401
from frcnn_lib.evaluation.voc import evaluate_voc, voc_ap  # noqa: F401

__all__ = ["voc_ap", "evaluate_voc", "evaluate_coco", "COCO_METRIC_NAMES",
           "MeanAveragePrecision"]


def __getattr__(name):
    if name == "MeanAveragePrecision":
        from frcnn_lib.evaluation.callback import MeanAveragePrecision
        return MeanAveragePrecision
    raise AttributeError(f"module 'frcnn_lib.evaluation' has no attribute {name!r}")
