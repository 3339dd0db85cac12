"""evaluate_voc / voc_ap: hand-computed cases, a loop-by-loop devkit reference, bad input."""
import math

import numpy as np
import pytest

from frcnn_lib.runtime.errors import FrcnnError
from frcnn_lib.evaluation import evaluate_voc, voc_ap


def det(boxes, scores, labels):
    return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "scores": np.asarray(scores, np.float32), "labels": np.asarray(labels, np.int64)}


def gt(boxes, labels, difficult=None):
    out = {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
           "labels": np.asarray(labels, np.int64)}
    if difficult is not None:
        out["difficult"] = np.asarray(difficult, bool)
    return out


NO_DETECTIONS = det([], [], [])


# ---------------------------------------------------------------- hand-computed cases

def three_gts_four_detections():
    # Image 0: A = [0,0,10,10], B = [20,20,40,40]; image 1: C = [0,0,20,20]; all class 1.
    #   .9 img0 = A                 IoU(A) = 1                   -> TP
    #   .8 img0 = [0,0,10,8]        IoU(A) = 80/100 = .8, A taken -> FP (duplicate)
    #   .7 img1 = [0,0,20,10]       IoU(C) = 200/400 = .5 >= .5  -> TP (threshold inclusive)
    #   .6 img0 = [100,100,110,110] no overlap                   -> FP
    # npos = 3; cumulative TP 1,1,2,2 and FP 0,1,1,2:
    #   recall    1/3, 1/3, 2/3, 2/3
    #   precision 1,   1/2, 2/3, 1/2
    detections = [det([[0, 0, 10, 10], [0, 0, 10, 8], [100, 100, 110, 110]], [.9, .8, .6], [1, 1, 1]),
                  det([[0, 0, 20, 10]], [.7], [1])]
    ground_truths = [gt([[0, 0, 10, 10], [20, 20, 40, 40]], [1, 1]), gt([[0, 0, 20, 20]], [1])]
    return detections, ground_truths


def test_duplicate_detection_is_a_false_positive_and_metrics_differ():
    detections, ground_truths = three_gts_four_detections()
    r07 = evaluate_voc(detections, ground_truths, num_classes=1, use_07_metric=True)
    np.testing.assert_allclose(r07["recall"][1], [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(r07["precision"][1], [1, 1 / 2, 2 / 3, 1 / 2])
    assert (r07["num_true_positives"][1], r07["num_false_positives"][1]) == (2, 2)
    # VOC07: t = 0, .1, .2, .3 -> 1 (4 points); t = .4, .5, .6 -> 2/3 (3 points);
    # t = .7 ... 1 -> no recall that high -> 0.  AP = (4 * 1 + 3 * 2/3) / 11 = 6/11.
    assert r07["AP"][1] == pytest.approx(6 / 11)
    assert r07["mAP"] == pytest.approx(6 / 11)
    # VOC2010: envelope 1 on (0, 1/3], 2/3 on (1/3, 2/3]: AP = 1/3 + 2/9 = 5/9.
    r10 = evaluate_voc(detections, ground_truths, num_classes=1, use_07_metric=False)
    assert r10["AP"][1] == pytest.approx(5 / 9)


def test_difficult_ground_truth_is_neither_miss_nor_false_positive():
    # Class 1: A = [0,0,10,10] normal, D = [50,50,70,70] difficult; npos = 1.
    #   .9 = D -> matched a difficult box -> ignored;  .8 = A -> TP.
    # Curve: one point (recall 1, precision 1) -> AP 1 for both metrics.
    # Counting D as a GT would give precision 0 first / recall 1/2 at most.
    detections = [det([[50, 50, 70, 70], [0, 0, 10, 10]], [.9, .8], [1, 1])]
    ground_truths = [gt([[0, 0, 10, 10], [50, 50, 70, 70]], [1, 1], difficult=[False, True])]
    for use_07 in (True, False):
        result = evaluate_voc(detections, ground_truths, 1, use_07_metric=use_07)
        assert result["AP"][1] == pytest.approx(1.0)
        np.testing.assert_allclose(result["precision"][1], [1.0])
        assert result["num_ground_truths"][1] == 1 and result["num_difficult"][1] == 1
        assert (result["num_true_positives"][1], result["num_false_positives"][1]) == (1, 0)
    # An undetected difficult box is not a miss either: only A detected -> AP 1.
    only_a = [det([[0, 0, 10, 10]], [.8], [1])]
    assert evaluate_voc(only_a, ground_truths, 1)["AP"][1] == pytest.approx(1.0)


def test_class_without_detections_has_ap_zero_and_without_gt_nan():
    # Class 1 perfect (AP 1), class 2 has a GT but no detection (AP 0), class 3 has no GT
    # (AP NaN, left out of the mAP even though it has a false positive): mAP = (1 + 0) / 2.
    detections = [det([[0, 0, 10, 10], [30, 30, 40, 40]], [.9, .5], [1, 3])]
    ground_truths = [gt([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 2])]
    result = evaluate_voc(detections, ground_truths, num_classes=3)
    assert result["AP"][1] == 1.0 and result["AP"][2] == 0.0 and math.isnan(result["AP"][3])
    assert result["mAP"] == pytest.approx(0.5)
    assert result["num_false_positives"][3] == 1


@pytest.mark.parametrize("use_07", [True, False])
def test_perfect_detections_score_one(use_07):
    rng = np.random.default_rng(1)
    ground_truths, detections = [], []
    for _ in range(5):
        xy = rng.uniform(0, 100, (4, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 50, (4, 2))], axis=1)
        labels = rng.integers(1, 4, 4)
        ground_truths.append(gt(boxes, labels))
        detections.append(det(boxes, rng.uniform(0, 1, 4), labels))
    result = evaluate_voc(detections, ground_truths, 3, use_07_metric=use_07)
    assert result["mAP"] == pytest.approx(1.0)


def test_empty_inputs():
    # No detections at all: AP 0 where there is GT.  Images without GT and (0, 4) arrays work.
    ground_truths = [gt([[0, 0, 10, 10]], [2]), gt(np.zeros((0, 4)), [])]
    result = evaluate_voc([NO_DETECTIONS, NO_DETECTIONS], ground_truths, 2)
    assert result["AP"][2] == 0.0 and math.isnan(result["AP"][1]) and result["mAP"] == 0.0
    # Nothing anywhere: every AP NaN, mAP NaN.  Plain lists work too.
    empty = evaluate_voc([{"boxes": [], "scores": [], "labels": []}],
                         [{"boxes": [], "labels": []}], 2)
    assert math.isnan(empty["mAP"])
    assert math.isnan(evaluate_voc([], [], 1)["mAP"])


def test_best_ground_truth_taken_means_false_positive_as_in_devkit():
    # A = [0,0,10,10], B = [0,0,10,12] (IoU(A, B) = 100/120).  Both detections equal A:
    # the second one's best GT is A again (IoU 1 > 0.83), already matched -> FP, even
    # though B is free and would qualify (COCO would match it).  npos 2, TP 1, FP 1.
    detections = [det([[0, 0, 10, 10], [0, 0, 10, 10]], [.9, .8], [1, 1])]
    ground_truths = [gt([[0, 0, 10, 10], [0, 0, 10, 12]], [1, 1])]
    result = evaluate_voc(detections, ground_truths, 1, use_07_metric=False)
    assert (result["num_true_positives"][1], result["num_false_positives"][1]) == (1, 1)
    assert result["AP"][1] == pytest.approx(0.5)  # recall 1/2 at precision 1


def test_score_ties_keep_input_order():
    # Equal scores: image 0's FP comes before image 1's TP (stable sort, as MATLAB's).
    # precision 0, 1/2; recall 0, 1 -> VOC2010 AP = 1 * 1/2.
    detections = [det([[50, 50, 60, 60]], [.5], [1]), det([[0, 0, 10, 10]], [.5], [1])]
    ground_truths = [gt(np.zeros((0, 4)), []), gt([[0, 0, 10, 10]], [1])]
    assert evaluate_voc(detections, ground_truths, 1, use_07_metric=False)["AP"][1] == 0.5


def test_iou_threshold_is_inclusive():
    # IoU([0,0,10,5], [0,0,10,10]) = 50/100 = 0.5 exactly.
    detections = [det([[0, 0, 10, 5]], [1.0], [1])]
    ground_truths = [gt([[0, 0, 10, 10]], [1])]
    assert evaluate_voc(detections, ground_truths, 1, iou_threshold=0.5)["mAP"] == 1.0
    assert evaluate_voc(detections, ground_truths, 1, iou_threshold=0.51)["mAP"] == 0.0


def test_voc_ap_by_hand():
    # Three TPs out of 10 GTs at precision 1: recall .1 .2 .3.  VOC07 points t = 0 .. .3
    # reach it (t = k / 10 exactly, so recall 3/10 counts at t = .3): AP = 4/11.
    assert voc_ap([.1, .2, .3], [1, 1, 1], True) == pytest.approx(4 / 11)
    assert voc_ap([.1, .2, .3], [1, 1, 1], False) == pytest.approx(0.3)
    # Non-monotone precision: envelope 1, .8, .8 -> VOC2010 .25 * 1 + .25 * .8 + .5 * .8.
    assert voc_ap([.25, .5, 1.0], [1.0, .5, .8], False) == pytest.approx(.25 + .2 + .4)
    # VOC07: t = 0, .1, .2 -> 1; t = .3 ... 1 (8 points) -> .8: (3 + 6.4) / 11.
    assert voc_ap([.25, .5, 1.0], [1.0, .5, .8], True) == pytest.approx(9.4 / 11)
    assert voc_ap([], [], True) == 0.0 and voc_ap([], [], False) == 0.0


@pytest.mark.parametrize("recall, precision", [([.5, .2], [1, 1]), ([.1], [1, 1]),
                                               ([.1, .2], [1, np.nan])])
def test_voc_ap_rejects_bad_curves(recall, precision):
    with pytest.raises(FrcnnError):
        voc_ap(recall, precision)


# ---------------------------------------------- independent reference: the devkit loop

def reference_ap(recall, precision, use_07_metric):
    if use_07_metric:
        ap = 0.0
        for k in range(11):
            above = [p for r, p in zip(recall, precision) if r >= k / 10]
            ap += (max(above) if above else 0.0) / 11
        return ap
    mrec, mpre = [0.0] + list(recall) + [1.0], [0.0] + list(precision) + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec))
               if mrec[i] != mrec[i - 1])


def reference_voc(detections, ground_truths, num_classes, threshold, use_07_metric):
    """Per-detection loop of VOCevaldet.m, in plain Python; returns {class: (AP, TP, FP)}."""
    out = {}
    for c in range(1, num_classes + 1):
        gts, npos = {}, 0
        for i, g in enumerate(ground_truths):
            flags = g.get("difficult", [False] * len(g["labels"]))
            rows = [(list(map(float, b)), bool(d)) for b, l, d in zip(g["boxes"], g["labels"], flags)
                    if l == c]
            gts[i] = {"BB": [r[0] for r in rows], "diff": [r[1] for r in rows],
                      "det": [False] * len(rows)}
            npos += sum(not r[1] for r in rows)
        items = [(float(s), i, list(map(float, b)))
                 for i, d in enumerate(detections)
                 for b, s, l in zip(d["boxes"], d["scores"], d["labels"]) if l == c]
        items.sort(key=lambda item: -item[0])  # stable, like MATLAB's sort
        tp, fp = [], []
        for _, i, bb in items:
            ovmax, jmax = -math.inf, -1
            for j, bbgt in enumerate(gts[i]["BB"]):
                iw = min(bb[2], bbgt[2]) - max(bb[0], bbgt[0])
                ih = min(bb[3], bbgt[3]) - max(bb[1], bbgt[1])
                if iw > 0 and ih > 0:
                    inter = iw * ih
                    ua = (bb[2] - bb[0]) * (bb[3] - bb[1]) + (bbgt[2] - bbgt[0]) * (bbgt[3] - bbgt[1]) - inter
                    if inter / ua > ovmax:
                        ovmax, jmax = inter / ua, j
            t = f = 0
            if ovmax >= threshold:
                if not gts[i]["diff"][jmax]:
                    if not gts[i]["det"][jmax]:
                        t, gts[i]["det"][jmax] = 1, True
                    else:
                        f = 1
            else:
                f = 1
            tp.append(t)
            fp.append(f)
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        if npos == 0:
            out[c] = (math.nan, sum(tp), sum(fp))
            continue
        recall = [x / npos for x in ctp]
        precision = [x / max(x + y, 1e-12) for x, y in zip(ctp, cfp)]
        out[c] = (reference_ap(recall, precision, use_07_metric), sum(tp), sum(fp))
    return out


def random_dataset(rng, num_images, num_classes):
    """Integer-grid boxes (exact IoU ties), duplicates, difficult flags and tied scores."""
    detections, ground_truths = [], []
    for _ in range(num_images):
        g = int(rng.integers(0, 5))
        xy = rng.integers(0, 20, (g, 2))
        gt_boxes = np.concatenate([xy, xy + rng.integers(1, 8, (g, 2))], axis=1)
        gt_labels = rng.integers(1, num_classes + 1, g)
        ground_truths.append(gt(gt_boxes, gt_labels, difficult=rng.random(g) < 0.25))
        n = int(rng.integers(0, 9))
        xy = rng.integers(0, 20, (n, 2))
        boxes = np.concatenate([xy, xy + rng.integers(1, 8, (n, 2))], axis=1)
        labels = rng.integers(1, num_classes + 1, n)
        if g:  # copies of ground truths, some shifted by one pixel, some repeated
            pick = rng.integers(0, g, n)
            copy = rng.random(n) < 0.5
            boxes[copy] = gt_boxes[pick[copy]] + rng.integers(-1, 2, (int(copy.sum()), 4))
            boxes[copy, 2:] = np.maximum(boxes[copy, 2:], boxes[copy, :2] + 1)
            labels[copy] = np.where(rng.random(int(copy.sum())) < 0.8, gt_labels[pick[copy]],
                                    labels[copy])
        detections.append(det(boxes, rng.integers(0, 6, n) / 5, labels))
    return detections, ground_truths


@pytest.mark.parametrize("seed", range(40))
def test_matches_devkit_reference_on_random_data(seed):
    rng = np.random.default_rng(seed)
    num_classes = int(rng.integers(1, 4))
    detections, ground_truths = random_dataset(rng, int(rng.integers(1, 12)), num_classes)
    for threshold in (0.3, 0.5, 0.7):
        for use_07 in (True, False):
            ours = evaluate_voc(detections, ground_truths, num_classes, threshold, use_07)
            expected = reference_voc(detections, ground_truths, num_classes, threshold, use_07)
            for c, (ap, tp, fp) in expected.items():
                assert ours["AP"][c] == pytest.approx(ap, abs=1e-12, nan_ok=True), (c, threshold)
                assert ours["num_true_positives"][c] == tp
                assert ours["num_false_positives"][c] == fp
            aps = [v[0] for v in expected.values() if not math.isnan(v[0])]
            assert ours["mAP"] == pytest.approx(np.mean(aps) if aps else math.nan, nan_ok=True)


# ------------------------------------------------------- ap_fn: the AP rule is replaceable

def test_ap_fn_voc_ap_gives_identical_results():
    # Notebook 10 evaluates with the learner's AP through ap_fn: the library's own voc_ap
    # there must change nothing, bit for bit.
    for seed in range(6):
        rng = np.random.default_rng(100 + seed)
        detections, ground_truths = random_dataset(rng, 10, 3)
        for threshold, use_07 in ((0.5, True), (0.5, False), (0.7, True)):
            default = evaluate_voc(detections, ground_truths, 3, threshold, use_07)
            same = evaluate_voc(detections, ground_truths, 3, threshold, use_07, ap_fn=voc_ap)
            assert default.keys() == same.keys()
            np.testing.assert_array_equal(same["mAP"], default["mAP"])  # NaN == NaN here
            for key in ("AP", "num_ground_truths", "num_true_positives", "num_false_positives"):
                assert same[key].keys() == default[key].keys()
                for c in default[key]:
                    np.testing.assert_array_equal(same[key][c], default[key][c])
            for key in ("precision", "recall", "scores"):
                for c in default[key]:
                    np.testing.assert_array_equal(same[key][c], default[key][c])


def test_ap_fn_is_called_instead_of_voc_ap():
    detections, ground_truths = three_gts_four_detections()
    # A second class with ground truth and a third without (its AP stays NaN, ap_fn not called).
    detections[1] = det([[0, 0, 20, 10], [5, 5, 9, 9]], [.7, .4], [1, 2])
    ground_truths[1] = gt([[0, 0, 20, 20], [5, 5, 9, 9]], [1, 2])
    default = evaluate_voc(detections, ground_truths, num_classes=3, use_07_metric=False)
    calls = []

    def constant_ap(recall, precision, use_07_metric):
        calls.append((np.array(recall), np.array(precision), use_07_metric))
        return np.float32(0.25)          # not a Python float: evaluate_voc converts it

    ours = evaluate_voc(detections, ground_truths, num_classes=3, use_07_metric=False,
                        ap_fn=constant_ap)
    assert [c[2] for c in calls] == [False, False]          # classes 1 and 2, use_07_metric passed on
    for (recall, precision, _), c in zip(calls, (1, 2)):  # the curves are evaluate_voc's
        np.testing.assert_array_equal(recall, default["recall"][c])
        np.testing.assert_array_equal(precision, default["precision"][c])
    assert ours["AP"][1] == ours["AP"][2] == 0.25 and type(ours["AP"][1]) is float
    assert math.isnan(ours["AP"][3])
    assert ours["mAP"] == 0.25 != default["mAP"]
    assert ours["num_true_positives"] == default["num_true_positives"]
    # An independent AP (the devkit loop above) gives the library's numbers through ap_fn too.
    for use_07 in (True, False):
        loop = evaluate_voc(detections, ground_truths, 3, use_07_metric=use_07, ap_fn=reference_ap)
        lib = evaluate_voc(detections, ground_truths, 3, use_07_metric=use_07)
        assert loop["mAP"] == pytest.approx(lib["mAP"], abs=1e-12)


# --------------------------------------------------------------------------- bad input

GOOD_GT = gt([[0, 0, 10, 10]], [1])
GOOD_DET = det([[0, 0, 10, 10]], [.9], [1])


@pytest.mark.parametrize("detections, ground_truths, message", [
    ([GOOD_DET, GOOD_DET], [GOOD_GT], "detections has 2 images but ground_truths has 1"),
    ({"boxes": []}, [GOOD_GT], "one dict per image"),
    ([GOOD_DET, [1, 2]], [GOOD_GT, GOOD_GT], "detections[1] must be a dict"),
    ([GOOD_DET, {"boxes": [[0, 0, 1, 1]], "labels": [1]}], [GOOD_GT] * 2,
     "detections[1] has no 'scores'"),
    ([GOOD_DET, det(np.zeros((2, 4)), [.1, .2], [1, 1]) | {"boxes": np.zeros((2, 5))}],
     [GOOD_GT] * 2, "detections[1]['boxes'] must have shape (n, 4)"),
    ([det([[0, 0, 1, 1]], [.1, .2], [1])], [GOOD_GT], "detections[0]['scores'] must have shape (1,)"),
    ([det([[0, 0, 1, 1]], [.1], [0])], [GOOD_GT], "detections[0]['labels'] row 0: expected integers in 1..2"),
    ([GOOD_DET] * 3, [GOOD_GT, GOOD_GT, gt([[0, 0, 1, 1], [0, 0, 2, 2]], [1, 3])],
     "ground_truths[2]['labels'] row 1"),
    ([GOOD_DET], [gt([[0, 0, 1, 1]], [-1])], "strip the -1 padding"),
    ([{"boxes": [[0, 0, 1, 1]], "scores": [.1], "labels": [1.5]}], [GOOD_GT],
     "detections[0]['labels'] row 0"),
    ([GOOD_DET] * 2, [GOOD_GT, gt([[0, 0, 1, 1], [0, np.nan, 1, 1]], [1, 1])],
     "ground_truths[1]['boxes'] row 1: expected finite"),
    ([GOOD_DET, det([[0, 0, 1, 1]], [np.inf], [1])], [GOOD_GT] * 2,
     "detections[1]['scores'] row 0: expected finite"),
    ([GOOD_DET], [gt([[0, 0, 1, 1]], [1], [True, False])], "ground_truths[0]['difficult'] must have shape"),
    ([{"boxes": [["a", 0, 1, 1]], "scores": [1], "labels": [1]}], [GOOD_GT],
     "detections[0]['boxes'] is not a numeric"),
])
def test_bad_input_names_image_and_field(detections, ground_truths, message):
    with pytest.raises(FrcnnError) as error:
        evaluate_voc(detections, ground_truths, num_classes=2)
    assert message in str(error.value)
    assert isinstance(error.value, ValueError)


@pytest.mark.parametrize("kwargs", [{"num_classes": 0}, {"num_classes": 2.5},
                                    {"num_classes": 2, "iou_threshold": 0.0},
                                    {"num_classes": 2, "iou_threshold": 1.5}])
def test_bad_options(kwargs):
    with pytest.raises(FrcnnError):
        evaluate_voc([GOOD_DET], [GOOD_GT], **kwargs)


def test_ap_fn_must_be_callable():
    with pytest.raises(FrcnnError, match="ap_fn must be a function"):
        evaluate_voc([GOOD_DET], [GOOD_GT], num_classes=1, ap_fn=0.5)
