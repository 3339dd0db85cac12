"""Property-based tests (hypothesis) of the box math, NMS and matching, on random and
extreme inputs, degenerate and inverted boxes included."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import reference as ref
from frcnn_lib import boxes as B
from frcnn_lib.matching import match
from frcnn_lib.nms import batched_nms, nms

SETTINGS = settings(max_examples=40, deadline=None)

# any float32 coordinate in +-1e5, including 0, tiny values and the extremes (not subnormals:
# TensorFlow's CPU kernels flush those to zero)
coord = st.floats(-1e5, 1e5, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=32)


def box_arrays(max_n=8, elements=coord):
    """``(n, 4)`` float32 boxes with unconstrained corners: degenerate and inverted included."""
    return st.integers(1, max_n).flatmap(
        lambda n: hnp.arrays(np.float32, (n, 4), elements=elements))


@st.composite
def positive_boxes(draw, n, scale):
    """``n`` boxes of positive size at a given magnitude: corners within 10 * scale of the
    origin, sides between 0.05 * scale and scale."""
    unit = st.floats(-10, 10, allow_nan=False)
    side = st.floats(0.05, 1.0, allow_nan=False)
    rows = []
    for _ in range(n):
        x, y, w, h = draw(unit), draw(unit), draw(side), draw(side)
        rows.append([x * scale, y * scale, (x + w) * scale, (y + h) * scale])
    out = np.array(rows, np.float32)
    # the float32 corners must still give a positive size
    assert np.all(out[:, 2] > out[:, 0]) and np.all(out[:, 3] > out[:, 1])
    return out


SCALES = st.sampled_from([1e-3, 1.0, 37.0, 1e3, 1e5])
WEIGHTS = st.sampled_from([(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (0.5, 2.0, 1.0, 3.0)])


# ----------------------------------------------------------------------------- IoU
@SETTINGS
@given(box_arrays(), box_arrays())
def test_iou_finite_in_unit_interval_and_symmetric(a, b):
    ab = B.iou(a, b).numpy()
    assert ab.shape == (len(a), len(b))
    assert np.all(np.isfinite(ab)) and np.all((ab >= 0) & (ab <= 1))
    np.testing.assert_array_equal(ab, B.iou(b, a).numpy().T)
    # 1 on itself exactly when the box has a positive (float32) area, else 0
    area = np.maximum(a[:, 2] - a[:, 0], 0) * np.maximum(a[:, 3] - a[:, 1], 0)
    np.testing.assert_allclose(np.diag(B.iou(a, a).numpy()), (area > 0).astype(np.float32), rtol=1e-6)


@SETTINGS
@given(box_arrays(elements=st.floats(-50, 50, width=32)), box_arrays(elements=st.floats(-50, 50, width=32)))
def test_iou_matches_reference_on_moderate_boxes(a, b):
    np.testing.assert_allclose(B.iou(a, b).numpy(), ref.iou(a, b), atol=1e-5)


# ----------------------------------------------------------------------------- encode / decode
@SETTINGS
@given(st.data(), SCALES, WEIGHTS)
def test_encode_decode_round_trip(data, scale, weights):
    boxes = data.draw(positive_boxes(6, scale))
    anchors = data.draw(positive_boxes(6, scale))   # sizes within 20x: below the 62.5x clamp
    deltas = B.encode(boxes, anchors, weights).numpy()
    back = B.decode(deltas, anchors, weights).numpy()
    assert np.all(np.isfinite(deltas)) and np.all(np.isfinite(back))
    np.testing.assert_allclose(back, boxes, rtol=1e-5, atol=2e-5 * scale)


@SETTINGS
@given(st.data(), SCALES, SCALES, WEIGHTS)
def test_encode_decode_finite_across_scales(data, box_scale, anchor_scale, weights):
    boxes = data.draw(positive_boxes(4, box_scale))
    anchors = data.draw(positive_boxes(4, anchor_scale))
    deltas = B.encode(boxes, anchors, weights).numpy()
    assert np.all(np.isfinite(deltas))
    assert np.all(np.isfinite(B.decode(deltas, anchors, weights).numpy()))


@SETTINGS
@given(st.data(), SCALES,
       hnp.arrays(np.float32, (4, 2), elements=st.floats(-1e4, 1e4, width=32)),
       hnp.arrays(np.float32, (4, 2), elements=st.floats(float(np.float32(-1e30)), np.inf, width=32)))
def test_decode_never_overflows(data, scale, txy, twh):
    anchors = data.draw(positive_boxes(4, scale))
    out = B.decode(np.concatenate([txy, twh], 1), anchors).numpy()
    assert np.all(np.isfinite(out))
    w, h = out[:, 2] - out[:, 0], out[:, 3] - out[:, 1]
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    # at most 62.5 times the anchor, up to the float32 rounding of the corners (a few ulps)
    slack = 4 * np.spacing(np.abs(out).max(axis=1))
    assert np.all(w <= aw * 62.5 * (1 + 1e-5) + slack) and np.all(h <= ah * 62.5 * (1 + 1e-5) + slack)


# ----------------------------------------------------------------------------- clip
@SETTINGS
@given(box_arrays(), st.floats(1, 2000, width=32), st.floats(1, 2000, width=32))
def test_clip_inside_and_idempotent(boxes, height, width):
    out = B.clip(boxes, height, width).numpy()
    assert np.all(out[:, [0, 2]] >= 0) and np.all(out[:, [0, 2]] <= width)
    assert np.all(out[:, [1, 3]] >= 0) and np.all(out[:, [1, 3]] <= height)
    np.testing.assert_array_equal(B.clip(out, height, width).numpy(), out)
    inside = ((boxes[:, [0, 2]] >= 0) & (boxes[:, [0, 2]] <= width)).all(1) & \
             ((boxes[:, [1, 3]] >= 0) & (boxes[:, [1, 3]] <= height)).all(1)
    np.testing.assert_array_equal(out[inside], boxes[inside])


# ----------------------------------------------------------------------------- NMS
THRESHOLDS = st.sampled_from([0.0, 0.25, 0.3, 0.5, 0.7, 0.75, 0.9])


@st.composite
def nms_inputs(draw, max_n=16):
    n = draw(st.integers(1, max_n))
    # integer corners: degenerate, inverted, duplicate boxes are all likely
    boxes = draw(hnp.arrays(np.float32, (n, 4), elements=st.integers(0, 40).map(float)))
    scores = draw(hnp.arrays(np.float32, (n,), elements=st.sampled_from([0.1, 0.2, 0.5, 0.9, 1.0])))
    return boxes, scores


@SETTINGS
@given(nms_inputs(), THRESHOLDS, st.integers(1, 20))
def test_nms_invariants_and_reference(inputs, thr, max_out):
    boxes, scores = inputs
    keep = nms(boxes, scores, thr, max_out).numpy()
    assert keep.tolist() == ref.nms(boxes, scores, thr, max_out)
    assert len(keep) <= max_out and len(set(keep.tolist())) == len(keep)
    assert np.all(np.diff(scores[keep]) <= 0)                       # sorted by score
    ious = B.iou(boxes[keep], boxes[keep]).numpy()
    np.fill_diagonal(ious, 0)
    assert np.all(ious <= thr)                                      # no overlap > thr kept
    if len(keep) < max_out:                                         # every other box was
        for i in sorted(set(range(len(boxes))) - set(keep.tolist())):   # suppressed by a
            over = B.iou(boxes[i:i + 1], boxes[keep]).numpy()[0] > thr    # better kept box
            better = (scores[keep] > scores[i]) | ((scores[keep] == scores[i]) & (keep < i))
            assert np.any(over & better)


@SETTINGS
@given(nms_inputs(), THRESHOLDS, st.data())
def test_batched_nms_is_nms_per_label(inputs, thr, data):
    boxes, scores = inputs
    labels = data.draw(hnp.arrays(np.int32, (len(boxes),), elements=st.integers(0, 3)))
    keep = batched_nms(boxes, scores, labels, thr, 50).numpy()
    assert keep.tolist() == ref.batched_nms(boxes, scores, labels, thr, 50)
    for lab in set(labels.tolist()):
        idx = np.where(labels == lab)[0]
        assert sorted(keep[labels[keep] == lab].tolist()) == sorted(
            idx[nms(boxes[idx], scores[idx], thr, 50).numpy()].tolist())


# ----------------------------------------------------------------------------- matching
@st.composite
def match_inputs(draw):
    n, g = draw(st.integers(1, 12)), draw(st.integers(1, 5))
    ious = draw(hnp.arrays(np.float32, (2, n, g), elements=st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 1.0])))
    gt_valid = draw(hnp.arrays(bool, (2, g)))
    anchor_valid = draw(hnp.arrays(bool, (2, n)))
    neg = draw(st.sampled_from([0.0, 0.3, 0.5]))
    pos = draw(st.sampled_from([0.5, 0.7]))
    return ious, gt_valid, anchor_valid, pos, neg


@SETTINGS
@given(match_inputs(), st.booleans())
def test_matching_labels_and_positives(inputs, low_quality):
    ious, gt_valid, anchor_valid, pos, neg = inputs
    labels, matched = match(ious, gt_valid, pos, neg, low_quality, anchor_valid)
    labels, matched = labels.numpy(), matched.numpy()
    assert set(np.unique(labels)) <= {-1, 0, 1}
    for b in range(2):
        want, want_matched = ref.match(ious[b], gt_valid[b], pos, neg, low_quality, anchor_valid[b])
        np.testing.assert_array_equal(labels[b], want)
        assert np.all(labels[b][~anchor_valid[b]] == -1)
        masked = np.where(gt_valid[b][None] & anchor_valid[b][:, None], ious[b], -1.0)
        best_per_gt = masked.max(axis=0)
        for i in np.where(labels[b] == 1)[0]:
            assert gt_valid[b, matched[b, i]] and matched[b, i] == want_matched[i]
            is_some_best = low_quality and np.any(
                gt_valid[b] & (best_per_gt > 0) & (masked[i] == best_per_gt))
            assert masked[i, matched[b, i]] >= pos or is_some_best
        for i in np.where(labels[b] == 0)[0]:
            assert masked[i].max(initial=-1.0) < neg
