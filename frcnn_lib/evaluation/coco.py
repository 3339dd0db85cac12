"""COCO detection metrics by pycocotools, from in-memory lists instead of JSON files.

Shape glossary: ``I`` images, ``n`` detections and ``g`` ground truths of one image.

The twelve numbers of ``COCOeval.summarize()`` (``COCO_METRIC_NAMES``):

* ``AP``: mean over IoU thresholds 0.50:0.05:0.95 and over categories of the 101-point
  interpolated precision (recall 0, 0.01, ..., 1); ``AP50`` / ``AP75`` at one threshold;
  ``APs`` / ``APm`` / ``APl`` for ground truths of area ``< 32²``, ``32²..96²``, ``> 96²``.
* ``AR1`` / ``AR10`` / ``AR100``: recall with at most 1 / 10 / 100 detections per image and
  category, averaged over the thresholds and categories; ``ARs`` / ``ARm`` / ``ARl`` by area.

COCO matches differently from VOC: a detection takes the best *unmatched* ground truth,
crowd ground truths (``iscrowd``) can absorb many detections and are ignored, and areas
here are box areas ``w * h``.  pycocotools reports ``-1`` where a number is undefined
(no ground truth in that area range); that value is passed through unchanged.
``difficult`` flags are a VOC notion and are not used here: every box counts.
"""
import contextlib
import io

import numpy as np

from frcnn_lib.runtime.errors import FrcnnError
from frcnn_lib.evaluation._inputs import check_lists, check_num_classes, flatten

COCO_METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
                     "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _xywh(boxes):
    """``(n, 4)`` xyxy -> ``(n, 4)`` COCO ``x, y, width, height``."""
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def _category_ids(labels, label_to_category_id):
    """COCO category id of each label ``(n,)``; identity without a mapping."""
    if label_to_category_id is None:
        return labels
    missing = sorted(set(np.unique(labels).tolist()) - set(label_to_category_id))
    if missing:
        raise FrcnnError(f"label_to_category_id has no entry for label(s) {missing}")
    return np.asarray([label_to_category_id[label] for label in labels.tolist()], np.int64)


def _image_entries(num_images, image_sizes):
    if image_sizes is None:
        return [{"id": i} for i in range(num_images)]
    if len(image_sizes) != num_images:
        raise FrcnnError(f"image_sizes has {len(image_sizes)} entries, expected one "
                         f"(height, width) per image: {num_images}")
    return [{"id": i, "height": int(h), "width": int(w)} for i, (h, w) in enumerate(image_sizes)]


def _with_iscrowd(ground_truths, iscrowd):
    """Ground-truth dicts with ``iscrowd`` from the argument (one array per image) if given."""
    if iscrowd is None:
        return ground_truths
    if len(iscrowd) != len(ground_truths):
        raise FrcnnError(f"iscrowd has {len(iscrowd)} entries, expected one per image: "
                         f"{len(ground_truths)}")
    return [{**gt, "iscrowd": crowd} for gt, crowd in zip(ground_truths, iscrowd)]


def build_coco_ground_truth(ground_truths, image_sizes=None, label_to_category_id=None,
                            iscrowd=None, num_classes=None):
    """A ``pycocotools.coco.COCO`` ground-truth object built in memory.

    Image ``i`` of the list gets id ``i``; annotations get ids ``1..G`` (0 means
    "unmatched" inside COCOeval).  Categories: ``1..num_classes`` if given, else the
    labels present.
    """
    from pycocotools.coco import COCO

    gt = flatten(_with_iscrowd(ground_truths, iscrowd), "ground_truths", num_classes,
                 flag_key="iscrowd")
    labels = np.arange(1, num_classes + 1) if num_classes else np.unique(gt.labels)
    categories = _category_ids(labels, label_to_category_id)
    xywh = _xywh(gt.boxes)
    annotations = [
        {"id": k + 1, "image_id": image, "category_id": category, "bbox": box,
         "area": box[2] * box[3], "iscrowd": int(crowd)}
        for k, (image, category, box, crowd) in enumerate(zip(
            gt.image.tolist(), _category_ids(gt.labels, label_to_category_id).tolist(),
            xywh.tolist(), gt.flag.tolist()))]
    coco = COCO()
    coco.dataset = {"images": _image_entries(len(ground_truths), image_sizes),
                    "categories": [{"id": c, "name": str(c)} for c in categories.tolist()],
                    "annotations": annotations}
    coco.createIndex()
    return coco


def _load_detections(coco_gt, detections, label_to_category_id, num_classes):
    """The detections as a pycocotools result object (``loadRes``; empty lists allowed)."""
    from pycocotools.coco import COCO

    det = flatten(detections, "detections", num_classes, with_scores=True)
    results = [
        {"image_id": image, "category_id": category, "bbox": box, "score": score}
        for image, category, box, score in zip(
            det.image.tolist(), _category_ids(det.labels, label_to_category_id).tolist(),
            _xywh(det.boxes).tolist(), det.scores.tolist())]
    if results:
        return coco_gt.loadRes(results)
    empty = COCO()  # loadRes cannot take an empty list
    empty.dataset = {"images": list(coco_gt.dataset["images"]),
                     "categories": list(coco_gt.dataset["categories"]), "annotations": []}
    empty.createIndex()
    return empty


def evaluate_coco(detections, ground_truths, image_sizes=None, label_to_category_id=None,
                  iscrowd=None, num_classes=None, verbose=False):
    """The twelve COCO box metrics of ``detections`` by pycocotools' ``COCOeval``.

    Args:
      detections: list (one per image) of dicts ``boxes (n, 4)`` xyxy, ``scores (n,)``,
        ``labels (n,)``.
      ground_truths: list of dicts ``boxes (g, 4)`` xyxy, ``labels (g,)``, optional
        ``iscrowd (g,)`` bool.
      image_sizes: optional list of ``(height, width)`` per image, recorded in the COCO
        images (the box metrics do not use them).
      label_to_category_id: optional dict label -> COCO category id (e.g. to the
        non-contiguous ids of instances_val2017.json); identity by default.
      iscrowd: optional list (one per image) of ``(g,)`` bool arrays; overrides the
        ``iscrowd`` key of ``ground_truths``.
      num_classes: if given, labels must lie in ``1..num_classes``.
      verbose: print pycocotools' progress and summary table.

    Returns:
      dict ``{name: float}`` for the names of ``COCO_METRIC_NAMES``, in that order.
    """
    from pycocotools.cocoeval import COCOeval

    check_lists(detections, ground_truths)
    if num_classes is not None:
        num_classes = check_num_classes(num_classes)
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        coco_gt = build_coco_ground_truth(ground_truths, image_sizes, label_to_category_id,
                                          iscrowd, num_classes)
        coco_dt = _load_detections(coco_gt, detections, label_to_category_id, num_classes)
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(COCO_METRIC_NAMES, evaluator.stats)}
