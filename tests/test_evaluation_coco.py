"""evaluate_coco against pycocotools' COCOeval called directly on hand-built COCO dicts."""
import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from frcnn_lib.runtime.errors import FrcnnError
from frcnn_lib.evaluation import COCO_METRIC_NAMES, evaluate_coco, evaluate_voc

CATEGORY_IDS = {1: 3, 2: 7, 3: 11}  # non-contiguous, like instances_val2017.json


def random_set(seed, num_images=12, num_classes=3, crowd_rate=0.15):
    """Boxes of all sizes (small/medium/large), crowd flags, near-miss detections."""
    rng = np.random.default_rng(seed)
    detections, ground_truths = [], []
    for _ in range(num_images):
        g = int(rng.integers(0, 6))
        xy = rng.uniform(0, 300, (g, 2))
        gt_boxes = np.concatenate([xy, xy + rng.uniform(8, 150, (g, 2))], axis=1)
        gt_labels = rng.integers(1, num_classes + 1, g)
        ground_truths.append({"boxes": gt_boxes, "labels": gt_labels,
                              "iscrowd": rng.random(g) < crowd_rate})
        n = int(rng.integers(0, 15))
        pick = rng.integers(0, max(g, 1), n)
        xy = rng.uniform(0, 300, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(8, 150, (n, 2))], axis=1)
        labels = rng.integers(1, num_classes + 1, n)
        if g:
            near = rng.random(n) < 0.7
            scale = (gt_boxes[pick, 2:] - gt_boxes[pick, :2]).repeat(2, axis=0).reshape(n, 4)
            boxes[near] = (gt_boxes[pick] + rng.normal(0, 0.1, (n, 4)) * scale)[near]
            labels[near] = gt_labels[pick][near]
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        detections.append({"boxes": boxes, "scores": rng.uniform(0, 1, n), "labels": labels})
    return detections, ground_truths


def cocoeval_directly(detections, ground_truths, category_ids):
    """The reference: COCO dicts written out by hand, then the pycocotools recipe."""
    images = [{"id": i, "height": 480, "width": 640} for i in range(len(ground_truths))]
    annotations = []
    for i, g in enumerate(ground_truths):
        for box, label, crowd in zip(g["boxes"], g["labels"], g["iscrowd"]):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append({"id": len(annotations) + 1, "image_id": i, "iscrowd": int(crowd),
                                "category_id": category_ids[int(label)], "area": w * h,
                                "bbox": [float(box[0]), float(box[1]), w, h]})
    results = [{"image_id": i, "category_id": category_ids[int(label)], "score": float(score),
                "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]}
               for i, d in enumerate(detections)
               for box, score, label in zip(d["boxes"], d["scores"], d["labels"])]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": annotations,
                           "categories": [{"id": c} for c in sorted(category_ids.values())]}
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


@pytest.mark.parametrize("seed", range(3))
def test_equals_cocoeval_exactly(seed):
    detections, ground_truths = random_set(seed)
    ours = evaluate_coco(detections, ground_truths, image_sizes=[(480, 640)] * len(detections),
                         label_to_category_id=CATEGORY_IDS, num_classes=3)
    assert list(ours) == list(COCO_METRIC_NAMES)
    assert list(ours.values()) == cocoeval_directly(detections, ground_truths, CATEGORY_IDS).tolist()


def test_iscrowd_argument_overrides_key():
    detections, ground_truths = random_set(5)
    crowd = [g.pop("iscrowd") for g in ground_truths]
    plain = evaluate_coco(detections, ground_truths)
    with_arg = evaluate_coco(detections, ground_truths, iscrowd=crowd)
    with_key = evaluate_coco(detections, [{**g, "iscrowd": c} for g, c in zip(ground_truths, crowd)])
    assert with_arg == with_key != plain


def test_perfect_and_empty_detections():
    ground_truths = [{"boxes": np.array([[0, 0, 20, 20], [50, 50, 200, 200]]), "labels": [1, 2]},
                     {"boxes": np.zeros((0, 4)), "labels": []}]
    perfect = [{"boxes": g["boxes"], "scores": np.ones(len(g["labels"])), "labels": g["labels"]}
               for g in ground_truths]
    stats = evaluate_coco(perfect, ground_truths)
    assert stats["AP"] == pytest.approx(1.0) and stats["AR100"] == pytest.approx(1.0)
    assert stats["APm"] == -1.0  # no medium ground truth: pycocotools' "undefined"
    nothing = [{"boxes": np.zeros((0, 4)), "scores": [], "labels": []}] * 2
    assert evaluate_coco(nothing, ground_truths)["AP"] == 0.0


def test_ap50_is_close_to_voc2010_ap_but_not_asserted_equal():
    # Same IoU 0.5 but COCO samples precision at 101 recalls, VOC2010 takes the exact area,
    # and the matching differs (COCO: best unmatched GT), so only closeness is expected.
    detections, ground_truths = random_set(7, num_images=40, crowd_rate=0.0)
    coco = evaluate_coco(detections, ground_truths, num_classes=3)
    voc = evaluate_voc(detections, ground_truths, num_classes=3, use_07_metric=False)
    assert abs(coco["AP50"] - voc["mAP"]) < 0.05


def test_quiet_unless_verbose(capsys):
    detections, ground_truths = random_set(1, num_images=3)
    evaluate_coco(detections, ground_truths)
    assert capsys.readouterr().out == ""
    evaluate_coco(detections, ground_truths, verbose=True)
    assert "Average Precision" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, message", [
    ({"label_to_category_id": {1: 1}}, "no entry for label(s) [2]"),
    ({"num_classes": 1}, "ground_truths[0]['labels'] row 1: expected integers in 1..1"),
    ({"image_sizes": [(10, 10)] * 3}, "image_sizes has 3 entries"),
    ({"iscrowd": [[False]]}, "ground_truths[0]['iscrowd'] must have shape (2,)"),
])
def test_bad_input(kwargs, message):
    ground_truths = [{"boxes": [[0, 0, 1, 1], [0, 0, 2, 2]], "labels": [1, 2]}]
    detections = [{"boxes": [[0, 0, 1, 1]], "scores": [1.0], "labels": [1]}]
    with pytest.raises(FrcnnError) as error:
        evaluate_coco(detections, ground_truths, **kwargs)
    assert message in str(error.value)


def test_length_mismatch():
    with pytest.raises(FrcnnError, match="detections has 0 images but ground_truths has 1"):
        evaluate_coco([], [{"boxes": [], "labels": []}])
