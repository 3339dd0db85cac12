"""Reference answers to the course's exercises, in the learner's signatures.

Not part of any notebook page (the notebooks hold no answer; the library is the reference a
stuck learner reads, with ``show_reference``).  Used by the tests, to prove that each
checker accepts a right answer and that a detector with every part promoted trains, and by
``run_course.py --promote-reference-answers``, which fills the learner's parts folder with
these before a full-mode run, so that notebook 09 shows a learner's detector trained.

Written with ``keras.ops`` where the code enters the model, so one function runs on numpy
arrays in a notebook and inside the compiled training step.
"""
import math

import numpy as np
from keras import ops

# ----------------------------------------------------------------- promotable parts


def generate_anchors(feature_height, feature_width, stride, scales, ratios):
    """(Hf * Wf * A, 4) xyxy, location-major; anchor (s, r) has area s**2, h / w = r."""
    scales = ops.convert_to_tensor(np.asarray(scales, np.float32))[:, None]
    ratios = ops.convert_to_tensor(np.asarray(ratios, np.float32))[None, :]
    widths = ops.reshape(scales / ops.sqrt(ratios), [-1])
    heights = ops.reshape(scales * ops.sqrt(ratios), [-1])
    base = ops.stack([-widths / 2, -heights / 2, widths / 2, heights / 2], axis=-1)   # (A, 4)
    ys = (ops.cast(ops.arange(feature_height), "float32") + 0.5) * stride
    xs = (ops.cast(ops.arange(feature_width), "float32") + 0.5) * stride
    cy, cx = ops.meshgrid(ys, xs, indexing="ij")
    centres = ops.reshape(ops.stack([cx, cy, cx, cy], axis=-1), [-1, 1, 4])
    return ops.reshape(centres + base[None], [-1, 4])


def iou(boxes_a, boxes_b):
    """(N, 4), (M, 4) xyxy -> (N, M); 0 where the union is empty."""
    a = ops.cast(boxes_a, "float32")[:, None, :]
    b = ops.cast(boxes_b, "float32")[None, :, :]
    iw = ops.maximum(ops.minimum(a[..., 2], b[..., 2]) - ops.maximum(a[..., 0], b[..., 0]), 0.0)
    ih = ops.maximum(ops.minimum(a[..., 3], b[..., 3]) - ops.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = iw * ih
    area_a = ops.maximum(a[..., 2] - a[..., 0], 0.0) * ops.maximum(a[..., 3] - a[..., 1], 0.0)
    area_b = ops.maximum(b[..., 2] - b[..., 0], 0.0) * ops.maximum(b[..., 3] - b[..., 1], 0.0)
    union = area_a + area_b - inter
    return ops.where(union > 0, inter / ops.maximum(union, 1e-12), 0.0)


def label_anchors(ious, positive_iou, negative_iou):
    """(N, G) -> (N,) in {1, 0, -1}: negatives first, then positives (rule ii, then rule i)."""
    ious = ops.cast(ious, "float32")
    best = ops.max(ious, axis=1)
    labels = ops.full(ops.shape(best), -1, "int32")
    labels = ops.where(best < negative_iou, 0, labels)
    labels = ops.where(best >= positive_iou, 1, labels)
    col_best = ops.max(ious, axis=0, keepdims=True)                 # (1, G)
    claimed = ops.any((ious == col_best) & (col_best > 0), axis=1)  # ties included
    return ops.where(claimed, 1, labels)


def _smallest(mask, keys, count):
    """mask (N,) bool: the ``count`` members with the smallest keys (ties: lower index)."""
    masked = ops.where(mask, keys, 2.0)                 # keys in [0, 1): non-members last
    order = ops.argsort(masked)                         # stable
    rank = ops.argsort(order)                           # each element's position in the order
    return mask & (rank < count)


def sample(labels, keys, num_samples, positive_fraction):
    """Keep min(#pos, round(S * f)) positives and min(#neg, S - kept) negatives: those with
    the smallest keys; everything else -1."""
    labels = ops.cast(labels, "int32")
    keys = ops.cast(keys, "float32")
    positive, negative = labels == 1, labels == 0
    num_pos = ops.minimum(ops.sum(ops.cast(positive, "int32")), int(round(num_samples * positive_fraction)))
    num_neg = ops.minimum(ops.sum(ops.cast(negative, "int32")), num_samples - num_pos)
    keep_pos = _smallest(positive, keys, num_pos)
    keep_neg = _smallest(negative, keys, num_neg)
    return ops.where(keep_pos, 1, ops.where(keep_neg, 0, -1))


def _centre_size(boxes):
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h


def encode(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    """(..., 4) xyxy targets against (..., 4) anchors -> (tx, ty, tw, th) * weights."""
    eps = 1e-6
    cx, cy, w, h = _centre_size(ops.cast(boxes, "float32"))
    ax, ay, aw, ah = _centre_size(ops.cast(anchors, "float32"))
    aw, ah = ops.maximum(aw, eps), ops.maximum(ah, eps)
    wx, wy, ww, wh = weights
    return ops.stack([wx * (cx - ax) / aw, wy * (cy - ay) / ah,
                      ww * ops.log(ops.maximum(w, eps) / aw), wh * ops.log(ops.maximum(h, eps) / ah)],
                     axis=-1)


def decode(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    """Inverse of encode; tw, th clamped at log(1000 / 16) before exp."""
    clamp = math.log(1000.0 / 16.0)
    deltas = ops.cast(deltas, "float32")
    ax, ay, aw, ah = _centre_size(ops.cast(anchors, "float32"))
    wx, wy, ww, wh = weights
    cx = deltas[..., 0] / wx * aw + ax
    cy = deltas[..., 1] / wy * ah + ay
    w = ops.exp(ops.minimum(deltas[..., 2] / ww, clamp)) * aw
    h = ops.exp(ops.minimum(deltas[..., 3] / wh, clamp)) * ah
    return ops.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def smooth_l1(x, sigma):
    """0.5 (sigma x)^2 where |x| < 1 / sigma^2, else |x| - 0.5 / sigma^2."""
    x = ops.cast(x, "float32")
    s2 = float(sigma) ** 2
    return ops.where(ops.abs(x) < 1.0 / s2, 0.5 * s2 * x * x, ops.abs(x) - 0.5 / s2)


def nms(boxes, scores, iou_threshold):
    """Greedy NMS: indices kept, by descending score (ties to the lower index)."""
    boxes = np.asarray(boxes, np.float32)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    overlaps = np.asarray(iou(boxes, boxes)) > iou_threshold
    removed = np.zeros(len(order), bool)
    keep = []
    for i in order:
        if not removed[i]:
            keep.append(i)
            removed |= overlaps[i]
    return np.array(keep, np.int64)


def roi_align_grid(rois, stride, output_size, sampling_ratio):
    """(R, 4) image pixels -> ys, xs (R, n): centres of n = S * r equal slices, in continuous
    feature coordinates (x / stride - 0.5)."""
    f = ops.cast(rois, "float32") / stride - 0.5
    n = output_size * sampling_ratio
    t = (ops.cast(ops.arange(n), "float32") + 0.5) / n                       # (n,)
    ys = f[:, 1:2] + t[None, :] * (f[:, 3:4] - f[:, 1:2])
    xs = f[:, 0:1] + t[None, :] * (f[:, 2:3] - f[:, 0:1])
    return ys, xs


PROMOTABLE = {"anchors": generate_anchors, "iou": iou, "label_anchors": label_anchors,
              "sample": sample, "encode": encode, "decode": decode, "smooth_l1": smooth_l1,
              "nms": nms, "roi_align_grid": roi_align_grid}

# The notebooks' exercise names -> the answers (notebooks/_tools/with_answers.py fills the
# exercise cells with these).  The exercises that are not parts of the detector are added below.
ANSWERS = {"my_generate_anchors": generate_anchors, "my_iou": iou,
           "my_label_anchors": label_anchors, "my_sample_balanced": sample, "my_encode": encode,
           "my_decode": decode, "my_smooth_l1": smooth_l1, "my_nms": nms,
           "my_roi_align_grid": roi_align_grid}


# ----------------------------------------------------------------- the other exercises
# (not parts of the detector: plain numpy where that is the natural way to write them)


def voc_to_xyxy(voc_boxes):
    """(N, 4) VOC 1-based inclusive corners -> continuous xyxy: (xmin - 1, ymin - 1, xmax, ymax)."""
    return np.asarray(voc_boxes, np.float32) - np.array([1, 1, 0, 0], np.float32)


def to_normalized_yxyx(boxes, height, width):
    """(N, 4) xyxy pixels -> tf.image's (y1 / h, x1 / w, y2 / h, x2 / w)."""
    x1, y1, x2, y2 = np.moveaxis(np.asarray(boxes, np.float32), -1, 0)
    return np.stack([y1 / height, x1 / width, y2 / height, x2 / width], axis=-1)


def feature_map_size(height, width):
    """VGG-16's conv5_3 size: four 2x2 max-pools of stride 2, each flooring."""
    for _ in range(4):
        height, width = height // 2, width // 2
    return height, width


def rpn_losses(logits, deltas, labels, target_deltas, sigma=3.0):
    """(objectness, box) losses, both divided by the sampled anchors of the whole batch."""
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels)
    sampled = labels >= 0
    positive = (labels == 1).astype(np.float64)
    bce = np.maximum(logits, 0) - logits * positive + np.log1p(np.exp(-np.abs(logits)))
    count = max(int(sampled.sum()), 1)
    per_box = np.asarray(smooth_l1(np.asarray(deltas) - np.asarray(target_deltas), sigma)).sum(-1)
    return float((bce * sampled).sum() / count), float((per_box * positive).sum() / count)


def label_rois(rois, gt_boxes, gt_labels, foreground_iou, background_iou_low, background_iou_high):
    """(R,) labels: the best object's class where IoU >= foreground_iou, 0 where IoU is in
    [background_iou_low, background_iou_high), else -1."""
    ious = np.asarray(iou(rois, gt_boxes))
    best, which = ious.max(axis=1), ious.argmax(axis=1)
    background = (best >= background_iou_low) & (best < background_iou_high)
    return np.where(best >= foreground_iou, np.asarray(gt_labels)[which], np.where(background, 0, -1))


def train_step(model, images, targets):
    """One SGD step: the weighted losses plus 0.5 * wd * sum(kernel**2), differentiated and
    applied; returns that total."""
    import tensorflow as tf
    s = model.settings
    with tf.GradientTape() as tape:
        parts = model.compute_losses(images, targets, training=True)
        total = tf.add_n([s[f"loss_{name}_weight"] * parts[name]
                          for name in ("rpn_objectness", "rpn_box", "rcnn_class", "rcnn_box")])
        kernels = [w for w in model.trainable_weights if "kernel" in w.path]
        total += 0.5 * s["weight_decay"] * tf.add_n([tf.reduce_sum(tf.square(w)) for w in kernels])
    grads = tape.gradient(total, model.trainable_weights)
    model.optimizer.apply_gradients(zip(grads, model.trainable_weights))
    return total


def precision_recall(scores, is_tp, num_ground_truths):
    """(recall, precision) after each detection, by descending score (stable)."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    tp = np.cumsum(np.asarray(is_tp, np.float64)[order])
    return tp / num_ground_truths, tp / np.arange(1, len(tp) + 1)


def voc_ap(recall, precision, use_07_metric):
    """VOC07 11-point AP (points k / 10) or VOC2010+ area under the precision envelope."""
    recall = np.asarray(recall, np.float64)
    envelope = np.maximum.accumulate(np.asarray(precision, np.float64)[::-1])[::-1]
    if use_07_metric:
        return float(sum(envelope[recall >= t].max() if (recall >= t).any() else 0.0
                         for t in np.arange(11) / 10) / 11)
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * envelope))


def coco_to_targets(coco):
    """One {"boxes", "labels"} per image in id order: xywh -> xyxy clipped to the image (empty
    boxes dropped), sorted category ids -> 1..K, no iscrowd annotations."""
    label_of = {c: k + 1 for k, c in enumerate(sorted(c["id"] for c in coco["categories"]))}
    out = []
    for info in sorted(coco["images"], key=lambda i: i["id"]):
        boxes, labels = [], []
        for ann in coco["annotations"]:
            if ann["image_id"] != info["id"] or ann.get("iscrowd", 0):
                continue
            x, y, w, h = ann["bbox"]
            box = np.clip([x, y, x + w, y + h], 0, [info["width"], info["height"]] * 2)
            if box[2] > box[0] and box[3] > box[1]:
                boxes.append(box)
                labels.append(label_of[ann["category_id"]])
        out.append({"boxes": np.array(boxes, np.float32).reshape(-1, 4),
                    "labels": np.array(labels, np.int32)})
    return out


def fpn_level(boxes, k0=4, canonical=224.0, k_min=2, k_max=5):
    """(n, 4) xyxy -> (n,) FPN level, floor(k0 + log2(sqrt(w h) / canonical)) clamped (eq. 1)."""
    boxes = np.asarray(boxes, np.float64)
    w = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-6)
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    return np.clip(np.floor(k0 + np.log2(np.sqrt(w * h) / canonical)), k_min, k_max).astype(int)


ANSWERS.update({"my_voc_to_xyxy": voc_to_xyxy, "my_to_normalized_yxyx": to_normalized_yxyx,
                "my_feature_map_size": feature_map_size, "my_rpn_losses": rpn_losses,
                "my_label_rois": label_rois, "my_train_step": train_step,
                "my_precision_recall": precision_recall, "my_voc_ap": voc_ap,
                "my_coco_to_targets": coco_to_targets, "my_fpn_level": fpn_level})
