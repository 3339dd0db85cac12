"""Benchmark: ``evaluate_voc`` against pycocotools' ``COCOeval`` at IoU 0.5.

Data (seeded, VOC-like): 5,000 images of about 500x375 pixels, 1-5 ground truths each
(about 3) of 20 classes, 10% of them difficult, and 100 detections per image: jittered
copies of the ground truths (mostly the right class, some duplicates, some too loose to
match) and random clutter, with higher scores near objects.

Timed, median over repeats:
* ours: ``evaluate_voc(..., iou_threshold=0.5, use_07_metric=False)`` end to end, from the
  Python lists (validation and flattening included);
* pycocotools: ``COCOeval.evaluate() + accumulate()`` with ``iouThrs=[0.5]`` (default
  area ranges and maxDets), and again with also ``areaRng=[all]`` and ``maxDets=[100]``:
  the least work that still yields AP50.  Building the COCO objects (``loadRes``) is not
  timed.  The ratio is taken against the faster of the two.

Run: ``.venv/bin/python benchmarks/bench_evaluation.py [--images 5000] [--repeats 3]``.
"""
import argparse
import contextlib
import io
import statistics
import time

import numpy as np
from pycocotools.cocoeval import COCOeval

from frcnn_lib.evaluation import evaluate_voc
from frcnn_lib.evaluation.coco import _load_detections, build_coco_ground_truth

NUM_CLASSES = 20


def _random_boxes(rng, n, width, height):
    """``(n, 4)`` xyxy boxes of side 20..300 pixels inside a ``width x height`` image."""
    size = rng.uniform(20, 300, (n, 2))
    size = np.minimum(size, [width, height])
    corner = rng.uniform(0, 1, (n, 2)) * ([width, height] - size)
    return np.concatenate([corner, corner + size], axis=1).astype(np.float32)


def _image(rng, detections_per_image):
    """Ground truth and detections of one image."""
    width, height = rng.integers(300, 501), rng.integers(300, 501)
    g = rng.integers(1, 6)
    gt_boxes = _random_boxes(rng, g, width, height)
    gt_labels = rng.integers(1, NUM_CLASSES + 1, g)
    ground_truth = {"boxes": gt_boxes, "labels": gt_labels, "difficult": rng.random(g) < 0.1}

    near = min(detections_per_image, int(rng.integers(4, 9)) * g)  # several per object
    source = rng.integers(0, g, near)
    wh = (gt_boxes[source, 2:] - gt_boxes[source, :2])
    jitter = rng.normal(0, 0.12, (near, 4)) * np.concatenate([wh, wh], axis=1)
    near_boxes = gt_boxes[source] + jitter
    near_labels = np.where(rng.random(near) < 0.8, gt_labels[source],
                           rng.integers(1, NUM_CLASSES + 1, near))
    clutter = detections_per_image - near
    boxes = np.concatenate([near_boxes, _random_boxes(rng, clutter, width, height)])
    labels = np.concatenate([near_labels, rng.integers(1, NUM_CLASSES + 1, clutter)])
    scores = np.concatenate([rng.beta(5, 2, near), rng.beta(2, 5, clutter)])
    x1y1 = np.minimum(boxes[:, :2], boxes[:, 2:])
    x2y2 = np.maximum(boxes[:, :2], boxes[:, 2:])
    detection = {"boxes": np.concatenate([x1y1, x2y2], axis=1).astype(np.float32),
                 "scores": scores.astype(np.float32), "labels": labels.astype(np.int64)}
    return detection, ground_truth


def make_data(num_images, detections_per_image=100, seed=0):
    rng = np.random.default_rng(seed)
    pairs = [_image(rng, detections_per_image) for _ in range(num_images)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def time_ours(detections, ground_truths, repeats):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = evaluate_voc(detections, ground_truths, NUM_CLASSES, 0.5, use_07_metric=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def coco_objects(detections, ground_truths):
    """pycocotools ground-truth and result objects (``difficult`` boxes count as normal)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = build_coco_ground_truth(ground_truths, num_classes=NUM_CLASSES)
        return coco_gt, _load_detections(coco_gt, detections, None, NUM_CLASSES)


def time_pycocotools(coco_gt, coco_dt, repeats, minimal):
    """Median time of COCOeval evaluate + accumulate at IoU 0.5, and its AP50."""
    times, ap50 = [], None
    for _ in range(repeats):
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.params.iouThrs = np.array([0.5])
        if minimal:
            evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0, 1e10]], ["all"]
            evaluator.params.maxDets = [100]
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator.evaluate()
            evaluator.accumulate()
        times.append(time.perf_counter() - start)
        precision = evaluator.eval["precision"][0, :, :, 0, -1]  # (101 recalls, K), all, 100
        ap50 = float(np.mean([p.mean() for p in precision.T if (p > -1).any()]))
    return statistics.median(times), ap50


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--detections", type=int, default=100, help="per image")
    parser.add_argument("--repeats", type=int, default=3, help="for pycocotools")
    parser.add_argument("--our-repeats", type=int, default=7)
    args = parser.parse_args()

    detections, ground_truths = make_data(args.images, args.detections)
    num_det = sum(len(d["scores"]) for d in detections)
    num_gt = sum(len(g["labels"]) for g in ground_truths)
    print(f"data: {args.images} images, {num_gt} ground truths, {num_det} detections, "
          f"{NUM_CLASSES} classes")
    ours, result = time_ours(detections, ground_truths, args.our_repeats)
    print(f"evaluate_voc (VOC2010 AP @0.5):      median {ours:8.3f} s over {args.our_repeats}"
          f"  (mAP {result['mAP']:.4f})")
    coco_gt, coco_dt = coco_objects(detections, ground_truths)
    full, ap50 = time_pycocotools(coco_gt, coco_dt, args.repeats, minimal=False)
    print(f"COCOeval iouThrs=[0.5]:              median {full:8.3f} s over {args.repeats}"
          f"  (AP50 {ap50:.4f}: difficult counted, 101-point)")
    theirs, _ = time_pycocotools(coco_gt, coco_dt, args.repeats, minimal=True)
    print(f"COCOeval + areaRng=[all], maxDets=[100]: median {theirs:5.3f} s over {args.repeats}")
    theirs = min(theirs, full)
    print(f"summary: evaluate_voc {ours:.3f} s, COCOeval {theirs:.3f} s, "
          f"evaluate_voc is {theirs / ours:.1f}x faster")


if __name__ == "__main__":
    main()
