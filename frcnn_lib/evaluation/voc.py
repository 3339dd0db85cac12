"""Pascal VOC detection metric: per-class average precision (AP) and their mean (mAP).

Shape glossary: ``I`` images, ``K`` object classes (labels ``1..K``), ``D`` detections
and ``G`` ground-truth boxes over the dataset, ``P`` (detection, ground truth) pairs of
the same image and class, ``n`` points of a precision/recall curve.

Matching (the rules of the VOC devkit's ``VOCevaldet.m``), for each class separately:

1. All detections of the class over the dataset are sorted by descending score.  Ties
   keep input order (image index, then position in the image), as MATLAB's stable
   ``sort`` does in the devkit.
2. In that order, each detection takes the ground truth of its image and class with the
   highest IoU (the first one on ties), matched or not.  If that IoU ``>= iou_threshold``:
   a difficult ground truth makes the detection *ignored* (neither TP nor FP); an
   unmatched one makes it a true positive (TP) and marks the ground truth matched; an
   already matched one makes it a false positive (FP, a duplicate).  Otherwise FP.
   Boxes are continuous (no ``+1`` in widths), so IoU is plain ``|A ∩ B| / |A ∪ B|``;
   the VOC reader's ``xmin - 1, ymin - 1`` conversion makes it equal to the devkit's
   ``+1`` IoU on raw annotations.  ``>=`` is the MATLAB devkit's rule; the Python port of
   py-faster-rcnn / Detectron uses ``>``, which differs only at exact equality.
3. ``npos`` = number of non-difficult ground truths of the class.  After the ``j``-th
   detection (ignored ones dropped from the curve, which leaves AP unchanged):
   ``recall_j = TP_j / npos`` and ``precision_j = TP_j / (TP_j + FP_j)``.

Average precision from the curve (``p_interp(r) = max {precision_j : recall_j >= r}``,
the monotone envelope):

* VOC2007, 11-point: ``AP = 1/11 * sum_{t in 0, 0.1, ..., 1} p_interp(t)`` (0 where no
  point has ``recall >= t``).  The thresholds are ``k / 10`` exactly, so a recall of 3/10
  counts at ``t = 0.3``; the devkit's ``0:0.1:1`` makes ``t = 0.30000000000000004`` and
  misses it, a difference only at such exact ties.
* VOC2010+: the area under the envelope,
  ``AP = sum_j (recall_j - recall_{j-1}) * p_interp(recall_j)`` with ``recall_0 = 0``.

A class without non-difficult ground truth has ``npos = 0`` and no recall: its AP is NaN
and it is left out of the mAP (which is NaN if no class has ground truth).  The devkit
never meets this case (every VOC class has positives); its Python ports divide by zero
and report 0 or a meaningless number.

The matching is vectorised over the whole dataset: IoU is computed for the ``P`` pairs
only, and "first detection of each ground truth in score order" is a ``np.unique``.
"""
import numpy as np

from frcnn_lib.runtime.errors import FrcnnError
from frcnn_lib.evaluation._inputs import check_lists, check_num_classes, flatten

_ELEVEN_POINTS = np.arange(11) / 10.0  # exactly 0.0, 0.1, ..., 1.0 as k / 10


def voc_ap(recall, precision, use_07_metric=True):
    """Average precision of one precision/recall curve.

    Args:
      recall: ``(n,)`` non-decreasing recalls in ``[0, 1]``, one per detection in score order.
      precision: ``(n,)`` the precisions at the same points.
      use_07_metric: True: VOC2007 11-point interpolated AP; False: VOC2010+ area under
        the interpolated (monotone) curve.  Formulas in the module docstring.

    Returns:
      AP as a float in ``[0, 1]``; 0.0 for an empty curve.
    """
    recall = np.asarray(recall, np.float64)
    precision = np.asarray(precision, np.float64)
    if recall.ndim != 1 or recall.shape != precision.shape:
        raise FrcnnError(f"recall and precision must be 1-D of the same length, got shapes "
                         f"{recall.shape} and {precision.shape}")
    if not (np.isfinite(recall).all() and np.isfinite(precision).all()):
        raise FrcnnError("recall and precision must be finite (no NaN: use 0 precision "
                         "where no detection was counted)")
    if np.any(np.diff(recall) < 0):
        raise FrcnnError("recall must be non-decreasing (cumulative, in score order)")
    if len(recall) == 0:
        return 0.0
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # max precision from j on
    if use_07_metric:
        first = np.searchsorted(recall, _ELEVEN_POINTS, side="left")  # first recall >= t
        reached = first < len(recall)
        return float(envelope[first[reached]].sum() / 11.0)
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * envelope))


def _pair_iou(boxes_a, boxes_b):
    """Elementwise IoU of ``(P, 4)`` and ``(P, 4)`` xyxy -> ``(P,)``; 0 for empty unions."""
    inter_w = np.minimum(boxes_a[:, 2], boxes_b[:, 2]) - np.maximum(boxes_a[:, 0], boxes_b[:, 0])
    inter_h = np.minimum(boxes_a[:, 3], boxes_b[:, 3]) - np.maximum(boxes_a[:, 1], boxes_b[:, 1])
    inter = np.maximum(inter_w, 0.0) * np.maximum(inter_h, 0.0)

    def area(b):
        return np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)

    union = area(boxes_a) + area(boxes_b) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _same_image_and_class_pairs(det, gt, num_classes):
    """Every (detection, ground truth) pair of the same image and class.

    Returns ``pair_det (P,)`` sorted, ``pair_gt (P,)`` (ground truths of one detection in
    input order) and ``count (D,)`` candidate ground truths per detection.
    """
    gt_key = gt.image * (num_classes + 1) + gt.labels
    det_key = det.image * (num_classes + 1) + det.labels
    gt_order = np.argsort(gt_key, kind="stable")
    start = np.searchsorted(gt_key[gt_order], det_key, side="left")
    count = np.searchsorted(gt_key[gt_order], det_key, side="right") - start
    pair_det = np.repeat(np.arange(len(count)), count)
    first_pair = np.cumsum(count) - count
    rank = np.arange(len(pair_det)) - np.repeat(first_pair, count)  # position among candidates
    pair_gt = gt_order[np.repeat(start, count) + rank]
    return pair_det, pair_gt, count


def _best_ground_truth(det, gt, num_classes):
    """For each detection, the devkit's ``ovmax (D,)`` and ``jmax (D,)`` (-1: no candidate).

    ``jmax`` is the first ground truth reaching the highest IoU among those of the same
    image and class, whether already matched or not.
    """
    pair_det, pair_gt, count = _same_image_and_class_pairs(det, gt, num_classes)
    ovmax = np.full(len(count), -np.inf)
    jmax = np.full(len(count), -1, np.int64)
    if len(pair_det) == 0:
        return ovmax, jmax
    iou = _pair_iou(det.boxes[pair_det], gt.boxes[pair_gt])
    has = count > 0
    ovmax[has] = np.maximum.reduceat(iou, (np.cumsum(count) - count)[has])
    at_max = np.flatnonzero(iou == ovmax[pair_det])
    first = np.concatenate([[True], pair_det[at_max][1:] != pair_det[at_max][:-1]])
    jmax[pair_det[at_max[first]]] = pair_gt[at_max[first]]
    return ovmax, jmax


def _classify(det, gt, jmax, order):
    """TP / FP / ignored flags ``(D,)`` of the detections taken in ``order`` (score order)."""
    jmax = jmax[order]
    hit = jmax >= 0
    ignored = np.zeros(len(order), bool)
    ignored[hit] = gt.flag[jmax[hit]]  # best match is a difficult ground truth
    candidates = np.flatnonzero(hit & ~ignored)
    _, first = np.unique(jmax[candidates], return_index=True)  # first claim of each GT
    tp = np.zeros(len(order), bool)
    tp[candidates[first]] = True
    return tp, ~tp & ~ignored, ignored


def _class_curve(tp, fp, npos):
    """Cumulative ``recall (n,)``, ``precision (n,)`` of one class (ignored dets removed)."""
    ctp = np.cumsum(tp, dtype=np.float64)
    cfp = np.cumsum(fp, dtype=np.float64)
    recall = ctp / npos if npos > 0 else np.full(len(ctp), np.nan)
    precision = ctp / np.maximum(ctp + cfp, 1.0)  # ctp + cfp >= 1 on every kept point
    return recall, precision


def evaluate_voc(detections, ground_truths, num_classes, iou_threshold=0.5, use_07_metric=True,
                 ap_fn=None):
    """Pascal VOC mAP of ``detections`` against ``ground_truths`` (rules in module docstring).

    Args:
      detections: list (one per image) of dicts ``boxes (n, 4)`` xyxy, ``scores (n,)``,
        ``labels (n,)`` in ``1..num_classes``.
      ground_truths: list (one per image) of dicts ``boxes (g, 4)``, ``labels (g,)`` and
        optional ``difficult (g,)`` bool.
      num_classes: K, object classes (background excluded).
      iou_threshold: a detection matches a ground truth when IoU ``>= iou_threshold``.
      use_07_metric: VOC2007 11-point AP if True, else VOC2010+ area AP.
      ap_fn: optional ``ap_fn(recall (n,), precision (n,), use_07_metric) -> float``, called
        for each class with ground truth instead of :func:`voc_ap` (same arguments, its
        result converted with ``float``); the matching and the curves are unchanged.  None
        (the default) uses :func:`voc_ap`.  Notebook 10 passes the learner's AP here; passing
        ``voc_ap`` itself gives exactly the default result.

    Returns:
      dict with ``"mAP"`` (mean AP over classes with ground truth) and, per class id
      ``1..K``: ``"AP"`` (NaN without ground truth), ``"precision"``, ``"recall"`` and
      ``"scores"`` ``(n,)`` arrays in score order (ignored detections removed; recall NaN
      without ground truth), ``"num_ground_truths"`` (non-difficult), ``"num_difficult"``,
      ``"num_detections"``, ``"num_true_positives"``, ``"num_false_positives"``.

    Raises:
      FrcnnError: lists of different lengths, a missing field, a wrong shape, a label
        outside ``1..num_classes``, non-finite boxes or scores (the message names the
        image index and field); an ``ap_fn`` that is not callable.
    """
    num_classes = check_num_classes(num_classes)
    if ap_fn is not None and not callable(ap_fn):
        raise FrcnnError(f"ap_fn must be a function (recall, precision, use_07_metric) -> AP, "
                         f"got {type(ap_fn).__name__}")
    if not isinstance(iou_threshold, (int, float, np.number)) or not 0.0 < iou_threshold <= 1.0:
        raise FrcnnError(f"iou_threshold must be in (0, 1], got {iou_threshold!r}")
    check_lists(detections, ground_truths)
    det = flatten(detections, "detections", num_classes, with_scores=True)
    gt = flatten(ground_truths, "ground_truths", num_classes, flag_key="difficult")

    ovmax, jmax = _best_ground_truth(det, gt, num_classes)
    jmax[ovmax < iou_threshold] = -1
    order = np.lexsort((-det.scores, det.labels))  # by class, then by score; stable
    tp, fp, ignored = _classify(det, gt, jmax, order)
    per_class = _per_class(det.labels[order], det.scores[order], tp, fp, ignored, gt,
                           num_classes, use_07_metric, ap_fn)
    aps = [ap for ap in per_class["AP"].values() if not np.isnan(ap)]
    return {"mAP": float(np.mean(aps)) if aps else float("nan"), **per_class}


def _per_class(labels, scores, tp, fp, ignored, gt, num_classes, use_07_metric, ap_fn=None):
    """The per-class entries of :func:`evaluate_voc`'s result from the sorted ``(D,)`` flags;
    each class's AP is ``ap_fn(recall, precision, use_07_metric)`` (default :func:`voc_ap`)."""
    ap_fn = voc_ap if ap_fn is None else ap_fn
    bounds = np.searchsorted(labels, np.arange(1, num_classes + 2))  # class c: [c-1, c)
    npos = np.bincount(gt.labels[~gt.flag], minlength=num_classes + 1)
    ndiff = np.bincount(gt.labels[gt.flag], minlength=num_classes + 1)
    out = {key: {} for key in ("AP", "precision", "recall", "scores", "num_ground_truths",
                               "num_difficult", "num_detections", "num_true_positives",
                               "num_false_positives")}
    for c in range(1, num_classes + 1):
        rows = slice(bounds[c - 1], bounds[c])
        kept = ~ignored[rows]
        recall, precision = _class_curve(tp[rows][kept], fp[rows][kept], npos[c])
        out["AP"][c] = float(ap_fn(recall, precision, use_07_metric)) if npos[c] else float("nan")
        out["precision"][c], out["recall"][c] = precision, recall
        out["scores"][c] = scores[rows][kept]
        out["num_ground_truths"][c], out["num_difficult"][c] = int(npos[c]), int(ndiff[c])
        out["num_detections"][c] = int(rows.stop - rows.start)
        out["num_true_positives"][c] = int(tp[rows].sum())
        out["num_false_positives"][c] = int(fp[rows].sum())
    return out
