"""Failure analysis of a detector: what goes wrong, on which objects, in which images.

Shape glossary: ``I`` images, ``K`` object classes (labels ``1..K``, ``0`` = background),
``D`` detections and ``G`` ground-truth boxes over the dataset, ``n`` / ``g`` boxes of one
image.  Inputs are those of :func:`frcnn_lib.evaluation.evaluate_voc`: per-image dicts
``boxes (n, 4)`` xyxy, ``scores (n,)``, ``labels (n,)``; ground truths ``boxes (g, 4)``,
``labels (g,)``, optional ``difficult (g,)``.

* :func:`precision_recall_curves`: per class, the VOC curve of ``evaluate_voc`` (same
  matching) with its AP; ``voc_ap(recall, precision)`` of a curve is ``evaluate_voc``'s AP.
* :func:`error_breakdown`: every detection at or above a score threshold gets one type, in
  this order of precedence (after Hoiem, Chodpathumwan & Dai, "Diagnosing Error in Object
  Detectors", ECCV 2012, who use the same 0.1 / 0.5 overlaps; their "similar" and "other"
  objects are one ``wrong_class`` here):

  1. ``correct``: a VOC true positive (IoU >= ``iou_threshold`` with a ground truth of its
     class not claimed by a higher-scoring detection);
  2. ``ignored``: its best ground truth of its class is ``difficult`` (VOC ignores it);
  3. ``duplicate``: IoU >= ``iou_threshold`` with a ground truth of its class that a
     higher-scoring detection already claimed;
  4. ``localisation``: best IoU with a ground truth of its class in ``[loc_iou, iou_threshold)``;
  5. ``wrong_class``: IoU >= ``loc_iou`` with a ground truth of another class;
  6. ``background``: IoU < ``loc_iou`` with every ground truth of its image.

  Ground truths (not difficult) that no ``correct`` detection claimed are ``missed``.
* :func:`confusion_matrix`: ``(K + 1, K + 1)`` counts, row = true class, column = predicted
  class, ``0`` = background on both axes (rules in its docstring).
* :func:`ap_by_size`: AP restricted to small / medium / large objects (COCO's areas), with
  COCO's rule: ground truths outside the range are ignored, and so are the unmatched
  detections outside it.
* :func:`worst_images`: images ranked by their number of errors (see the function).
"""
import numpy as np

from frcnn_lib.runtime.errors import FrcnnError
from frcnn_lib.evaluation._inputs import check_lists, check_num_classes, flatten
from frcnn_lib.evaluation.voc import (_best_ground_truth, _classify, _pair_iou, _per_class,
                                      _same_image_and_class_pairs, evaluate_voc)

ERROR_TYPES = ("correct", "ignored", "duplicate", "localisation", "wrong_class", "background")

# COCO's object sizes, by area in pixels (cocoapi PythonAPI/pycocotools/cocoeval.py, Params.areaRng).
SIZE_RANGES = {"small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, np.inf)}


def _check_iou(name, value):
    if not isinstance(value, (int, float, np.number)) or not 0.0 < value <= 1.0:
        raise FrcnnError(f"{name} must be in (0, 1], got {value!r}")
    return float(value)


def _inputs(detections, ground_truths, num_classes, score_threshold=None):
    num_classes = check_num_classes(num_classes)
    check_lists(detections, ground_truths)
    det = flatten(detections, "detections", num_classes, with_scores=True)
    gt = flatten(ground_truths, "ground_truths", num_classes, flag_key="difficult")
    if score_threshold is not None:
        keep = det.scores >= score_threshold
        det = det._replace(image=det.image[keep], boxes=det.boxes[keep], labels=det.labels[keep],
                           scores=det.scores[keep],
                           offsets=np.concatenate([[0], np.cumsum(np.bincount(
                               det.image[keep], minlength=len(det.offsets) - 1))]))
    return num_classes, det, gt


def precision_recall_curves(detections, ground_truths, num_classes, iou_threshold=0.5,
                            use_07_metric=True):
    """Per-class precision/recall curves under the VOC rules of ``evaluate_voc``.

    Returns:
      ``{class_id: {"precision": (n,), "recall": (n,), "scores": (n,), "AP": float,
      "num_ground_truths": int}}`` for ``class_id`` in ``1..K``; the points follow the
      class's detections in descending score order (difficult matches removed), and
      ``AP == voc_ap(recall, precision, use_07_metric) == evaluate_voc(...)["AP"][class_id]``.
    """
    result = evaluate_voc(detections, ground_truths, num_classes, iou_threshold, use_07_metric)
    return {c: {"precision": result["precision"][c], "recall": result["recall"][c],
                "scores": result["scores"][c], "AP": result["AP"][c],
                "num_ground_truths": result["num_ground_truths"][c]}
            for c in range(1, num_classes + 1)}


def _best_other_class_iou(det, gt):
    """``(D,)`` highest IoU of each detection with a ground truth of its image and another class."""
    anyclass = lambda flat: flat._replace(labels=np.zeros_like(flat.labels))  # noqa: E731
    pair_det, pair_gt, _ = _same_image_and_class_pairs(anyclass(det), anyclass(gt), 0)
    best = np.zeros(len(det.labels))
    other = det.labels[pair_det] != gt.labels[pair_gt]
    np.maximum.at(best, pair_det[other], _pair_iou(det.boxes[pair_det[other]], gt.boxes[pair_gt[other]]))
    return best


def _split(flat, values):
    return [values[flat.offsets[i]:flat.offsets[i + 1]] for i in range(len(flat.offsets) - 1)]


def error_breakdown(detections, ground_truths, num_classes, iou_threshold=0.5, loc_iou=0.1,
                    score_threshold=0.5):
    """Every detection with ``score >= score_threshold`` typed (module docstring), and the misses.

    Returns:
      dict with ``"types"``: list (one per image) of ``(n,)`` int arrays, indices into
      :data:`ERROR_TYPES` (``-1`` for detections below the score threshold);
      ``"missed"``: list of ``(g,)`` bool arrays (True: not difficult and not found);
      ``"counts"``: ``{type: int}`` over the dataset, plus ``"missed"``.
    """
    iou_threshold, loc_iou = _check_iou("iou_threshold", iou_threshold), _check_iou("loc_iou", loc_iou)
    if loc_iou > iou_threshold:
        raise FrcnnError(f"loc_iou ({loc_iou}) must not exceed iou_threshold ({iou_threshold})")
    num_classes, all_det, gt = _inputs(detections, ground_truths, num_classes)
    kept = all_det.scores >= score_threshold
    _, det, _ = _inputs(detections, ground_truths, num_classes, score_threshold)

    ovmax, jmax = _best_ground_truth(det, gt, num_classes)      # same class
    jmatch = np.where(ovmax >= iou_threshold, jmax, -1)
    order = np.lexsort((-det.scores, det.labels))
    tp_sorted, _, ignored_sorted = _classify(det, gt, jmatch, order)
    tp, ignored = np.zeros(len(order), bool), np.zeros(len(order), bool)
    tp[order], ignored[order] = tp_sorted, ignored_sorted
    other = _best_other_class_iou(det, gt)

    kind = np.select(
        [tp, ignored, ovmax >= iou_threshold, ovmax >= loc_iou, other >= loc_iou],
        [0, 1, 2, 3, 4], default=5)
    types = np.full(len(all_det.labels), -1, np.int64)
    types[kept] = kind
    found = np.zeros(len(gt.labels), bool)
    found[jmatch[tp]] = True
    missed = ~found & ~gt.flag
    counts = {name: int(np.sum(kind == t)) for t, name in enumerate(ERROR_TYPES)}
    counts["missed"] = int(missed.sum())
    return {"types": _split(all_det, types), "missed": _split(gt, missed), "counts": counts}


def confusion_matrix(detections, ground_truths, num_classes, iou_threshold=0.5, score_threshold=0.5):
    """``(K + 1, K + 1)`` int counts: row = true class, column = predicted class, 0 = background.

    Among the detections with ``score >= score_threshold``, each takes the ground truth of its
    image, of any class, with the highest IoU.  If that IoU is ``>= iou_threshold`` and no
    higher-scoring detection took the same ground truth, it counts at ``(gt class, det
    class)``: the diagonal holds correct detections, the rest confusions.  Otherwise (nothing
    overlaps enough, or a duplicate) it counts at ``(0, det class)``: a false alarm on
    background.  Every ground truth that no detection took counts at ``(gt class, 0)``: a miss.
    Difficult ground truths and the detections that take them are left out.  ``(0, 0)`` is 0.
    """
    iou_threshold = _check_iou("iou_threshold", iou_threshold)
    num_classes, det, gt = _inputs(detections, ground_truths, num_classes, score_threshold)
    anyclass = lambda flat: flat._replace(labels=np.zeros_like(flat.labels))  # noqa: E731
    ovmax, jmax = _best_ground_truth(anyclass(det), anyclass(gt), 0)
    jmatch = np.where(ovmax >= iou_threshold, jmax, -1)
    order = np.argsort(-det.scores, kind="stable")
    tp_sorted, _, ignored_sorted = _classify(det, gt, jmatch[order], np.arange(len(order)))
    taken, ignored = np.zeros(len(order), bool), np.zeros(len(order), bool)
    taken[order], ignored[order] = tp_sorted, ignored_sorted
    matrix = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    np.add.at(matrix, (gt.labels[jmatch[taken]], det.labels[taken]), 1)
    np.add.at(matrix, (0, det.labels[~taken & ~ignored]), 1)
    found = np.zeros(len(gt.labels), bool)
    found[jmatch[taken]] = True
    np.add.at(matrix, (gt.labels[~found & ~gt.flag], 0), 1)
    return matrix


def ap_by_size(detections, ground_truths, num_classes, iou_threshold=0.5, use_07_metric=False,
               ranges=None):
    """mAP and per-class AP on the objects of each size range (COCO's rule, VOC matching).

    For range ``[lo, hi)`` of box area ``(x2 - x1) * (y2 - y1)`` in pixels (default
    :data:`SIZE_RANGES`, COCO's small < 32², medium, large >= 96²): ground truths outside it
    are treated like difficult ones (a detection matching one is ignored), and so are the
    detections outside it that match no ground truth of the range.  Detections and
    ground truths inside are scored as in ``evaluate_voc``.

    Returns:
      ``{name: {"mAP": float, "AP": {class_id: float}, "num_ground_truths": int}}``; a range
      without ground truth has NaN APs.
    """
    iou_threshold = _check_iou("iou_threshold", iou_threshold)
    num_classes, det, gt = _inputs(detections, ground_truths, num_classes)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    gt_area, det_area = area(gt.boxes), area(det.boxes)
    ovmax, jmax = _best_ground_truth(det, gt, num_classes)
    jmax = np.where(ovmax >= iou_threshold, jmax, -1)
    order = np.lexsort((-det.scores, det.labels))
    out = {}
    for name, (lo, hi) in (ranges or SIZE_RANGES).items():
        inside = (gt_area >= lo) & (gt_area < hi)
        ranged = gt._replace(flag=gt.flag | ~inside)
        tp, fp, ignored = _classify(det, ranged, jmax, order)
        det_outside = ~((det_area >= lo) & (det_area < hi))[order]
        ignored = ignored | (fp & det_outside)
        fp = fp & ~ignored
        per_class = _per_class(det.labels[order], det.scores[order], tp, fp, ignored, ranged,
                               num_classes, use_07_metric)
        aps = [ap for ap in per_class["AP"].values() if not np.isnan(ap)]
        out[name] = {"mAP": float(np.mean(aps)) if aps else float("nan"), "AP": per_class["AP"],
                     "num_ground_truths": int(sum(per_class["num_ground_truths"].values()))}
    return out


def worst_images(detections, ground_truths, num_classes, k=5, iou_threshold=0.5, loc_iou=0.1,
                 score_threshold=0.5):
    """The ``k`` images with the most errors at ``score_threshold``, worst first.

    An image's errors are its false positives (detections typed ``duplicate``,
    ``localisation``, ``wrong_class`` or ``background`` by :func:`error_breakdown`) plus its
    missed ground truths; ties go to the lower image index.

    Returns:
      list of dicts ``{"image": int, "errors": int, "false_positives": int, "missed": int,
      "counts": {type: int}}``.
    """
    breakdown = error_breakdown(detections, ground_truths, num_classes, iou_threshold, loc_iou,
                                score_threshold)
    rows = []
    for i, (types, missed) in enumerate(zip(breakdown["types"], breakdown["missed"])):
        counts = {name: int(np.sum(types == t)) for t, name in enumerate(ERROR_TYPES)}
        false_positives = sum(counts[n] for n in ERROR_TYPES[2:])
        rows.append({"image": i, "errors": false_positives + int(missed.sum()),
                     "false_positives": false_positives, "missed": int(missed.sum()), "counts": counts})
    rows.sort(key=lambda r: (-r["errors"], r["image"]))
    return rows[:k]
