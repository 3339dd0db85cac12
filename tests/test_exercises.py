"""The exercise checkers: each accepts a correct solution and names typical mistakes.

For every checker: a reference solution written here (independently of the checker's own
variants) passes; at least two typical wrong implementations fail with the hint that points
at their mistake; a stub reports "not implemented yet" and a crash one line, never a traceback.
"""
import math

import numpy as np
import pytest
import tensorflow as tf

from frcnn_lib import exercises as ex
from frcnn_lib.exercises import _report


def verdict(capsys, check, fn, *args):
    """(result, printed text) of ``check(fn, *args)``."""
    result = check(fn, *args)
    return result, capsys.readouterr().out


def assert_pass(capsys, check, fn, *args):
    ok, out = verdict(capsys, check, fn, *args)
    assert ok is True, out
    assert out.startswith("[PASS]"), out


def assert_hint(capsys, check, fn, hint, *args):
    ok, out = verdict(capsys, check, fn, *args)
    assert ok is False, out
    assert out.startswith("[FAIL]"), out
    assert "hint:" in out and hint in out, out
    assert "Traceback" not in out
    return out


# ----------------------------------------------------------------- the verdict machinery
def stub(*args, **kwargs):
    raise NotImplementedError("not implemented yet")


def crash(*args, **kwargs):
    return np.zeros(3)[5]


ALL_CHECKS = [ex.check_voc_to_xyxy, ex.check_to_normalized_yxyx, ex.check_iou, ex.check_decode,
              ex.check_feature_map_size, ex.check_generate_anchors, ex.check_label_anchors,
              ex.check_sample_balanced, ex.check_smooth_l1, ex.check_rpn_losses, ex.check_nms,
              ex.check_roi_align_grid, ex.check_label_rois, ex.check_precision_recall,
              ex.check_voc_ap, ex.check_coco_to_targets]


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.title)
def test_a_stub_is_not_implemented_yet(capsys, check):
    ok, out = verdict(capsys, check, stub)
    assert ok is False
    assert out.count("\n") == 1 and "not implemented yet" in out and check.title in out, out


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.title)
def test_a_crash_is_one_line(capsys, check):
    ok, out = verdict(capsys, check, crash)
    assert ok is False
    assert out.count("\n") == 1, out
    assert out.startswith("[ERROR]") and "IndexError" in out and "(case: " in out, out
    assert "Traceback" not in out


def test_compact_prints_small_arrays_inline_and_large_ones_by_shape():
    assert _report.compact(np.array([[1.0, 2.5]])) == "[[1. , 2.5]]"
    text = _report.compact(np.zeros((100, 4)))
    assert "shape (100, 4)" in text and "\n" not in text


def test_compare_names_shape_and_first_difference():
    assert _report.compare([1, 2], np.array([1, 2.00001])) is None
    assert "wrong shape" in _report.compare(np.zeros((2, 3)), np.zeros((3, 2)))
    reason = _report.compare([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    assert "index (2,)" in reason and "expected 3" in reason and "got 4" in reason


# ----------------------------------------------------------------- 01: boxes
def voc_ok(b):
    b = np.array(b, np.float32)
    b[:, :2] -= 1
    return b


def test_voc_to_xyxy(capsys):
    assert_pass(capsys, ex.check_voc_to_xyxy, voc_ok)
    assert_hint(capsys, ex.check_voc_to_xyxy, lambda b: b, "subtract 1 from xmin and ymin")
    assert_hint(capsys, ex.check_voc_to_xyxy, lambda b: b - 1, "xmax and ymax stay")
    assert_hint(capsys, ex.check_voc_to_xyxy, lambda b: voc_ok(b) + [0, 0, 1, 1], "devkit's +1")


def yxyx_ok(boxes, height, width):
    x1, y1, x2, y2 = np.moveaxis(np.asarray(boxes, np.float64), -1, 0)
    return np.stack([y1 / height, x1 / width, y2 / height, x2 / width], -1)


def test_to_normalized_yxyx(capsys):
    assert_pass(capsys, ex.check_to_normalized_yxyx, yxyx_ok)
    assert_hint(capsys, ex.check_to_normalized_yxyx,
                lambda b, h, w: np.asarray(b) / [w, h, w, h], "still in xyxy order")
    assert_hint(capsys, ex.check_to_normalized_yxyx,
                lambda b, h, w: yxyx_ok(b, w, h), "height and width are swapped")


# ----------------------------------------------------------------- 04: IoU
def iou_loops(a, b, plus=0.0, clamp=True):
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            w = min(p[2], q[2]) - max(p[0], q[0]) + plus
            h = min(p[3], q[3]) - max(p[1], q[1]) + plus
            inter = max(w, 0) * max(h, 0) if clamp else w * h
            union = ((p[2] - p[0] + plus) * (p[3] - p[1] + plus)
                     + (q[2] - q[0] + plus) * (q[3] - q[1] + plus) - inter)
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def test_iou(capsys):
    assert_pass(capsys, ex.check_iou, iou_loops)
    assert_hint(capsys, ex.check_iou, lambda a, b: iou_loops(a, b, plus=1.0), "VOC devkit's '+1'")
    assert_hint(capsys, ex.check_iou, lambda a, b: iou_loops(a, b, clamp=False), "not clamped at 0")
    out = assert_hint(capsys, ex.check_iou, lambda a, b: iou_loops(a, b).T, "")
    assert "wrong shape" in out


def test_iou_without_a_guard_reports_nan(capsys):
    def unguarded(a, b):
        a, b = np.asarray(a, np.float64)[:, None], np.asarray(b, np.float64)[None]
        iw = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0)
        ih = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0)
        inter = iw * ih
        area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
        with np.errstate(invalid="ignore"):
            return inter / (area(a) + area(b) - inter)
    assert_hint(capsys, ex.check_iou, unguarded, "NaN")


# ----------------------------------------------------------------- 06: decode
def decode_ok(deltas, anchors, clamp=True):
    d, a = np.asarray(deltas, np.float64), np.asarray(anchors, np.float64)
    w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    cx, cy = a[:, 0] + w / 2 + d[:, 0] * w, a[:, 1] + h / 2 + d[:, 1] * h
    lim = math.log(1000 / 16) if clamp else np.inf
    nw, nh = np.exp(np.minimum(d[:, 2], lim)) * w, np.exp(np.minimum(d[:, 3], lim)) * h
    return np.stack([cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2], 1)


def test_decode(capsys):
    assert_pass(capsys, ex.check_decode, decode_ok)
    assert_hint(capsys, ex.check_decode, lambda d, a: decode_ok(d, a, clamp=False), "clamp tw and th")
    assert_hint(capsys, ex.check_decode,
                lambda d, a: decode_ok(np.asarray(d, np.float32), a.astype(np.float32), clamp=False)
                .astype(np.float32), "clamp tw and th")

    def no_exp(d, a):
        a = np.asarray(a, np.float64)
        w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
        cx, cy = (a[:, 0] + a[:, 2]) / 2 + d[:, 0] * w, (a[:, 1] + a[:, 3]) / 2 + d[:, 1] * h
        nw, nh = (1 + d[:, 2]) * w, (1 + d[:, 3]) * h
        return np.stack([cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2], 1)
    assert_hint(capsys, ex.check_decode, no_exp, "exp(tw) * wa")


# ----------------------------------------------------------------- 02, 03: sizes and anchors
def test_feature_map_size(capsys):
    assert_pass(capsys, ex.check_feature_map_size, lambda h, w: (h // 16, w // 16))
    assert_hint(capsys, ex.check_feature_map_size,
                lambda h, w: (math.ceil(h / 16), math.ceil(w / 16)), "rounded up")
    assert_hint(capsys, ex.check_feature_map_size, lambda h, w: (h / 16, w / 16), "not an integer")
    assert_hint(capsys, ex.check_feature_map_size, lambda h, w: (w // 16, h // 16), "swapped")


def test_feature_map_size_reference_is_the_vgg16_backbone():
    from frcnn_lib.backbones import build_backbone
    from frcnn_lib.exercises.anchors import _feature_size_reference
    backbone, stride = build_backbone("vgg16", None)
    assert stride == 16
    for h, w in [(160, 160), (33, 47)]:
        out = backbone(tf.zeros((1, h, w, 3)))
        assert tuple(out.shape[1:3]) == tuple(_feature_size_reference(h, w).astype(int))
    for h, w in [(600, 1000), (375, 500)]:
        shape = backbone.compute_output_shape((1, h, w, 3))
        assert tuple(shape[1:3]) == tuple(_feature_size_reference(h, w).astype(int))


def anchors_loops(fh, fw, stride, scales, ratios, offset=0.5, order="location", inv=False):
    rows = []
    locations = [(i, j) for i in range(fh) for j in range(fw)]
    if order == "column":
        locations = [(i, j) for j in range(fw) for i in range(fh)]
    for i, j in locations:
        cx, cy = (j + offset) * stride, (i + offset) * stride
        for s in scales:
            for r in ratios:
                r = 1 / r if inv else r
                w, h = s / math.sqrt(r), s * math.sqrt(r)
                rows.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return np.array(rows)


def test_generate_anchors(capsys):
    assert_pass(capsys, ex.check_generate_anchors, anchors_loops)
    assert_hint(capsys, ex.check_generate_anchors,
                lambda *a: anchors_loops(*a, offset=0.0), "half a stride")
    assert_hint(capsys, ex.check_generate_anchors, lambda *a: anchors_loops(*a, inv=True),
                "ratio is inverted")
    assert_hint(capsys, ex.check_generate_anchors, lambda *a: anchors_loops(*a, order="column"),
                "column by column")

    def swapped(fh, fw, stride, scales, ratios):
        a = anchors_loops(fh, fw, stride, scales, ratios)
        centres = np.array([[(i + 0.5) * stride, (j + 0.5) * stride]
                            for i in range(fh) for j in range(fw) for _ in range(len(scales) * len(ratios))])
        half = (a[:, 2:] - a[:, :2]) / 2
        return np.concatenate([centres - half, centres + half], 1)
    assert_hint(capsys, ex.check_generate_anchors, swapped, "x and y are swapped")


# ----------------------------------------------------------------- 04: labels and sampling
def label_ok(ious, pos, neg, ties=True, strict=False):
    ious = np.asarray(ious)
    best = ious.max(1)
    labels = np.where(best > pos if strict else best >= pos, 1, np.where(best < neg, 0, -1))
    for g in range(ious.shape[1]):
        top = ious[:, g].max()
        if top > 0:
            winners = np.flatnonzero(ious[:, g] == top) if ties else [np.argmax(ious[:, g])]
            labels[winners] = 1
    return labels


def test_label_anchors(capsys):
    assert_pass(capsys, ex.check_label_anchors, label_ok)
    assert_hint(capsys, ex.check_label_anchors, lambda i, p, n: label_ok(i, p, n, ties=False),
                "ties in the best-anchor rule")
    assert_hint(capsys, ex.check_label_anchors, lambda i, p, n: label_ok(i, p, n, strict=True),
                "use >= positive_iou")

    def no_rule(ious, pos, neg):
        best = np.asarray(ious).max(1)
        return np.where(best >= pos, 1, np.where(best < neg, 0, -1))
    assert_hint(capsys, ex.check_label_anchors, no_rule, "best-anchor rule is missing")


def sample_ok(labels, num_samples, positive_fraction, rng, neg_quota=False, first=False,
              fixed_seed=False):
    rng = np.random.default_rng(0) if fixed_seed else rng
    out = np.full_like(labels, -1)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    n_pos = min(len(pos), round(num_samples * positive_fraction))
    n_neg = min(len(neg), num_samples - (round(num_samples * positive_fraction) if neg_quota else n_pos))
    pick = (lambda idx, k: idx[:k]) if first else (lambda idx, k: rng.permutation(idx)[:k])
    out[pick(pos, n_pos)] = 1
    out[pick(neg, n_neg)] = 0
    return out


def test_sample_balanced(capsys):
    assert_pass(capsys, ex.check_sample_balanced, sample_ok)
    assert_hint(capsys, ex.check_sample_balanced, lambda *a: sample_ok(*a, neg_quota=True),
                "negatives fill the rest of the budget")
    assert_hint(capsys, ex.check_sample_balanced, lambda *a: sample_ok(*a, first=True),
                "choose at random")
    assert_hint(capsys, ex.check_sample_balanced, lambda *a: sample_ok(*a, fixed_seed=True),
                "draw with the rng argument")
    assert_hint(capsys, ex.check_sample_balanced,
                lambda labels, *a: np.where(labels == -1, 0, sample_ok(labels, *a)),
                "only turns labels into -1")


# ----------------------------------------------------------------- 05: losses
def smooth_l1_ok(x, sigma, switch=None, offset=True):
    x = np.abs(np.asarray(x, np.float64))
    switch = 1 / sigma ** 2 if switch is None else switch
    return np.where(x < switch, 0.5 * (sigma * x) ** 2, x - (0.5 / sigma ** 2 if offset else 0))


def test_smooth_l1(capsys):
    assert_pass(capsys, ex.check_smooth_l1, smooth_l1_ok)
    assert_pass(capsys, ex.check_smooth_l1, lambda x, s: tf.where(
        tf.abs(x) < 1 / s ** 2, 0.5 * (s * x) ** 2, tf.abs(x) - 0.5 / s ** 2))
    assert_hint(capsys, ex.check_smooth_l1, lambda x, s: smooth_l1_ok(x, s, switch=1 / s),
                "switch point is at 1 / sigma**2")
    assert_hint(capsys, ex.check_smooth_l1, lambda x, s: smooth_l1_ok(x, s, offset=False),
                "without the offset")
    assert_hint(capsys, ex.check_smooth_l1, lambda x, s: np.abs(x), "plain L1")


def rpn_ok(logits, deltas, labels, targets, sigma=3.0, ignored_as_neg=False, by_positives=False):
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
    p = 1 / (1 + np.exp(-logits))
    y = (labels == 1).astype(float)
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    sampled = np.ones_like(labels, bool) if ignored_as_neg else labels >= 0
    obj = bce[sampled].sum() / max(sampled.sum(), 1)
    per = smooth_l1_ok(np.asarray(deltas) - targets, sigma).sum(-1)
    norm = (labels == 1).sum() if by_positives else (labels >= 0).sum()
    return obj, per[labels == 1].sum() / max(norm, 1)


def test_rpn_losses(capsys):
    assert_pass(capsys, ex.check_rpn_losses, rpn_ok)
    assert_hint(capsys, ex.check_rpn_losses, lambda *a: rpn_ok(*a, ignored_as_neg=True),
                "includes the ignored anchors")
    assert_hint(capsys, ex.check_rpn_losses, lambda *a: rpn_ok(*a, by_positives=True),
                "divided by the number of positives")
    assert_hint(capsys, ex.check_rpn_losses, lambda lo, d, la, t, s: rpn_ok(lo, d, la, t, 1.0),
                "sigma = 3")


# ----------------------------------------------------------------- 06: NMS
def nms_ok(boxes, scores, thr, order=None, ge=False):
    order = list(np.argsort(-np.asarray(scores), kind="stable")) if order is None else list(order)
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        ious = iou_loops(boxes[[i]], boxes[order])[0] if order else np.zeros(0)
        order = [j for j, v in zip(order, ious) if not (v >= thr if ge else v > thr)]
    return keep


def test_nms(capsys):
    assert_pass(capsys, ex.check_nms, nms_ok)
    assert_hint(capsys, ex.check_nms, lambda b, s, t: nms_ok(b, s, t, order=range(len(s))),
                "sort by score first")
    assert_hint(capsys, ex.check_nms, lambda b, s, t: nms_ok(b, s, t, ge=True),
                "suppress only IoU > iou_threshold")
    assert_hint(capsys, ex.check_nms, lambda b, s, t: nms_ok(b, s, t, order=np.argsort(s)[::-1]),
                "ties in score go to the lower index")


# ----------------------------------------------------------------- 07: RoIAlign grid
def grid_ok(roi, stride, output_size, sampling_ratio, offset=0.5, edges=False):
    x1, y1, x2, y2 = np.asarray(roi, np.float64) / stride - offset
    n = output_size * sampling_ratio
    t = np.arange(n) / max(n - 1, 1) if edges else (np.arange(n) + 0.5) / n
    return y1 + t * (y2 - y1), x1 + t * (x2 - x1)


def test_roi_align_grid(capsys):
    assert_pass(capsys, ex.check_roi_align_grid, grid_ok)
    assert_hint(capsys, ex.check_roi_align_grid, lambda *a: grid_ok(*a, offset=0.0),
                "half-pixel offset is missing")
    assert_hint(capsys, ex.check_roi_align_grid, lambda *a: grid_ok(*a)[::-1], "ys and xs are swapped")
    assert_hint(capsys, ex.check_roi_align_grid, lambda *a: grid_ok(*a, edges=True), "edge to edge")


def test_roi_align_grid_reference_is_the_formula():
    from frcnn_lib.exercises.roi import _grid_reference
    roi = np.array([20.5, 33.25, 84.5, 57.25], np.float32)
    np.testing.assert_allclose(np.stack(grid_ok(roi, 16, 7, 2)), _grid_reference(roi, 16, 7, 2), atol=1e-4)


# ----------------------------------------------------------------- 08: R-CNN labels
def rois_ok(rois, gt, gt_labels, fg, lo, hi, as_one=False, no_low=False):
    ious = iou_loops(rois, gt)
    best, j = ious.max(1), ious.argmax(1)
    cls = np.ones(len(rois), int) if as_one else np.asarray(gt_labels)[j]
    background = best < hi if no_low else (best >= lo) & (best < hi)
    return np.where(best >= fg, cls, np.where(background, 0, -1))


def test_label_rois(capsys):
    assert_pass(capsys, ex.check_label_rois, rois_ok)
    assert_hint(capsys, ex.check_label_rois, lambda *a: rois_ok(*a, as_one=True), "labelled 1")
    assert_hint(capsys, ex.check_label_rois, lambda *a: rois_ok(*a, no_low=True),
                "below background_iou_low are ignored")


def test_label_rois_reference_agrees_with_rcnn_targets():
    from frcnn_lib.exercises.rcnn_targets import _labels_reference
    from frcnn_lib.targets import rcnn_targets
    rng = np.random.default_rng(0)
    gt = np.array([[10, 10, 50, 50], [60, 20, 90, 70]], np.float32)
    gt_labels = np.array([4, 2], np.int32)
    props = (np.repeat(gt, 20, 0) + rng.normal(0, 8, (40, 4))).astype(np.float32)
    props[:, 2:] = np.maximum(props[:, 2:], props[:, :2] + 1)
    want = _labels_reference(props, gt, gt_labels, 0.5, 0.1, 0.5)
    n = len(props) + len(gt)
    rois, labels, _ = rcnn_targets(props[None], np.ones((1, 40), bool), gt[None], gt_labels[None],
                                   tf.constant([0, 0]), num_samples=n, foreground_fraction=1.0)
    rois, labels = rois.numpy()[0], labels.numpy()[0]
    taken = labels >= 0
    from_props = [np.flatnonzero((props == r).all(1)) for r in rois[taken]]
    got = {int(i[0]): int(lab) for i, lab in zip(from_props, labels[taken]) if len(i)}
    assert got == {int(i): int(want[i]) for i in np.flatnonzero(want >= 0)}


# ----------------------------------------------------------------- 10: evaluation
def curve_ok(scores, is_tp, npos, sort=True):
    order = np.argsort(-np.asarray(scores), kind="stable") if sort else np.arange(len(scores))
    tp = np.cumsum(np.asarray(is_tp)[order])
    return tp / npos, tp / np.arange(1, len(tp) + 1)


def test_precision_recall(capsys):
    assert_pass(capsys, ex.check_precision_recall, curve_ok)
    assert_hint(capsys, ex.check_precision_recall, lambda *a: curve_ok(*a, sort=False),
                "not sorted by score")
    assert_hint(capsys, ex.check_precision_recall,
                lambda s, t, n: (curve_ok(s, t, n)[0] * n / len(s), curve_ok(s, t, n)[1]),
                "recall is divided by the number of detections")


def ap_ok(recall, precision, use_07_metric, envelope=True, points=None):
    recall, precision = np.asarray(recall, float), np.asarray(precision, float)
    if envelope:
        precision = np.array([precision[k:].max() for k in range(len(precision))])
    if use_07_metric:
        points = np.arange(11) / 10 if points is None else points
        return sum(precision[recall >= t].max() if (recall >= t).any() else 0.0 for t in points) / 11
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def test_voc_ap(capsys):
    assert_pass(capsys, ex.check_voc_ap, ap_ok)
    assert_hint(capsys, ex.check_voc_ap, lambda r, p, m: ap_ok(r, p, m) * (11 / 10 if m else 1),
                "divided by 10")
    assert_hint(capsys, ex.check_voc_ap, lambda r, p, m: ap_ok(r, p, m, points=np.arange(0, 1.1, 0.1)),
                "not exactly k / 10")
    assert_hint(capsys, ex.check_voc_ap, lambda r, p, m: float(np.trapezoid(p, r)) if not m else ap_ok(r, p, m),
                "trapezoidal")


def test_voc_ap_without_envelope(capsys):
    def no_envelope(recall, precision, use_07_metric):
        recall, precision = np.asarray(recall, float), np.asarray(precision, float)
        if use_07_metric:
            return sum(precision[np.argmax(recall >= t)] if (recall >= t).any() else 0.0
                       for t in np.arange(11) / 10) / 11
        return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))
    assert_hint(capsys, ex.check_voc_ap, no_envelope, "not interpolated")


# ----------------------------------------------------------------- 11: adapter
def coco_ok(coco, xywh=False, raw_ids=False):
    cats = {c: k + 1 for k, c in enumerate(sorted(c["id"] for c in coco["categories"]))}
    out = []
    for info in sorted(coco["images"], key=lambda i: i["id"]):
        anns = [a for a in coco["annotations"] if a["image_id"] == info["id"] and not a["iscrowd"]]
        boxes, labels = [], []
        for a in anns:
            x, y, w, h = a["bbox"]
            box = np.array([x, y, w, h] if xywh else [x, y, x + w, y + h])
            box = np.clip(box, 0, [info["width"], info["height"]] * 2)
            if box[2] > box[0] and box[3] > box[1]:
                boxes.append(box)
                labels.append(a["category_id"] if raw_ids else cats[a["category_id"]])
        out.append({"boxes": np.array(boxes).reshape(-1, 4), "labels": np.array(labels)})
    return out


def test_coco_to_targets(capsys):
    assert_pass(capsys, ex.check_coco_to_targets, coco_ok)
    assert_hint(capsys, ex.check_coco_to_targets, lambda c: coco_ok(c, xywh=True), "still [x, y, w, h]")
    assert_hint(capsys, ex.check_coco_to_targets, lambda c: coco_ok(c, raw_ids=True),
                "COCO's category ids")

    def with_crowd(coco):
        for a in coco["annotations"]:
            a["iscrowd"] = 0
        return coco_ok(coco)
    assert_hint(capsys, ex.check_coco_to_targets, with_crowd, "iscrowd")


# ----------------------------------------------------------------- 09: one training step
@pytest.fixture(scope="module")
def tiny_model_and_batch():
    from frcnn_lib import FasterRCNN
    from frcnn_lib.datasets import make_dataset, shapes
    from frcnn_lib.presets import get_preset
    data = shapes.load("train", num_images=2, image_size=(64, 64))
    settings = dict(get_preset("shapes_cpu")["model"], image_min_side=64, image_max_side=64)
    model = FasterRCNN(data.num_classes, **settings)
    model.build()
    images, targets = next(iter(make_dataset(data, batch_size=2, training=False)))
    return model, images, targets


def step_ok(model, images, targets, decay=True, sign=1.0, apply=True):
    s = model.settings
    with tf.GradientTape() as tape:
        parts = model.compute_losses(images, targets, training=True)
        total = sum(s[f"loss_{n}_weight"] * parts[n]
                    for n in ("rpn_objectness", "rpn_box", "rcnn_class", "rcnn_box"))
        if decay:
            total += 0.5 * s["weight_decay"] * sum(tf.reduce_sum(w ** 2) for w in model.trainable_weights
                                                   if "kernel" in w.path)
        objective = sign * total
    grads = tape.gradient(objective, model.trainable_weights)
    if apply:
        model.optimizer.apply_gradients(zip(grads, model.trainable_weights))
    return total


def test_train_step(capsys, tiny_model_and_batch):
    model, images, targets = tiny_model_and_batch
    before = model.get_weights()
    check = ex.check_train_step
    assert_pass(capsys, check, step_ok, model, images, targets)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights())), "model changed"
    assert_hint(capsys, check, lambda *a: step_ok(*a, decay=False), "weight decay is missing",
                model, images, targets)
    assert_hint(capsys, check, lambda *a: step_ok(*a, sign=-1.0), "moved uphill", model, images, targets)
    assert_hint(capsys, check, lambda *a: step_ok(*a, apply=False), "no weight changed",
                model, images, targets)
    assert_hint(capsys, check, lambda *a: (step_ok(*a), None)[1] or 0.0, "return the total loss",
                model, images, targets)
    ok, out = verdict(capsys, check, stub, model, images, targets)
    assert not ok and "not implemented yet" in out and out.count("\n") == 1
