"""The exercise checkers: each accepts a correct solution and rejects typical mistakes.

For every checker: the reference answer (notebooks/_tools/reference_answers.py, the one the
answer-filled notebooks run) and the check's own fallback (``check.reference``) pass; at
least four typical wrong implementations, written here independently of the checker's own
variants, fail, most with the hint that points at their mistake; a stub reports "not
implemented yet" (and sets ``last_not_implemented``), a crash one line, a missing
``return`` says so.  For the parts of the detector that run inside the compiled step, a
numpy-only version that gives the right values is rejected by the ``tf.function`` case.
"""
import math
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from frcnn_lib.course import exercises as ex
from frcnn_lib.course.exercises import _report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "notebooks" / "_tools"))
from reference_answers import ANSWERS  # noqa: E402


def verdict(capsys, check, fn, *args):
    """(result, printed text) of ``check(fn, *args)``."""
    result = check(fn, *args)
    return result, capsys.readouterr().out


def assert_pass(capsys, check, fn, *args):
    ok, out = verdict(capsys, check, fn, *args)
    assert ok is True, out
    assert out.startswith("[PASS]"), out
    return out


def assert_hint(capsys, check, fn, hint, *args):
    ok, out = verdict(capsys, check, fn, *args)
    assert ok is False, out
    assert out.startswith("[FAIL]"), out
    assert "hint:" in out and hint in out, out
    assert "Traceback" not in out
    return out


def assert_graph_rejects(capsys, check, fn, *args):
    """``fn`` gives the right values on numpy arrays, and fails the tf.function case."""
    ok, out = verdict(capsys, check, fn, *args)
    assert ok is False, out
    assert out.startswith("[FAIL]") and "inside tf.function" in out, out
    assert "write it with keras.ops" in out, out


# ----------------------------------------------------------------- the verdict machinery
def stub(*args, **kwargs):
    raise NotImplementedError("not implemented yet")


def crash(*args, **kwargs):
    return np.zeros(3)[5]


def no_return(*args, **kwargs):
    np.zeros(3)   # the learner computed something and forgot to return it


ALL_CHECKS = [ex.check_voc_to_xyxy, ex.check_to_normalized_yxyx, ex.check_iou, ex.check_encode,
              ex.check_decode, ex.check_feature_map_size, ex.check_generate_anchors,
              ex.check_label_anchors, ex.check_sample_balanced, ex.check_smooth_l1,
              ex.check_rpn_losses, ex.check_nms, ex.check_roi_align_grid, ex.check_label_rois,
              ex.check_precision_recall, ex.check_voc_ap, ex.check_coco_to_targets,
              ex.check_fpn_level]
ANSWER_OF = {"voc_to_xyxy": "my_voc_to_xyxy", "to_normalized_yxyx": "my_to_normalized_yxyx",
             "iou": "my_iou", "encode": "my_encode", "decode": "my_decode",
             "feature_map_size": "my_feature_map_size", "generate_anchors": "my_generate_anchors",
             "label_anchors": "my_label_anchors", "sample_balanced": "my_sample_balanced",
             "smooth_l1": "my_smooth_l1", "rpn_losses": "my_rpn_losses", "nms": "my_nms",
             "roi_align_grid": "my_roi_align_grid", "label_rois": "my_label_rois",
             "precision_recall": "my_precision_recall", "voc_ap": "my_voc_ap",
             "coco_to_targets": "my_coco_to_targets", "fpn_level": "my_fpn_level"}
PARTS = {"generate_anchors": "anchors", "iou": "iou", "label_anchors": "label_anchors",
         "sample_balanced": "sample", "encode": "encode", "decode": "decode",
         "smooth_l1": "smooth_l1", "nms": "nms", "roi_align_grid": "roi_align_grid"}
by_title = pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.title)


@by_title
def test_the_reference_answer_passes(capsys, check):
    assert_pass(capsys, check, ANSWERS[ANSWER_OF[check.title]])


@by_title
def test_the_fallback_passes_its_own_check(capsys, check):
    assert callable(check.reference) and check.library is not None
    assert_pass(capsys, check, check.reference)


@pytest.mark.parametrize("check", ALL_CHECKS + [ex.check_train_step], ids=lambda c: c.title)
def test_show_reference_prints_the_library_code(capsys, check):
    ex.show_reference(check)
    assert "def " in capsys.readouterr().out


def test_every_check_names_its_part_and_every_part_has_a_check():
    from frcnn_lib.course.promotion import PART_FIELDS
    assert {c.title: c.part for c in ALL_CHECKS if c.part} == PARTS
    assert set(ex.CHECKS_BY_PART) == set(PART_FIELDS)
    assert all(c.part is None for c in ALL_CHECKS if c.title not in PARTS)
    assert set(ANSWERS) >= set(ANSWER_OF.values()) | {"my_train_step"}


@by_title
def test_a_stub_is_not_implemented_yet(capsys, check):
    ok, out = verdict(capsys, check, stub)
    assert ok is False and check.last_not_implemented is True
    assert out.count("\n") == 1 and "not implemented yet" in out and check.title in out, out
    assert_pass(capsys, check, check.reference)
    assert check.last_not_implemented is False


@by_title
def test_a_missing_return_says_so(capsys, check):
    ok, out = verdict(capsys, check, no_return)
    assert ok is False and check.last_not_implemented is False
    assert out.count("\n") == 1 and "returned None" in out and "`return`" in out, out
    assert "NaN" not in out


@by_title
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
    check = ex.check_voc_to_xyxy
    assert_pass(capsys, check, voc_ok)
    assert_hint(capsys, check, lambda b: b, "subtract 1 from xmin and ymin")
    assert_hint(capsys, check, lambda b: b - 1, "xmax and ymax stay")
    assert_hint(capsys, check, lambda b: voc_ok(b) + [0, 0, 1, 1], "devkit's +1")
    assert_hint(capsys, check, lambda b: voc_ok(b)[:, [1, 0, 3, 2]], "x and y are swapped")


def yxyx_ok(boxes, height, width):
    x1, y1, x2, y2 = np.moveaxis(np.asarray(boxes, np.float64), -1, 0)
    return np.stack([y1 / height, x1 / width, y2 / height, x2 / width], -1)


def test_to_normalized_yxyx(capsys):
    check = ex.check_to_normalized_yxyx
    assert_pass(capsys, check, yxyx_ok)
    assert_hint(capsys, check, lambda b, h, w: np.asarray(b) / [w, h, w, h], "still in xyxy order")
    assert_hint(capsys, check, lambda b, h, w: yxyx_ok(b, w, h), "height and width are swapped")
    assert_hint(capsys, check, lambda b, h, w: yxyx_ok(b, 1, 1), "not normalised")
    assert_hint(capsys, check, lambda b, h, w: np.asarray(b) / [h, w, h, w], "swap to yxyx")


# ----------------------------------------------------------------- 04: IoU
def iou_loops(a, b, plus=0.0, clamp=True, twice=False, swap=False):
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        if swap:
            p = [p[1], p[0], p[3], p[2]]
        for j, q in enumerate(b):
            w = min(p[2], q[2]) - max(p[0], q[0]) + plus
            h = min(p[3], q[3]) - max(p[1], q[1]) + plus
            inter = max(w, 0) * max(h, 0) if clamp else w * h
            union = ((p[2] - p[0] + plus) * (p[3] - p[1] + plus)
                     + (q[2] - q[0] + plus) * (q[3] - q[1] + plus) - (0 if twice else inter))
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def test_iou(capsys):
    check = ex.check_iou
    assert_hint(capsys, check, lambda a, b: iou_loops(a, b, plus=1.0), "VOC devkit's '+1'")
    assert_hint(capsys, check, lambda a, b: iou_loops(a, b, clamp=False), "not clamped at 0")
    assert_hint(capsys, check, lambda a, b: iou_loops(a, b, twice=True), "counts the intersection twice")
    assert_hint(capsys, check, lambda a, b: iou_loops(a, b, swap=True), "x and y are swapped")
    out = assert_hint(capsys, check, lambda a, b: iou_loops(a, b).T, "")
    assert "wrong shape" in out


def test_iou_in_numpy_fails_inside_the_compiled_step(capsys):
    assert_graph_rejects(capsys, ex.check_iou, iou_loops)


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


# ----------------------------------------------------------------- 04: encode; 06: decode
def _centres(b, corners=False):
    b = np.asarray(b, np.float64)
    w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    return (b[..., 0], b[..., 1], w, h) if corners else (b[..., 0] + w / 2, b[..., 1] + h / 2, w, h)


def encode_np(boxes, anchors, weights=(1, 1, 1, 1), log=True, by_box=False, corners=False,
              use_weights=True, eps=1e-6):
    x, y, w, h = _centres(boxes, corners)
    ax, ay, aw, ah = _centres(anchors, corners)
    w, h = np.maximum(w, eps), np.maximum(h, eps)
    sx, sy = (w, h) if by_box else (aw, ah)
    tw, th = (np.log(w / aw), np.log(h / ah)) if log else (w / aw, h / ah)
    t = np.stack(np.broadcast_arrays((x - ax) / sx, (y - ay) / sy, tw, th), -1)
    return t * np.asarray(weights, np.float64) if use_weights else t


def test_encode(capsys):
    check = ex.check_encode
    assert_hint(capsys, check, lambda b, a, w=(1, 1, 1, 1): encode_np(b, a, w, log=False), "no log")
    assert_hint(capsys, check, lambda b, a, w=(1, 1, 1, 1): encode_np(b, a, w, by_box=True),
                "divided by the box's size")
    assert_hint(capsys, check, lambda b, a, w=(1, 1, 1, 1): encode_np(b, a, w, corners=True),
                "between corners")
    assert_hint(capsys, check, lambda b, a, w=(1, 1, 1, 1): encode_np(b, a, w, use_weights=False),
                "weights are ignored")
    with np.errstate(divide="ignore"):
        assert_hint(capsys, check, lambda b, a, w=(1, 1, 1, 1): encode_np(b, a, w, eps=0.0),
                    "tiny epsilon")


def test_encode_in_numpy_fails_inside_the_compiled_step(capsys):
    assert_graph_rejects(capsys, ex.check_encode, encode_np)


def decode_np(deltas, anchors, weights=(1, 1, 1, 1), clamp=True, use_exp=True, corner=False,
              use_weights=True, clamp_first=False):
    d = np.asarray(deltas, np.float64)
    wts = np.asarray(weights, np.float64) if use_weights else np.ones(4)
    ax, ay, aw, ah = _centres(anchors, corner)
    lim = math.log(1000 / 16) if clamp else np.inf
    tw, th = d[..., 2], d[..., 3]
    if clamp_first:
        tw, th = np.minimum(tw, lim), np.minimum(th, lim)
    tx, ty, tw, th = d[..., 0] / wts[0], d[..., 1] / wts[1], tw / wts[2], th / wts[3]
    tw, th = np.minimum(tw, lim), np.minimum(th, lim)
    with np.errstate(over="ignore", invalid="ignore"):
        w = (np.exp(tw) if use_exp else 1 + tw) * aw
        h = (np.exp(th) if use_exp else 1 + th) * ah
        cx, cy = ax + tx * aw, ay + ty * ah
        return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def test_decode(capsys):
    check = ex.check_decode
    one = (1, 1, 1, 1)
    assert_hint(capsys, check, lambda d, a, w=one: decode_np(d, a, w, clamp=False), "clamp tw and th")
    assert_hint(capsys, check, lambda d, a, w=one: decode_np(
        np.asarray(d, np.float32), np.asarray(a, np.float32), w, clamp=False).astype(np.float32),
        "clamp tw and th")
    assert_hint(capsys, check, lambda d, a, w=one: decode_np(d, a, w, use_exp=False), "exp(tw) * wa")
    assert_hint(capsys, check, lambda d, a, w=one: decode_np(d, a, w, corner=True), "anchor's corner")
    assert_hint(capsys, check, lambda d, a, w=one: decode_np(d, a, w, use_weights=False),
                "weights are ignored")
    assert_hint(capsys, check, lambda d, a, w=one: decode_np(d, a, w, clamp_first=True),
                "clamp comes before dividing")


def test_decode_in_numpy_fails_inside_the_compiled_step(capsys):
    assert_graph_rejects(capsys, ex.check_decode, decode_np)


def test_encode_and_decode_answers_are_inverse():
    rng = np.random.default_rng(0)
    anchors = np.concatenate([rng.uniform(0, 50, (20, 2)), rng.uniform(60, 120, (20, 2))], 1)
    boxes = anchors + rng.normal(0, 5, (20, 4))
    for w in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
        deltas = ANSWERS["my_encode"](boxes, anchors, w)
        np.testing.assert_allclose(np.asarray(ANSWERS["my_decode"](deltas, anchors, w)), boxes,
                                   atol=1e-3)


# ----------------------------------------------------------------- 02, 03: sizes and anchors
def test_feature_map_size(capsys):
    check = ex.check_feature_map_size
    assert_pass(capsys, check, lambda h, w: (h // 16, w // 16))
    assert_hint(capsys, check, lambda h, w: (math.ceil(h / 16), math.ceil(w / 16)), "rounded up")
    assert_hint(capsys, check, lambda h, w: (h / 16, w / 16), "not an integer")
    assert_hint(capsys, check, lambda h, w: (w // 16, h // 16), "swapped")
    assert_hint(capsys, check, lambda h, w: (h // 32, w // 32), "five pools")
    assert_hint(capsys, check, lambda h, w: (round(h / 16), round(w / 16)), "nearest")


def test_feature_map_size_reference_is_the_vgg16_backbone():
    from frcnn_lib.backbones import build_backbone
    from frcnn_lib.course.exercises.anchors import vgg16_feature_map_size
    backbone, stride = build_backbone("vgg16", None)
    assert stride == 16
    for h, w in [(160, 160), (33, 47)]:
        out = backbone(tf.zeros((1, h, w, 3)))
        assert tuple(out.shape[1:3]) == vgg16_feature_map_size(h, w)
    for h, w in [(600, 1000), (375, 500)]:
        shape = backbone.compute_output_shape((1, h, w, 3))
        assert tuple(shape[1:3]) == vgg16_feature_map_size(h, w)


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
    if order == "anchor":
        a = len(scales) * len(ratios)
        return np.array(rows).reshape(-1, a, 4).transpose(1, 0, 2).reshape(-1, 4)
    return np.array(rows)


def test_generate_anchors(capsys):
    check = ex.check_generate_anchors
    assert_hint(capsys, check, lambda *a: anchors_loops(*a, offset=0.0), "half a stride")
    assert_hint(capsys, check, lambda *a: anchors_loops(*a, inv=True), "ratio is inverted")
    assert_hint(capsys, check, lambda *a: anchors_loops(*a, order="column"), "column by column")
    assert_hint(capsys, check, lambda *a: anchors_loops(*a, order="anchor"), "anchor-major")

    def swapped(fh, fw, stride, scales, ratios):
        a = anchors_loops(fh, fw, stride, scales, ratios)
        centres = np.array([[(i + 0.5) * stride, (j + 0.5) * stride]
                            for i in range(fh) for j in range(fw) for _ in range(len(scales) * len(ratios))])
        half = (a[:, 2:] - a[:, :2]) / 2
        return np.concatenate([centres - half, centres + half], 1)
    assert_hint(capsys, check, swapped, "x and y are swapped")


def test_generate_anchors_in_numpy_fails_inside_the_compiled_step(capsys):
    def anchors_np(fh, fw, stride, scales, ratios):
        s, r = np.asarray(scales, float)[:, None], np.asarray(ratios, float)[None]
        w, h = (s / np.sqrt(r)).ravel(), (s * np.sqrt(r)).ravel()
        cy, cx = np.meshgrid((np.arange(fh) + 0.5) * stride, (np.arange(fw) + 0.5) * stride,
                             indexing="ij")
        c = np.stack([cx, cy, cx, cy], -1).reshape(-1, 1, 4)
        return (c + np.stack([-w / 2, -h / 2, w / 2, h / 2], -1)[None]).reshape(-1, 4)
    assert_graph_rejects(capsys, ex.check_generate_anchors, anchors_np)
    assert_graph_rejects(capsys, ex.check_generate_anchors, anchors_loops)


# ----------------------------------------------------------------- 04: labels and sampling
def label_ok(ious, pos, neg, ties=True, strict=False, negatives_last=False, rule=True):
    ious = np.asarray(ious)
    best = ious.max(1)
    labels = np.where(best > pos if strict else best >= pos, 1, np.where(best < neg, 0, -1))
    for g in range(ious.shape[1] if rule else 0):
        top = ious[:, g].max()
        if top > 0:
            winners = np.flatnonzero(ious[:, g] == top) if ties else [np.argmax(ious[:, g])]
            labels[winners] = 1
    if negatives_last:
        labels[best < neg] = 0
    return labels


def test_label_anchors(capsys):
    check = ex.check_label_anchors
    assert_hint(capsys, check, lambda i, p, n: label_ok(i, p, n, ties=False),
                "ties in the best-anchor rule")
    assert_hint(capsys, check, lambda i, p, n: label_ok(i, p, n, strict=True), "use >= positive_iou")
    assert_hint(capsys, check, lambda i, p, n: label_ok(i, p, n, rule=False),
                "best-anchor rule is missing")
    out = assert_hint(capsys, check, lambda i, p, n: label_ok(i, p, n, negatives_last=True),
                      "negatives are written last")
    assert "below the negative threshold" in out
    assert_hint(capsys, check, lambda i, p, n: np.where(label_ok(i, p, n) == 0, 0,
                                                        np.where(np.asarray(i).max(1) <= n, 0,
                                                                 label_ok(i, p, n))),
                "negatives have IoU < negative_iou")


def test_label_anchors_in_numpy_fails_inside_the_compiled_step(capsys):
    assert_graph_rejects(capsys, ex.check_label_anchors, label_ok)


def sample_np(labels, keys, num_samples, fraction, pick="smallest", neg_quota=False):
    labels, keys = np.asarray(labels), np.asarray(keys)
    out = np.full(labels.shape, -1)
    n_pos = min(int((labels == 1).sum()), round(num_samples * fraction))
    quota = round(num_samples * (1 - fraction)) if neg_quota else num_samples - n_pos
    n_neg = min(int((labels == 0).sum()), quota)
    for value, count in ((1, n_pos), (0, n_neg)):
        members = np.flatnonzero(labels == value)
        if pick == "smallest":
            members = members[np.argsort(keys[members], kind="stable")]
        elif pick == "largest":
            members = members[np.argsort(-keys[members], kind="stable")]
        elif pick == "global":
            members = np.random.permutation(members)
        elif pick == "fixed_seed":
            members = np.random.default_rng(0).permutation(members)
        out[members[:count]] = value
    return out


def test_sample_balanced(capsys):
    check = ex.check_sample_balanced   # sample_np itself passes every value case (see below)
    assert_hint(capsys, check, lambda *a: sample_np(*a, pick="first"), "first ones in index order")
    assert_hint(capsys, check, lambda *a: sample_np(*a, pick="largest"), "LARGEST keys")
    assert_hint(capsys, check, lambda *a: sample_np(*a, neg_quota=True),
                "negatives get a fixed quota")
    assert_hint(capsys, check, lambda *a: sample_np(*a, pick="global"),
                "two calls with the same keys gave different samples")
    assert_hint(capsys, check, lambda *a: sample_np(*a, pick="fixed_seed"), "smallest keys")
    assert_hint(capsys, check, lambda labels, *a: np.where(labels == -1, 0, sample_np(labels, *a)),
                "only turns labels into -1")

    def unstable(labels, keys, num_samples, fraction):     # ties to the higher index
        return sample_np(labels[::-1], keys[::-1], num_samples, fraction)[::-1]
    assert_hint(capsys, check, unstable, "ties go to the LOWER index")


def test_sample_balanced_follows_the_keys(capsys):
    # The same labels with keys from two generators: two samples, each the library's.
    from frcnn_lib.course.exercises.matching import _labels, _sample_reference
    labels = _labels(300, 1000, 0, 1)
    a, b = (np.random.default_rng(s).uniform(size=len(labels)).astype(np.float32) for s in (1, 2))
    got_a, got_b = (np.asarray(ANSWERS["my_sample_balanced"](labels, k, 256, 0.5)) for k in (a, b))
    assert not np.array_equal(got_a, got_b)
    np.testing.assert_array_equal(got_a, _sample_reference(labels, a, 256, 0.5))
    np.testing.assert_array_equal(got_b, _sample_reference(labels, b, 256, 0.5))


def test_sample_balanced_reference_is_the_library_draw():
    # The check's reference with the library's own keys gives sampling.sample_balanced's sample.
    from frcnn_lib.course.exercises.matching import _labels, _sample_reference
    from frcnn_lib.sampling import sample_balanced
    labels = _labels(40, 500, 30, 3)
    seed = tf.constant([3, 4], tf.int32)
    keys = tf.random.stateless_uniform((1, len(labels)), seed=seed).numpy()[0]
    want = sample_balanced(tf.constant(labels[None]), 64, 0.25, seed).numpy()[0]
    np.testing.assert_array_equal(_sample_reference(labels, keys, 64, 0.25), want)


def test_sample_balanced_in_numpy_fails_inside_the_compiled_step(capsys):
    assert_graph_rejects(capsys, ex.check_sample_balanced, sample_np)


# ----------------------------------------------------------------- 05: losses
def smooth_l1_ok(x, sigma, switch=None, offset=True, half=0.5):
    x = np.abs(np.asarray(x, np.float64))
    switch = 1 / sigma ** 2 if switch is None else switch
    return np.where(x < switch, half * (sigma * x) ** 2, x - (0.5 / sigma ** 2 if offset else 0))


def test_smooth_l1(capsys):
    check = ex.check_smooth_l1
    assert_pass(capsys, check, lambda x, s: tf.where(
        tf.abs(x) < 1 / s ** 2, 0.5 * (s * x) ** 2, tf.abs(x) - 0.5 / s ** 2))
    assert_hint(capsys, check, lambda x, s: smooth_l1_ok(x, s, switch=1 / s),
                "switch point is at 1 / sigma**2")
    assert_hint(capsys, check, lambda x, s: smooth_l1_ok(x, s, offset=False), "without the offset")
    assert_hint(capsys, check, lambda x, s: np.abs(x), "plain L1")
    assert_hint(capsys, check, lambda x, s: 0.5 * np.asarray(x, float) ** 2, "this is L2")
    assert_hint(capsys, check, lambda x, s: smooth_l1_ok(x, s, half=1.0), "factor 0.5")


def test_smooth_l1_in_numpy_fails_inside_the_compiled_step(capsys):
    assert_graph_rejects(capsys, ex.check_smooth_l1, smooth_l1_ok)


def rpn_ok(logits, deltas, labels, targets, sigma=3.0, ignored_as_neg=False, by_positives=False,
           per_image=False):
    if per_image:
        both = [rpn_ok(logits[i:i + 1], deltas[i:i + 1], labels[i:i + 1], targets[i:i + 1], sigma)
                for i in range(len(labels))]
        return tuple(np.mean(both, axis=0))
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
    check = ex.check_rpn_losses
    assert_pass(capsys, check, rpn_ok)
    assert_hint(capsys, check, lambda *a: rpn_ok(*a, ignored_as_neg=True), "includes the ignored anchors")
    assert_hint(capsys, check, lambda *a: rpn_ok(*a, by_positives=True),
                "divided by the number of positives")
    assert_hint(capsys, check, lambda lo, d, la, t, s: rpn_ok(lo, d, la, t, 1.0), "sigma = 3")
    out = assert_hint(capsys, check, lambda *a: rpn_ok(*a, per_image=True), "its own count")
    assert "WHOLE batch" in out
    # divided by all the anchors (not a listed mistake): the generic hint states the rule
    assert_hint(capsys, check, lambda lo, d, la, t, s: tuple(
        np.array(rpn_ok(lo, d, la, t, s)) * (np.asarray(la) >= 0).sum() / np.size(la)), "WHOLE batch")


# ----------------------------------------------------------------- 06: NMS
def nms_ok(boxes, scores, thr, order=None, ge=False, mask=False):
    order = list(np.argsort(-np.asarray(scores), kind="stable")) if order is None else list(order)
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        ious = iou_loops(boxes[[i]], boxes[order])[0] if order else np.zeros(0)
        order = [j for j, v in zip(order, ious) if not (v >= thr if ge else v > thr)]
    if mask:
        return np.isin(np.arange(len(scores)), keep).astype(int)
    return keep


def test_nms(capsys):
    check = ex.check_nms
    assert_pass(capsys, check, nms_ok)
    assert_hint(capsys, check, lambda b, s, t: nms_ok(b, s, t, order=range(len(s))), "sort by score first")
    assert_hint(capsys, check, lambda b, s, t: nms_ok(b, s, t, ge=True), "suppress only IoU > iou_threshold")
    assert_hint(capsys, check, lambda b, s, t: nms_ok(b, s, t, order=np.argsort(s)[::-1]),
                "ties in score go to the lower index")
    assert_hint(capsys, check, lambda b, s, t: nms_ok(b, s, t, order=np.argsort(s, kind="stable")),
                "by descending score")
    assert_hint(capsys, check, lambda b, s, t: nms_ok(b, s, t, mask=True), "not a mask")


# ----------------------------------------------------------------- 07: RoIAlign grid
def grid_ok(rois, stride, output_size, sampling_ratio, offset=0.5, edges=False):
    f = np.asarray(rois, np.float64) / stride - offset
    n = output_size * sampling_ratio
    t = np.arange(n) / max(n - 1, 1) if edges else (np.arange(n) + 0.5) / n
    return (f[:, 1:2] + t * (f[:, 3:4] - f[:, 1:2]), f[:, 0:1] + t * (f[:, 2:3] - f[:, 0:1]))


def test_roi_align_grid(capsys):
    check = ex.check_roi_align_grid
    assert_hint(capsys, check, lambda *a: grid_ok(*a, offset=0.0), "half-pixel offset is missing")
    assert_hint(capsys, check, lambda *a: grid_ok(*a)[::-1], "ys and xs are swapped")
    assert_hint(capsys, check, lambda *a: grid_ok(*a, edges=True), "edge to edge")
    assert_hint(capsys, check, lambda r, st, s, sr: grid_ok(np.asarray(r) * st, st, s, sr, 0.0),
                "these are image pixels")
    assert_hint(capsys, check, lambda r, st, s, sr: grid_ok(np.asarray(r) - 0.5, st, s, sr, 0.0),
                "offset is subtracted before dividing")


def test_roi_align_grid_in_numpy_fails_inside_the_compiled_step(capsys):
    assert_graph_rejects(capsys, ex.check_roi_align_grid, grid_ok)


def test_roi_align_grid_reference_is_what_roi_align_samples():
    # roi_align on a map whose two channels hold each pixel's row and column reads back the
    # sample positions (bilinear sampling of a ramp is exact).
    from frcnn_lib import roi
    from frcnn_lib.course.exercises.roi import roi_align_grid
    rois = np.array([[20.5, 33.25, 84.5, 57.25], [100, 40, 180, 160]], np.float32)
    n = 14
    rows, cols = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    ramp = np.stack([rows, cols], -1)[None].astype(np.float32)
    out = roi.roi_align(ramp, rois, np.zeros(2, np.int32), 16, output_size=n, sampling_ratio=1).numpy()
    ys, xs = roi_align_grid(rois, 16, 7, 2)
    np.testing.assert_allclose(out[:, :, 0, 0], ys, atol=1e-4)
    np.testing.assert_allclose(out[:, 0, :, 1], xs, atol=1e-4)


# ----------------------------------------------------------------- 08: R-CNN labels
def rois_ok(rois, gt, gt_labels, fg, lo, hi, as_one=False, no_low=False, strict=False, plus_one=False):
    ious = iou_loops(rois, gt)
    best, j = ious.max(1), ious.argmax(1)
    cls = np.ones(len(rois), int) if as_one else (j + 1 if plus_one else np.asarray(gt_labels)[j])
    background = best < hi if no_low else (best >= lo) & (best < hi)
    return np.where(best > fg if strict else best >= fg, cls, np.where(background, 0, -1))


def test_label_rois(capsys):
    check = ex.check_label_rois
    assert_pass(capsys, check, rois_ok)
    assert_hint(capsys, check, lambda *a: rois_ok(*a, as_one=True), "labelled 1")
    assert_hint(capsys, check, lambda *a: rois_ok(*a, no_low=True), "below background_iou_low are ignored")
    assert_hint(capsys, check, lambda *a: rois_ok(*a, strict=True), "use >=, not >")
    assert_hint(capsys, check, lambda *a: rois_ok(*a, plus_one=True), "index + 1")


def test_label_rois_reference_agrees_with_rcnn_targets():
    from frcnn_lib.course.exercises.rcnn_targets import _labels_reference
    from frcnn_lib.targets import RCNNTargetConfig, rcnn_targets
    rng = np.random.default_rng(0)
    gt = np.array([[10, 10, 50, 50], [60, 20, 90, 70]], np.float32)
    gt_labels = np.array([4, 2], np.int32)
    props = (np.repeat(gt, 20, 0) + rng.normal(0, 8, (40, 4))).astype(np.float32)
    props[:, 2:] = np.maximum(props[:, 2:], props[:, :2] + 1)
    want = _labels_reference(props, gt, gt_labels, 0.5, 0.1, 0.5)
    n = len(props) + len(gt)
    rois, labels, _ = rcnn_targets(props[None], np.ones((1, 40), bool), gt[None], gt_labels[None],
                                   tf.constant([0, 0]), RCNNTargetConfig(num_samples=n, foreground_fraction=1.0))
    rois, labels = rois.numpy()[0], labels.numpy()[0]
    taken = labels >= 0
    from_props = [np.flatnonzero((props == r).all(1)) for r in rois[taken]]
    got = {int(i[0]): int(lab) for i, lab in zip(from_props, labels[taken]) if len(i)}
    assert got == {int(i): int(want[i]) for i in np.flatnonzero(want >= 0)}


# ----------------------------------------------------------------- 10: evaluation
def curve_ok(scores, is_tp, npos, sort=True, ascending=False):
    order = np.argsort(-np.asarray(scores), kind="stable") if sort else np.arange(len(scores))
    if ascending:
        order = np.argsort(np.asarray(scores), kind="stable")
    tp = np.cumsum(np.asarray(is_tp)[order])
    return tp / npos, tp / np.arange(1, len(tp) + 1)


def test_precision_recall(capsys):
    check = ex.check_precision_recall
    assert_hint(capsys, check, lambda *a: curve_ok(*a, sort=False), "not sorted by score")
    assert_hint(capsys, check, lambda *a: curve_ok(*a, ascending=True), "ascending score")
    assert_hint(capsys, check, lambda s, t, n: (curve_ok(s, t, n)[0] * n / len(s), curve_ok(s, t, n)[1]),
                "recall is divided by the number of detections")
    assert_hint(capsys, check, lambda s, t, n: (curve_ok(s, t, n)[0], curve_ok(s, t, n)[0]),
                "precision is divided by the number of objects")
    assert_hint(capsys, check, lambda *a: curve_ok(*a)[::-1], "swapped")


def ap_ok(recall, precision, use_07_metric, envelope=True, points=None, strict=False):
    recall, precision = np.asarray(recall, float), np.asarray(precision, float)
    if envelope:
        precision = np.array([precision[k:].max() for k in range(len(precision))])
    if use_07_metric:
        points = np.arange(11) / 10 if points is None else points
        reach = (lambda t: recall > t) if strict else (lambda t: recall >= t)
        return sum(precision[reach(t)].max() if reach(t).any() else 0.0 for t in points) / 11
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def test_voc_ap(capsys):
    check = ex.check_voc_ap
    assert_hint(capsys, check, lambda r, p, m: ap_ok(r, p, m) * (11 / 10 if m else 1), "divided by 10")
    assert_hint(capsys, check, lambda r, p, m: float(np.trapezoid(p, r)) if not m else ap_ok(r, p, m),
                "trapezoidal")
    assert_hint(capsys, check, lambda r, p, m: ap_ok(r, p, m, strict=True), "recall >= t")
    assert_hint(capsys, check, lambda r, p, m: ap_ok(r, p, m) if m else
                float(np.sum(np.diff(r) * np.maximum.accumulate(p[::-1])[::-1][1:])),
                "starts at the first recall")

    def no_envelope(recall, precision, use_07_metric):
        recall, precision = np.asarray(recall, float), np.asarray(precision, float)
        if use_07_metric:
            return sum(precision[np.argmax(recall >= t)] if (recall >= t).any() else 0.0
                       for t in np.arange(11) / 10) / 11
        return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))
    assert_hint(capsys, check, no_envelope, "not interpolated")


@pytest.mark.parametrize("points", [np.arange(0.0, 1.1, 0.1), np.linspace(0, 1, 11)],
                         ids=["arange", "linspace"])
def test_voc_ap_explains_py_faster_rcnn_points(capsys, points):
    # py-faster-rcnn's voc_eval.voc_ap uses np.arange(0., 1.1, 0.1): a convention, not a mistake.
    out = assert_pass(capsys, ex.check_voc_ap, lambda r, p, m: ap_ok(r, p, m, points=points))
    assert "note:" in out and "py-faster-rcnn" in out and "0.30000000000000004" in out, out
    assert "not a mistake" in out
    # ... but a real mistake made with those points is still named
    assert_hint(capsys, ex.check_voc_ap,
                lambda r, p, m: ap_ok(r, p, m, points=points) * (11 / 10 if m else 1), "divided by 10")


# ----------------------------------------------------------------- 11: adapter
def coco_ok(coco, xywh=False, raw_ids=False, zero_based=False, clip=True):
    ids = sorted(c["id"] for c in coco["categories"])
    cats = {c: k + (0 if zero_based else 1) for k, c in enumerate(ids)}
    out = []
    for info in sorted(coco["images"], key=lambda i: i["id"]):
        anns = [a for a in coco["annotations"] if a["image_id"] == info["id"] and not a["iscrowd"]]
        boxes, labels = [], []
        for a in anns:
            x, y, w, h = a["bbox"]
            box = np.array([x, y, w, h] if xywh else [x, y, x + w, y + h])
            if clip:
                box = np.clip(box, 0, [info["width"], info["height"]] * 2)
            if box[2] > box[0] and box[3] > box[1]:
                boxes.append(box)
                labels.append(a["category_id"] if raw_ids else cats[a["category_id"]])
        out.append({"boxes": np.array(boxes).reshape(-1, 4), "labels": np.array(labels)})
    return out


def test_coco_to_targets(capsys):
    check = ex.check_coco_to_targets
    assert_pass(capsys, check, coco_ok)
    assert_hint(capsys, check, lambda c: coco_ok(c, xywh=True), "still [x, y, w, h]")
    assert_hint(capsys, check, lambda c: coco_ok(c, raw_ids=True), "COCO's category ids")
    assert_hint(capsys, check, lambda c: coco_ok(c, zero_based=True), "start at 0")
    assert_hint(capsys, check, lambda c: coco_ok(c, clip=False), "not clipped")

    def with_crowd(coco):
        for a in coco["annotations"]:
            a["iscrowd"] = 0
        return coco_ok(coco)
    assert_hint(capsys, check, with_crowd, "iscrowd")


# ----------------------------------------------------------------- 12: FPN levels
def fpn_ok(boxes, k0=4, canonical=224.0, k_min=2, k_max=5, rounding=np.floor, clamp=True,
           log=np.log2, root=True):
    b = np.asarray(boxes, np.float64)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    k = rounding(k0 + log((np.sqrt(area) if root else area) / canonical))
    return (np.clip(k, k_min, k_max) if clamp else k).astype(int)


def test_fpn_level(capsys):
    check = ex.check_fpn_level
    assert_pass(capsys, check, fpn_ok)
    assert_hint(capsys, check, lambda *a: fpn_ok(*a, rounding=np.round), "rounded to the nearest")
    assert_hint(capsys, check, lambda *a: fpn_ok(*a, clamp=False), "not clamped")
    assert_hint(capsys, check, lambda *a: fpn_ok(*a, log=np.log), "natural log")
    assert_hint(capsys, check, lambda *a: fpn_ok(*a, root=False), "square root is missing")
    assert_hint(capsys, check, lambda *a: fpn_ok(*a, rounding=np.ceil), "rounded up")


# ----------------------------------------------------------------- 09: one training step
@pytest.fixture(scope="module")
def tiny_model_and_batch():
    # The smallest model the check needs: one 32 x 32 image, a 4 x 4 feature map, 2 anchors
    # per location, 8-unit heads.
    from frcnn_lib import FasterRCNN
    keras.utils.set_random_seed(0)  # the same start whatever ran before on this worker
    model = FasterRCNN(2, backbone="small", anchor_scales=(16, 32), anchor_ratios=(1.0,),
                       rpn_channels=8, roi_head_units=8, roi_pool_size=2, rpn_batch_size=16,
                       roi_batch_size=8, rpn_min_size=0.0, image_min_side=32, image_max_side=32)
    model.build()
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)), tf.float32)
    targets = {"boxes": tf.constant([[[4.0, 4.0, 20.0, 22.0], [10.0, 12.0, 30.0, 30.0]]]),
               "labels": tf.constant([[1, 1]], tf.int32)}
    return model, images, targets


def step_ok(model, images, targets, decay="kernels", sign=1.0, apply=True, loss_weights=True):
    s = model.settings
    with tf.GradientTape() as tape:
        parts = model.compute_losses(images, targets, training=True)
        total = sum((s[f"loss_{n}_weight"] if loss_weights else 1.0) * parts[n]
                    for n in ("rpn_objectness", "rpn_box", "rcnn_class", "rcnn_box"))
        decayed = {"kernels": [w for w in model.trainable_weights if "kernel" in w.path],
                   "all": model.trainable_weights, "none": []}[decay]
        if decayed:
            total += 0.5 * s["weight_decay"] * sum(tf.reduce_sum(w ** 2) for w in decayed)
        objective = sign * total
    grads = tape.gradient(objective, model.trainable_weights)
    if apply:
        model.optimizer.apply_gradients(zip(grads, model.trainable_weights))
    return total


def test_train_step(capsys, tiny_model_and_batch):
    model, images, targets = tiny_model_and_batch
    before = model.get_weights()
    check = ex.check_train_step
    for answer in (ANSWERS["my_train_step"], check.reference):
        assert_pass(capsys, check, answer, model, images, targets)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights())), "model changed"
    assert_hint(capsys, check, lambda *a: step_ok(*a, decay="none"), "weight decay is missing",
                model, images, targets)
    assert_hint(capsys, check, lambda *a: step_ok(*a, decay="all"), "only the kernels",
                model, images, targets)
    assert_hint(capsys, check, lambda *a: step_ok(*a, loss_weights=False), "not weighted",
                model, images, targets)
    assert_hint(capsys, check, lambda *a: step_ok(*a, sign=-1.0), "moved uphill", model, images, targets)
    assert_hint(capsys, check, lambda *a: step_ok(*a, apply=False), "no weight changed",
                model, images, targets)
    assert_hint(capsys, check, lambda *a: (step_ok(*a), None)[1] or 0.0, "return the total loss",
                model, images, targets)
    ok, out = verdict(capsys, check, stub, model, images, targets)
    assert not ok and check.last_not_implemented and "not implemented yet" in out and out.count("\n") == 1
    ok, out = verdict(capsys, check, lambda *a: (step_ok(*a), None)[1], model, images, targets)
    assert not ok and "returned None" in out and out.count("\n") == 1


def test_train_step_takes_other_biases_where_the_library_step_is_not_reproducible(
        capsys, monkeypatch, tiny_model_and_batch):
    # Run-to-run noise can flip a forward decision (an IoU at a threshold) in one start
    # state.  Simulated: the first learner step and the first hand-written reference step
    # each lose the weight decay, as if their forward pass had gone another way.
    from frcnn_lib.course.exercises import training
    model, images, targets = tiny_model_and_batch
    real_step, calls = training._step, {"fn": 0, "step": 0}

    def flaky_step(m, i, t, **knobs):
        calls["step"] += 1
        return real_step(m, i, t, **({"decay": "none"} if calls["step"] == 1 else knobs))

    def flaky_answer(m, i, t):
        calls["fn"] += 1
        return step_ok(m, i, t, decay="none" if calls["fn"] == 1 else "kernels")

    monkeypatch.setattr(training, "_step", flaky_step)
    ok, out = verdict(capsys, ex.check_train_step, flaky_answer, model, images, targets)
    assert ok is True and out.startswith("[PASS]"), out
    assert calls == {"fn": 2, "step": 1}
    # Never reproducible: the check says so instead of blaming the learner.
    monkeypatch.setattr(training, "_step", lambda m, i, t, **k: real_step(m, i, t, decay="none"))
    ok, out = verdict(capsys, ex.check_train_step, lambda *a: step_ok(*a, decay="all"),
                      model, images, targets)
    assert ok is False and "not reproducible" in out and "run the check again" in out, out


def test_the_check_settings_make_the_mistakes_visible(tiny_model_and_batch):
    # Biases and loss weights as a fresh preset model has them would hide two mistakes.
    from frcnn_lib.course.exercises import training
    model, _, _ = tiny_model_and_batch
    assert all(v != 1.0 for k, v in training.CHECK_SETTINGS.items() if k.startswith("loss_"))
    twin = training.copy_of(model)
    training._random_biases(twin)
    biases = [w.numpy() for w in twin.trainable_weights if "bias" in w.path]
    assert biases and all(np.abs(b).max() > 0 for b in biases)
