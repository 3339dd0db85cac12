"""Independent plain-Python/numpy references for the detection math of ``frcnn_lib``.

Written differently from the library on purpose: explicit loops over boxes, pairs, rows,
columns and samples, float64, and the formulas as the papers state them.  The tests compare
the library against these; nothing here imports ``frcnn_lib``.
"""
import math

import numpy as np

DELTA_CLAMP = math.log(1000.0 / 16.0)


# ----------------------------------------------------------------------------- boxes
def box_area(box):
    x1, y1, x2, y2 = [float(v) for v in box]
    return max(x2 - x1, 0.0) * max(y2 - y1, 0.0)


def iou_pair(a, b):
    """IoU of two xyxy boxes, 0 when the union is empty (degenerate or inverted boxes)."""
    ix = min(float(a[2]), float(b[2])) - max(float(a[0]), float(b[0]))
    iy = min(float(a[3]), float(b[3])) - max(float(a[1]), float(b[1]))
    inter = max(ix, 0.0) * max(iy, 0.0)
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def iou(boxes_a, boxes_b):
    """``(N, 4), (M, 4) -> (N, M)`` by a loop over every pair."""
    out = np.zeros((len(boxes_a), len(boxes_b)))
    for i, a in enumerate(boxes_a):
        for j, b in enumerate(boxes_b):
            out[i, j] = iou_pair(a, b)
    return out


def encode(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    """Ren et al. eq. 2, one row at a time: ``(N, 4), (N, 4) -> (N, 4)``."""
    wx, wy, ww, wh = weights
    out = []
    for b, a in zip(np.asarray(boxes, np.float64), np.asarray(anchors, np.float64)):
        w, h = b[2] - b[0], b[3] - b[1]
        x, y = b[0] + 0.5 * w, b[1] + 0.5 * h
        wa, ha = a[2] - a[0], a[3] - a[1]
        xa, ya = a[0] + 0.5 * wa, a[1] + 0.5 * ha
        out.append([wx * (x - xa) / wa, wy * (y - ya) / ha,
                    ww * math.log(w / wa), wh * math.log(h / ha)])
    return np.array(out).reshape(-1, 4)


def decode(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    """Inverse of :func:`encode`, with ``tw/ww`` and ``th/wh`` clamped at ``log(1000/16)``."""
    wx, wy, ww, wh = weights
    out = []
    for d, a in zip(np.asarray(deltas, np.float64), np.asarray(anchors, np.float64)):
        wa, ha = a[2] - a[0], a[3] - a[1]
        xa, ya = a[0] + 0.5 * wa, a[1] + 0.5 * ha
        x = d[0] / wx * wa + xa
        y = d[1] / wy * ha + ya
        w = math.exp(min(d[2] / ww, DELTA_CLAMP)) * wa
        h = math.exp(min(d[3] / wh, DELTA_CLAMP)) * ha
        out.append([x - w / 2, y - h / 2, x + w / 2, y + h / 2])
    return np.array(out).reshape(-1, 4)


def clip(boxes, height, width):
    out = []
    for x1, y1, x2, y2 in np.asarray(boxes, np.float64):
        out.append([min(max(x1, 0.0), width), min(max(y1, 0.0), height),
                    min(max(x2, 0.0), width), min(max(y2, 0.0), height)])
    return np.array(out).reshape(-1, 4)


# ----------------------------------------------------------------------------- anchors
def anchors(feature_height, feature_width, stride, scales, ratios):
    """Nested loops: rows, columns, then scales, then ratios (height / width)."""
    out = []
    for i in range(feature_height):
        for j in range(feature_width):
            cx, cy = (j + 0.5) * stride, (i + 0.5) * stride
            for s in scales:
                for r in ratios:
                    # w * h = s**2 and h / w = r
                    w = math.sqrt(s * s / r)
                    h = w * r
                    out.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return np.array(out).reshape(-1, 4)


def inside(anchor_boxes, height, width, border=0.0):
    return np.array([a[0] >= -border and a[1] >= -border and a[2] <= width + border
                     and a[3] <= height + border for a in anchor_boxes], bool)


# ----------------------------------------------------------------------------- matching
def match(iou_matrix, gt_valid, pos, neg, allow_low_quality=True, anchor_valid=None):
    """One image: ``iou_matrix (N, G)`` -> ``labels (N,)`` in {1, 0, -1}, ``matched (N,)``.

    The paper's rule with explicit loops.  ``matched`` is the first valid GT of highest IoU
    (or -1 where there is none).
    """
    n, g = iou_matrix.shape
    if anchor_valid is None:
        anchor_valid = [True] * n
    labels = [-1] * n
    matched = [-1] * n
    for i in range(n):
        if not anchor_valid[i]:
            continue
        best, best_j = None, -1
        for j in range(g):
            if gt_valid[j] and (best is None or iou_matrix[i, j] > best):
                best, best_j = iou_matrix[i, j], j
        matched[i] = best_j
        if best is None or best < neg:
            labels[i] = 0
        elif best >= pos:
            labels[i] = 1
    if allow_low_quality:
        for j in range(g):
            if not gt_valid[j]:
                continue
            best = max([iou_matrix[i, j] for i in range(n) if anchor_valid[i]], default=0.0)
            if best <= 0:
                continue
            for i in range(n):
                if anchor_valid[i] and iou_matrix[i, j] == best:
                    labels[i] = 1
    return np.array(labels, np.int64), np.array(matched, np.int64)


# ----------------------------------------------------------------------------- NMS
def nms(boxes, scores, iou_threshold, max_output_size, score_threshold=-np.inf):
    """Greedy NMS: highest score first (ties: lower index), drop IoU > threshold."""
    order = sorted([i for i in range(len(scores)) if scores[i] > score_threshold],
                   key=lambda i: (-float(scores[i]), i))
    keep = []
    suppressed = set()
    for i in order:
        if i in suppressed:
            continue
        keep.append(i)
        if len(keep) == max_output_size:
            break
        for j in order:
            if j not in suppressed and j != i and iou_pair(boxes[i], boxes[j]) > iou_threshold:
                suppressed.add(j)
    return keep


def batched_nms(boxes, scores, labels, iou_threshold, max_output_size):
    """Class-wise NMS: NMS per label, merged by descending score (ties: lower index)."""
    keep = []
    for lab in sorted(set(int(v) for v in labels)):
        idx = [i for i in range(len(labels)) if int(labels[i]) == lab]
        kept = nms([boxes[i] for i in idx], [scores[i] for i in idx], iou_threshold, len(idx))
        keep += [idx[k] for k in kept]
    keep.sort(key=lambda i: (-float(scores[i]), i))
    return keep[:max_output_size]


def greedy_nms_masks(boxes, scores, iou_threshold, max_output_size, labels=None):
    """Greedy NMS written a second way, for the exactness tests: the order by ``np.lexsort``
    (descending score, ties to the lower index), the IoU matrix at once, and suppression as a
    boolean mask updated row by row; ``labels`` masks the IoU (class-wise).

    The IoU is float32, one operation at a time in the order of ``boxes.iou``'s formula
    (``max(min - max, 0)`` sides, ``|a| + |b| - |a ∩ b|``, one division; an empty union gives
    0), so it is bit-equal to any float32 kernel that rounds each operation: a threshold
    test can then not flip by rounding.  NaN IoUs (a box with a NaN coordinate) compare
    False: such a box overlaps nothing.
    """
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    s = np.asarray(scores, np.float32).reshape(-1)
    n = len(s)
    zero = np.float32(0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        area = np.maximum(b[:, 2] - b[:, 0], zero) * np.maximum(b[:, 3] - b[:, 1], zero)
        iw = np.maximum(np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]), zero)
        ih = np.maximum(np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]), zero)
        inter = iw * ih
        union = area[:, None] + area[None, :] - inter
        overlap = np.where(union != 0, inter / np.where(union != 0, union, np.float32(1)), zero)
        suppresses = overlap > np.float32(iou_threshold)
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        suppresses &= labels[:, None] == labels[None, :]
    order = np.lexsort((np.arange(n), -s.astype(np.float64)))
    gone = np.zeros(n, bool)
    keep = []
    for i in order:
        if gone[i]:
            continue
        keep.append(int(i))
        if len(keep) == max_output_size:
            break
        gone |= suppresses[i]
    return keep


# ----------------------------------------------------------------------------- RoI features
def bilinear(feature, y, x):
    """``feature (H, W, C)`` at continuous ``(y, x)``, Detectron2's border rule: 0 more than
    one pixel outside the map (``y < -1`` or ``y > H``), else coordinates clamped into it."""
    h, w = feature.shape[:2]
    if y < -1 or y > h or x < -1 or x > w:
        return np.zeros(feature.shape[2])
    y, x = min(max(y, 0.0), h - 1.0), min(max(x, 0.0), w - 1.0)
    y0, x0 = int(math.floor(y)), int(math.floor(x))
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * feature[y0, x0] + (1 - ly) * lx * feature[y0, x1]
            + ly * (1 - lx) * feature[y1, x0] + ly * lx * feature[y1, x1])


def _feature_box(roi, stride):
    # image coordinate x -> continuous feature coordinate x / stride - 0.5
    return [float(v) / stride - 0.5 for v in roi]


def roi_align(features, rois, box_indices, stride, output_size, sampling_ratio):
    """RoIAlign: per bin, the mean of ``sampling_ratio**2`` bilinear samples placed at
    ``lo + (k + 0.5) * (hi - lo) / n`` with ``n = output_size * sampling_ratio``."""
    features = np.asarray(features, np.float64)
    n = output_size * sampling_ratio
    out = np.zeros((len(rois), output_size, output_size, features.shape[3]))
    for r, (roi, b) in enumerate(zip(rois, box_indices)):
        x1, y1, x2, y2 = _feature_box(roi, stride)
        for by in range(output_size):
            for bx in range(output_size):
                acc = np.zeros(features.shape[3])
                for sy in range(sampling_ratio):
                    for sx in range(sampling_ratio):
                        ky, kx = by * sampling_ratio + sy, bx * sampling_ratio + sx
                        y = y1 + (ky + 0.5) * (y2 - y1) / n
                        x = x1 + (kx + 0.5) * (x2 - x1) / n
                        acc += bilinear(features[b], y, x)
                out[r, by, bx] = acc / sampling_ratio ** 2
    return out


def roi_pool(features, rois, box_indices, stride, output_size):
    """Luminoth's RoI pooling: ``2S x 2S`` bilinear samples from edge to edge
    (sample k at ``lo + k * (hi - lo) / (2S - 1)``), then the max of each 2x2 block."""
    features = np.asarray(features, np.float64)
    n = 2 * output_size
    out = np.full((len(rois), output_size, output_size, features.shape[3]), -np.inf)
    for r, (roi, b) in enumerate(zip(rois, box_indices)):
        x1, y1, x2, y2 = _feature_box(roi, stride)
        for ky in range(n):
            for kx in range(n):
                y = y1 + ky * (y2 - y1) / (n - 1)
                x = x1 + kx * (x2 - x1) / (n - 1)
                v = bilinear(features[b], y, x)
                out[r, ky // 2, kx // 2] = np.maximum(out[r, ky // 2, kx // 2], v)
    return out


# ----------------------------------------------------------------------------- losses
def smooth_l1(x, sigma=1.0):
    out = []
    for v in np.ravel(np.asarray(x, np.float64)):
        if abs(v) < 1.0 / sigma ** 2:
            out.append(0.5 * (sigma * v) ** 2)
        else:
            out.append(abs(v) - 0.5 / sigma ** 2)
    return np.array(out).reshape(np.shape(x))


def sigmoid_ce(logit, label):
    # -[y log s(z) + (1-y) log(1-s(z))] written stably
    return max(logit, 0.0) - logit * label + math.log1p(math.exp(-abs(logit)))


def softmax_ce(logits, label):
    m = max(logits)
    return -(logits[label] - m - math.log(sum(math.exp(v - m) for v in logits)))


# ----------------------------------------------------------------------------- helpers
def random_boxes(rng, n, low=0.0, high=100.0, min_size=1.0, max_size=50.0):
    """``n`` xyxy boxes with positive size, float32."""
    x1 = rng.uniform(low, high, n)
    y1 = rng.uniform(low, high, n)
    w = rng.uniform(min_size, max_size, n)
    h = rng.uniform(min_size, max_size, n)
    return np.stack([x1, y1, x1 + w, y1 + h], axis=1).astype(np.float32)
