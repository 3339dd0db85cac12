"""frcnn_lib.evaluation.analysis: hand-computed cases and a loop-by-loop numpy reference."""
import numpy as np
import pytest

from frcnn_lib.runtime.errors import FrcnnError
from frcnn_lib.evaluation import evaluate_voc, voc_ap
from frcnn_lib.evaluation.analysis import (ERROR_TYPES, SIZE_RANGES, ap_by_size, confusion_matrix,
                                           error_breakdown, precision_recall_curves, worst_images)
from tests.reference import iou_pair


def det(boxes, scores, labels):
    return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "scores": np.asarray(scores, np.float32), "labels": np.asarray(labels, np.int64)}


def gt(boxes, labels, difficult=None):
    out = {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "labels": np.asarray(labels, np.int64)}
    if difficult is not None:
        out["difficult"] = np.asarray(difficult, bool)
    return out


def hand_case():
    # Image 0: A = class 1 [0,0,10,10], B = class 2 [20,20,40,40].
    #   d0 c1 .90 = A                  IoU(A) 1                      -> correct
    #   d1 c1 .80 [0,0,10,9]           IoU(A) .9, A claimed by d0    -> duplicate
    #   d2 c1 .70 [0,0,10,3]           IoU(A) .3 in [.1, .5)         -> localisation
    #   d3 c1 .60 = B                  class-1 IoU 0, IoU(B) 1       -> wrong_class
    #   d4 c2 .95 [100,100,110,110]    overlaps nothing              -> background
    #   d5 c1 .30 [50,50,60,60]        below the 0.5 score threshold -> -1
    #   B: no class-2 detection finds it -> missed.
    # Image 1: D = class 1 [0,0,10,10] difficult, E = class 2 [0,20,50,70].
    #   d6 c1 .90 = D -> ignored;  E -> missed.
    detections = [det([[0, 0, 10, 10], [0, 0, 10, 9], [0, 0, 10, 3], [20, 20, 40, 40],
                       [100, 100, 110, 110], [50, 50, 60, 60]], [.9, .8, .7, .6, .95, .3], [1, 1, 1, 1, 2, 1]),
                  det([[0, 0, 10, 10]], [.9], [1])]
    ground_truths = [gt([[0, 0, 10, 10], [20, 20, 40, 40]], [1, 2]),
                     gt([[0, 0, 10, 10], [0, 20, 50, 70]], [1, 2], difficult=[True, False])]
    return detections, ground_truths


def test_error_types_hand_case():
    detections, ground_truths = hand_case()
    out = error_breakdown(detections, ground_truths, num_classes=2)
    names = lambda types: [ERROR_TYPES[t] if t >= 0 else None for t in types]  # noqa: E731
    assert names(out["types"][0]) == ["correct", "duplicate", "localisation", "wrong_class", "background", None]
    assert names(out["types"][1]) == ["ignored"]
    assert [m.tolist() for m in out["missed"]] == [[False, True], [False, True]]
    assert out["counts"] == {"correct": 1, "ignored": 1, "duplicate": 1, "localisation": 1,
                             "wrong_class": 1, "background": 1, "missed": 2}


def test_error_thresholds_are_the_stated_ones():
    detections, ground_truths = hand_case()
    # loc_iou above d2's IoU 0.3: d2 becomes background (it overlaps nothing else by 0.35).
    out = error_breakdown(detections, ground_truths, num_classes=2, loc_iou=0.35)
    assert ERROR_TYPES[out["types"][0][2]] == "background"
    # score threshold 0.2 keeps d5, which overlaps nothing: background.
    out = error_breakdown(detections, ground_truths, num_classes=2, score_threshold=0.2)
    assert ERROR_TYPES[out["types"][0][5]] == "background"
    with pytest.raises(FrcnnError, match="loc_iou"):
        error_breakdown(detections, ground_truths, num_classes=2, loc_iou=0.6)


def test_confusion_matrix_hand_case():
    detections, ground_truths = hand_case()
    # In score order (>= .5): d4 nothing -> (0, 2); d0 takes A -> (1, 1); d1 best A, taken -> (0, 1);
    # d2 best A at .3 < .5 -> (0, 1); d3 takes B -> (2, 1). Image 1: d6 on difficult D left out,
    # E untaken -> (2, 0).
    expected = np.array([[0, 2, 1],
                         [0, 1, 0],
                         [1, 1, 0]])
    np.testing.assert_array_equal(confusion_matrix(detections, ground_truths, num_classes=2), expected)


def test_pr_curves_give_evaluate_voc_ap():
    rng = np.random.default_rng(3)
    detections, ground_truths = random_dataset(rng)
    for metric in (True, False):
        curves = precision_recall_curves(detections, ground_truths, 3, use_07_metric=metric)
        result = evaluate_voc(detections, ground_truths, 3, use_07_metric=metric)
        for c in (1, 2, 3):
            ap = voc_ap(curves[c]["recall"], curves[c]["precision"], use_07_metric=metric)
            assert ap == pytest.approx(result["AP"][c]) and curves[c]["AP"] == pytest.approx(result["AP"][c])
            assert np.all(np.diff(curves[c]["scores"]) <= 0)


# ---------------------------------------------------------------- loop reference

def random_dataset(rng, images=12, num_classes=3):
    detections, ground_truths = [], []
    for _ in range(images):
        g = rng.integers(0, 5)
        xy = rng.uniform(0, 150, (g, 2))
        size = rng.choice([12.0, 20.0, 40.0, 70.0, 110.0, 130.0], (g, 2)) * rng.uniform(0.8, 1.2, (g, 2))
        gboxes = np.concatenate([xy, xy + size], 1)
        glabels = rng.integers(1, num_classes + 1, g)
        ground_truths.append(gt(gboxes, glabels, difficult=rng.uniform(size=g) < 0.15))
        # detections: jittered copies (some relabelled, some doubled) and random boxes
        src = rng.integers(0, max(g, 1), rng.integers(0, 8)) if g else np.zeros(0, int)
        jitter = rng.normal(0, 0.15, (len(src), 4)) * np.tile(size[src] if g else np.zeros((0, 2)), 2)
        dboxes = gboxes[src] + jitter if g else np.zeros((0, 4))
        dlabels = np.where(rng.uniform(size=len(src)) < 0.2, rng.integers(1, num_classes + 1, len(src)),
                           glabels[src] if g else 0)
        r = rng.integers(0, 3)
        rxy = rng.uniform(0, 200, (r, 2))
        dboxes = np.concatenate([dboxes.reshape(-1, 4), np.concatenate([rxy, rxy + rng.uniform(5, 60, (r, 2))], 1)])
        dlabels = np.concatenate([dlabels, rng.integers(1, num_classes + 1, r)]).astype(int)
        scores = np.round(rng.uniform(size=len(dboxes)), 2)   # rounded: ties happen
        dboxes[:, 2:] = np.maximum(dboxes[:, 2:], dboxes[:, :2] + 1)
        detections.append(det(dboxes, scores, dlabels))
    return detections, ground_truths


def _sorted_detections(detections, threshold=-np.inf):
    rows = [(i, j) for i, d in enumerate(detections) for j in range(len(d["scores"]))
            if d["scores"][j] >= threshold]
    # descending score, ties in input order (Python's sort is stable)
    return sorted(rows, key=lambda r: -float(detections[r[0]]["scores"][r[1]]))


def _difficult(g):
    return g.get("difficult", np.zeros(len(g["labels"]), bool))


def reference_types(detections, ground_truths, iou_thr=0.5, loc_thr=0.1, score_thr=0.5):
    types = [[None] * len(d["scores"]) for d in detections]
    claimed = set()
    for i, j in _sorted_detections(detections, score_thr):
        d, g = detections[i], ground_truths[i]
        box, label = d["boxes"][j], d["labels"][j]
        same = [(iou_pair(box, g["boxes"][k]), k) for k in range(len(g["labels"])) if g["labels"][k] == label]
        best, k = max(same, key=lambda t: t[0]) if same else (-1.0, -1)   # first of equal: max keeps the first
        other = max([iou_pair(box, g["boxes"][k2]) for k2 in range(len(g["labels"]))
                     if g["labels"][k2] != label] or [0.0])
        if best >= iou_thr and _difficult(g)[k]:
            types[i][j] = "ignored"
        elif best >= iou_thr and (i, k) not in claimed:
            claimed.add((i, k))
            types[i][j] = "correct"
        elif best >= iou_thr:
            types[i][j] = "duplicate"
        elif best >= loc_thr:
            types[i][j] = "localisation"
        elif other >= loc_thr:
            types[i][j] = "wrong_class"
        else:
            types[i][j] = "background"
    missed = [[not _difficult(g)[k] and (i, k) not in claimed for k in range(len(g["labels"]))]
              for i, g in enumerate(ground_truths)]
    return types, missed


def reference_confusion(detections, ground_truths, num_classes, iou_thr=0.5, score_thr=0.5):
    matrix = np.zeros((num_classes + 1, num_classes + 1), int)
    taken = set()
    for i, j in _sorted_detections(detections, score_thr):
        g = ground_truths[i]
        ious = [iou_pair(detections[i]["boxes"][j], b) for b in g["boxes"]]
        label = detections[i]["labels"][j]
        if not ious or max(ious) < iou_thr:
            matrix[0, label] += 1
            continue
        k = int(np.argmax(ious))
        if _difficult(g)[k]:
            continue
        if (i, k) in taken:
            matrix[0, label] += 1
        else:
            taken.add((i, k))
            matrix[g["labels"][k], label] += 1
    for i, g in enumerate(ground_truths):
        for k in range(len(g["labels"])):
            if not _difficult(g)[k] and (i, k) not in taken:
                matrix[g["labels"][k], 0] += 1
    return matrix


def reference_ap_in_range(detections, ground_truths, c, lo, hi, iou_thr=0.5):
    """VOC2010 area AP of class c on objects with area in [lo, hi), COCO's ignore rule, by loops."""
    area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
    ignore_gt = [[bool(_difficult(g)[k]) or not lo <= area(g["boxes"][k]) < hi for k in range(len(g["labels"]))]
                 for g in ground_truths]
    npos = sum(1 for i, g in enumerate(ground_truths) for k in range(len(g["labels"]))
               if g["labels"][k] == c and not ignore_gt[i][k])
    if npos == 0:
        return float("nan")
    claimed, flags = set(), []
    for i, j in _sorted_detections(detections):
        d, g = detections[i], ground_truths[i]
        if d["labels"][j] != c:
            continue
        same = [(iou_pair(d["boxes"][j], g["boxes"][k]), k) for k in range(len(g["labels"])) if g["labels"][k] == c]
        best, k = max(same, key=lambda t: t[0]) if same else (-1.0, -1)
        if best >= iou_thr and ignore_gt[i][k]:
            continue
        if best >= iou_thr and (i, k) not in claimed:
            claimed.add((i, k))
            flags.append(True)
        elif lo <= area(d["boxes"][j]) < hi:
            flags.append(False)
    tp = np.cumsum(flags)
    recall, precision = tp / npos, tp / np.arange(1, len(flags) + 1)
    # all-point AP: sum over recall steps of the best precision at or beyond that recall
    ap, previous = 0.0, 0.0
    for n in range(len(flags)):
        if flags[n]:
            ap += (recall[n] - previous) * max(precision[n:])
            previous = recall[n]
    return ap


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_error_types_and_misses_match_the_loop_reference(seed):
    detections, ground_truths = random_dataset(np.random.default_rng(seed))
    out = error_breakdown(detections, ground_truths, num_classes=3)
    types, missed = reference_types(detections, ground_truths)
    assert [[ERROR_TYPES[t] if t >= 0 else None for t in image] for image in out["types"]] == types
    assert [m.tolist() for m in out["missed"]] == missed
    # every non-difficult ground truth is either found by exactly one correct detection or missed
    n_gt = sum(int((~_difficult(g)).sum()) for g in ground_truths)
    assert out["counts"]["correct"] + out["counts"]["missed"] == n_gt


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_confusion_matrix_matches_the_loop_reference(seed):
    detections, ground_truths = random_dataset(np.random.default_rng(seed))
    matrix = confusion_matrix(detections, ground_truths, num_classes=3)
    np.testing.assert_array_equal(matrix, reference_confusion(detections, ground_truths, 3))
    # every non-difficult ground truth is in its row exactly once (taken or missed)
    n_gt = np.bincount(np.concatenate([g["labels"][~_difficult(g)] for g in ground_truths]), minlength=4)
    np.testing.assert_array_equal(matrix[1:].sum(1), n_gt[1:])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ap_by_size_matches_the_loop_reference(seed):
    detections, ground_truths = random_dataset(np.random.default_rng(seed), images=20)
    out = ap_by_size(detections, ground_truths, num_classes=3)
    for name, (lo, hi) in SIZE_RANGES.items():
        for c in (1, 2, 3):
            expected = reference_ap_in_range(detections, ground_truths, c, lo, hi)
            got = out[name]["AP"][c]
            assert (np.isnan(got) and np.isnan(expected)) or got == pytest.approx(expected), (name, c)


def test_ap_by_size_with_one_range_covering_everything_is_evaluate_voc():
    detections, ground_truths = random_dataset(np.random.default_rng(5))
    everything = ap_by_size(detections, ground_truths, 3, ranges={"all": (0.0, np.inf)})["all"]
    assert everything["mAP"] == pytest.approx(evaluate_voc(detections, ground_truths, 3, use_07_metric=False)["mAP"])


def test_worst_images_rank_by_errors():
    detections, ground_truths = hand_case()
    worst = worst_images(detections, ground_truths, num_classes=2, k=2)
    # image 0: duplicate + localisation + wrong class + background = 4 false positives, 1 miss;
    # image 1: the ignored detection is no error, 1 miss.
    assert [(w["image"], w["errors"], w["false_positives"], w["missed"]) for w in worst] == [(0, 5, 4, 1), (1, 1, 0, 1)]
    rng = np.random.default_rng(7)
    detections, ground_truths = random_dataset(rng)
    worst = worst_images(detections, ground_truths, 3, k=len(detections))
    types, missed = reference_types(detections, ground_truths)
    errors = [sum(t not in (None, "correct", "ignored") for t in types[i]) + sum(missed[i]) for i in range(len(types))]
    assert [w["errors"] for w in worst] == sorted(errors, reverse=True)
    assert all(errors[w["image"]] == w["errors"] for w in worst)


def test_bad_input_names_the_field():
    detections, ground_truths = hand_case()
    with pytest.raises(FrcnnError, match=r"detections\[1\]"):
        error_breakdown([detections[0], {"boxes": np.zeros((1, 4))}], ground_truths, num_classes=2)
    with pytest.raises(FrcnnError, match="iou_threshold"):
        confusion_matrix(detections, ground_truths, num_classes=2, iou_threshold=0)


def test_plots_draw_one_element_per_class_and_type():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from frcnn_lib.evaluation import plots
    detections, ground_truths = random_dataset(np.random.default_rng(0))
    names = ["a", "b", "c"]
    ax = plots.plot_pr_curves(precision_recall_curves(detections, ground_truths, 3), names)
    assert [t.get_text().split(":")[0] for t in ax.get_legend().get_texts()] == names
    matrix = confusion_matrix(detections, ground_truths, 3)
    ax = plots.plot_confusion_matrix(matrix, names)
    assert sorted(int(t.get_text()) for t in ax.texts) == sorted(matrix[matrix > 0].tolist())
    counts = error_breakdown(detections, ground_truths, 3)["counts"]
    ax = plots.plot_error_breakdown(counts)
    assert [p.get_height() for p in ax.patches] == [counts[n] for n in ERROR_TYPES] + [counts["missed"]]
    ax = plots.plot_ap_by_size(ap_by_size(detections, ground_truths, 3))
    assert len(ax.patches) == 3
    plt.close("all")


def test_image_errors_draw_each_kept_detection_in_its_type_colour():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba
    from frcnn_lib.evaluation import plots
    detections, ground_truths = hand_case()
    out = error_breakdown(detections, ground_truths, num_classes=2)
    ax = plots.plot_image_errors(np.zeros((120, 120, 3), np.uint8), detections[0], ground_truths[0],
                                 out["types"][0], out["missed"][0], ["a", "b"])
    edges = [p.get_edgecolor() for p in ax.patches]
    assert len(edges) == 2 + 5            # both objects, and the five detections above the threshold
    assert edges.count(to_rgba("tab:red")) == 2   # the missed object (dashed) and the background detection
    for name in ("correct", "duplicate", "localisation", "wrong_class"):
        assert edges.count(to_rgba(plots.ERROR_COLORS[name])) == 1, name
    plt.close("all")
