"""frcnn_lib.nms: greedy NMS against the loop reference, and its invariants."""
import numpy as np
import pytest
import tensorflow as tf

import reference as ref
from frcnn_lib import boxes as B
from frcnn_lib.nms import batched_nms, gather_padded, nms, padded_nms


def _check_nms_invariants(boxes, scores, keep, thr, max_out):
    keep = np.asarray(keep)
    assert len(keep) <= max_out and len(set(keep.tolist())) == len(keep)
    s = np.asarray(scores)[keep]
    assert np.all(s[:-1] >= s[1:])                          # sorted by descending score
    if len(keep) > 1:
        ious = B.iou(boxes[keep], boxes[keep]).numpy()
        np.fill_diagonal(ious, 0.0)
        assert ious.max() <= thr                             # no kept pair overlaps > thr


def test_hand_computed():
    boxes = np.array([[0, 0, 10, 10],     # score 0.9, kept first
                      [1, 1, 11, 11],     # IoU 81 / (100 + 100 - 81) = 81/119 = 0.68 with box 0
                      [20, 20, 30, 30],   # disjoint
                      [0, 0, 10, 20]],    # IoU 100 / 200 = 0.5 with box 0, exactly
                     np.float32)
    scores = [0.9, 0.8, 0.7, 0.6]
    np.testing.assert_array_equal(nms(boxes, scores, 0.5, 10).numpy(), [0, 2, 3])  # 0.5 is not > 0.5
    np.testing.assert_array_equal(nms(boxes, scores, 0.49, 10).numpy(), [0, 2])
    np.testing.assert_array_equal(nms(boxes, scores, 0.7, 10).numpy(), [0, 1, 2, 3])
    np.testing.assert_array_equal(nms(boxes, scores, 0.7, 2).numpy(), [0, 1])     # max_output_size
    # score_threshold drops scores <= 0.7 first
    np.testing.assert_array_equal(nms(boxes, scores, 0.7, 10, score_threshold=0.7).numpy(), [0, 1])


def test_ties_go_to_the_lower_index():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]], np.float32)
    # all equal scores: box 0 beats 1 and 3; box 2 is alone
    np.testing.assert_array_equal(nms(boxes, [0.5] * 4, 0.5, 10).numpy(), [0, 2])
    # box 1 scores higher: it wins, suppressing 0 and 3 (IoU 0.68)
    np.testing.assert_array_equal(nms(boxes, [0.5, 0.6, 0.5, 0.5], 0.5, 10).numpy(), [1, 2])


@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_against_reference_random(thr):
    rng = np.random.default_rng(40)
    for trial in range(4):
        boxes = ref.random_boxes(rng, 40, high=80, min_size=5, max_size=40)
        scores = rng.choice(np.linspace(0, 1, 8), 40).astype(np.float32)   # many ties
        keep = nms(boxes, scores, thr, 25).numpy()
        assert keep.tolist() == ref.nms(boxes, scores, thr, 25)
        _check_nms_invariants(boxes, scores, keep, thr, 25)


def test_inverted_and_degenerate_boxes_follow_boxes_iou():
    # boxes.iou gives an inverted box area 0 and IoU 0 with everything: NMS must agree
    boxes = np.array([[0, 0, 10, 10], [10, 10, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], np.float32)
    keep = nms(boxes, [0.9, 0.8, 0.7, 0.6], 0.5, 10).numpy()
    assert keep.tolist() == ref.nms(boxes, [0.9, 0.8, 0.7, 0.6], 0.5, 10) == [0, 1, 2, 3]


def test_empty_input():
    assert nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), 0.5, 10).shape == (0,)


def test_batched_nms_never_suppresses_across_labels():
    # identical boxes with different labels all survive; same label suppresses
    boxes = np.array([[0, 0, 10, 10]] * 4, np.float32)
    labels = np.array([1, 2, 1, 3])
    keep = batched_nms(boxes, [0.9, 0.8, 0.7, 0.6], labels, 0.5, 10).numpy()
    np.testing.assert_array_equal(keep, [0, 1, 3])


def test_batched_nms_against_reference():
    rng = np.random.default_rng(41)
    boxes = ref.random_boxes(rng, 60, high=80, min_size=5, max_size=40)
    scores = rng.random(60).astype(np.float32)
    labels = rng.integers(0, 4, 60)
    keep = batched_nms(boxes, scores, labels, 0.4, 30).numpy()
    assert keep.tolist() == ref.batched_nms(boxes, scores, labels, 0.4, 30)
    for lab in range(4):   # within a label, the usual invariants hold
        kl = keep[labels[keep] == lab]
        _check_nms_invariants(boxes, scores, kl, 0.4, 30)


def test_padded_nms_pads_and_counts():
    rng = np.random.default_rng(42)
    boxes = np.stack([ref.random_boxes(rng, 20, high=60, min_size=5, max_size=30) for _ in range(3)])
    scores = rng.random((3, 20)).astype(np.float32)
    boxes[2] = [[0, 0, 10, 10]] * 20        # all the same box: one survivor
    d = 15
    indices, num = padded_nms(boxes, scores, 0.5, d)
    indices, num = indices.numpy(), num.numpy()
    assert indices.shape == (3, d) and num.shape == (3,)
    for b in range(3):
        want = ref.nms(boxes[b], scores[b], 0.5, d)
        assert num[b] == len(want)
        assert indices[b, :num[b]].tolist() == want
        np.testing.assert_array_equal(indices[b, num[b]:], -1)
    assert num[2] == 1
    labels = rng.integers(0, 3, (3, 20))
    indices, num = padded_nms(boxes, scores, 0.5, d, labels=labels)
    for b in range(3):
        want = ref.batched_nms(boxes[b], scores[b], labels[b], 0.5, d)
        assert indices.numpy()[b, :num.numpy()[b]].tolist() == want


def test_gather_padded():
    values = np.arange(2 * 4 * 2, dtype=np.float32).reshape(2, 4, 2)
    out = gather_padded(values, np.array([[3, 0, -1], [-1, -1, -1]], np.int32)).numpy()
    np.testing.assert_array_equal(out, [[[6, 7], [0, 1], [0, 0]], [[0, 0], [0, 0], [0, 0]]])
    out = gather_padded(values[..., 0], np.array([[1, -1]], np.int32)[[0, 0]]).numpy()
    np.testing.assert_array_equal(out, [[2, 0], [10, 0]])


def test_padded_nms_tf_function_matches_eager():
    rng = np.random.default_rng(43)
    boxes = tf.constant(np.stack([ref.random_boxes(rng, 12) for _ in range(2)]))
    scores = tf.constant(rng.random((2, 12)).astype(np.float32))
    labels = tf.constant(rng.integers(0, 3, (2, 12)))
    fn = lambda b, s, l: padded_nms(b, s, 0.5, 8, labels=l)  # noqa: E731
    for eager, graph in zip(fn(boxes, scores, labels), tf.function(fn)(boxes, scores, labels)):
        np.testing.assert_array_equal(eager.numpy(), graph.numpy())


# ----------------------------------------------------------------------------- exact on every device
@pytest.fixture
def tf32_on():
    """TensorFloat-32 forced on, as on Ampere / Hopper GPUs by default (restored after).  On a
    CPU nothing changes; on such a GPU a float32 matmul then rounds to a 10-bit mantissa,
    so these tests fail if NMS ever moves coordinates through one again."""
    before = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(True)
    yield
    tf.config.experimental.enable_tensor_float_32_execution(before)


def _photo_scale_boxes(rng, n, size=800.0):
    """``n`` boxes at photo scale with non-integer corners (TF32 would round them: at 800 px
    its spacing is 0.5 px), in clusters so that suppression matters."""
    centres = rng.uniform(0, size, (max(n // 8, 1), 2))
    pick = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 12, (n, 2))
    wh = rng.uniform(20, 200, (n, 2)) * rng.uniform(0.9, 1.1, (n, 1))
    return np.concatenate([pick - wh / 2, pick + wh / 2], 1).astype(np.float32)


@pytest.mark.parametrize("method", ["tiled", "tf_image"])
def test_padded_nms_is_greedy_nms_with_tf32_on(tf32_on, method):
    assert tf.config.experimental.tensor_float_32_execution_enabled()
    rng = np.random.default_rng(270)
    n, d = 1000, 300
    boxes = np.stack([_photo_scale_boxes(rng, n) for _ in range(3)])
    scores = rng.random((3, n)).astype(np.float32)
    labels = rng.integers(1, 5, (3, n)).astype(np.int32)
    for thr in (0.5, 0.7):
        indices, num = padded_nms(boxes, scores, thr, d, method=method)
        for b in range(3):
            assert indices[b, :num[b]].numpy().tolist() == ref.greedy_nms_masks(boxes[b], scores[b], thr, d)
        indices, num = padded_nms(boxes, scores, thr, d, labels=labels, method=method)
        for b in range(3):
            want = ref.greedy_nms_masks(boxes[b], scores[b], thr, d, labels[b])
            assert indices[b, :num[b]].numpy().tolist() == want
    keep = batched_nms(boxes[0], scores[0], labels[0], 0.5, d).numpy().tolist()
    assert keep == ref.greedy_nms_masks(boxes[0], scores[0], 0.5, d, labels[0])


def test_the_masks_reference_agrees_with_the_loop_reference():
    # The second reference is itself checked against the first (float64, pair by pair).
    rng = np.random.default_rng(271)
    boxes = ref.random_boxes(rng, 80, high=100, min_size=5, max_size=40)
    scores = rng.choice(np.linspace(0, 1, 10), 80).astype(np.float32)    # ties
    labels = rng.integers(0, 3, 80)
    assert ref.greedy_nms_masks(boxes, scores, 0.4, 50) == ref.nms(boxes, scores, 0.4, 50)
    assert ref.greedy_nms_masks(boxes, scores, 0.4, 50, labels) == ref.batched_nms(boxes, scores, labels, 0.4, 50)


# Two boxes of one label at x = 214,000 whose IoU is 0.5000039 (corners on float32's 1/64 px
# grid there, so the IoU is exact up to its last rounding): NMS at 0.5 must drop the second.
# Shifting each label by ``label * 2 * span`` (the old scheme) moved them to x = 642,000 and
# beyond, where float32 resolves 1/16 px, and the IoU became 0.49984: the box survived.
_FAR = 214000.0
_FAR_PAIR = [[_FAR, 10, _FAR + 325, 144], [_FAR + 106.703125, 11, _FAR + 106.703125 + 325, 145]]


@pytest.mark.parametrize("label", [1, 3, 7, 80])
@pytest.mark.parametrize("method", ["tiled", "tf_image"])
def test_classwise_nms_at_large_coordinates_is_per_label_nms(label, method):
    boxes = np.array(_FAR_PAIR + [[10, 10, 50, 50], [_FAR, 10, _FAR + 325, 144]], np.float32)
    labels = np.array([label, label, 0, label + 1], np.int32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    assert B.iou(boxes[:1], boxes[1:2]).numpy()[0, 0] == pytest.approx(0.5000039, abs=2e-7)
    per_label = sorted((int(i) for lab in set(labels.tolist())
                        for i in np.where(labels == lab)[0][nms(boxes[labels == lab], scores[labels == lab],
                                                                0.5, 10).numpy()]),
                       key=lambda i: -scores[i])
    assert per_label == [0, 2, 3]                    # box 1 suppressed; box 3 is another label
    assert batched_nms(boxes, scores, labels, 0.5, 10).numpy().tolist() == per_label
    indices, num = padded_nms(boxes[None], scores[None], 0.5, 10, labels=labels[None], method=method)
    assert indices[0, :num[0]].numpy().tolist() == per_label
    assert ref.greedy_nms_masks(boxes, scores, 0.5, 10, labels) == per_label


def _with_non_finite(rng, n):
    boxes = _photo_scale_boxes(rng, n, size=200.0)
    scores = rng.random(n).astype(np.float32) * 0.9
    bad = {3: [np.nan, 10, 60, 60], 11: [0, 0, np.inf, 50], 25: [-np.inf, -np.inf, np.inf, np.inf]}
    for i, box in bad.items():
        boxes[i] = box
        scores[i] = 0.95 + i / 1000                   # kept early, in the first tile
    return boxes, scores, sorted(bad)


@pytest.mark.parametrize("method", ["tiled", "tf_image"])
def test_a_non_finite_box_never_spreads(method):
    # A box with a NaN or infinite coordinate overlaps nothing (its IoU is NaN or 0): it is
    # kept at its rank and the other boxes come out exactly as if it were absent.  (The old
    # one-hot product copied 0 * nan into every slot, so every later tile escaped suppression.)
    rng = np.random.default_rng(272)
    n = 64
    boxes, scores, bad = _with_non_finite(rng, n)
    labels = rng.integers(1, 3, n).astype(np.int32)
    finite = np.array([i for i in range(n) if i not in bad])
    for classwise in (False, True):
        lab = labels if classwise else None
        indices, num = padded_nms(boxes[None], scores[None], 0.5, n, labels=None if lab is None else lab[None],
                                  method=method, tile_size=8)
        got = indices[0, :num[0]].numpy().tolist()
        rest = ref.nms(boxes[finite], scores[finite], 0.5, n) if lab is None else \
            ref.batched_nms(boxes[finite], scores[finite], lab[finite], 0.5, n)
        assert got == bad[::-1] + finite[rest].tolist()
        assert got == ref.greedy_nms_masks(boxes, scores, 0.5, n, lab)


def test_classwise_padded_nms_compiles_with_xla_and_equals_greedy_nms():
    rng = np.random.default_rng(273)
    boxes = np.stack([_photo_scale_boxes(rng, 200) for _ in range(2)])
    scores = rng.random((2, 200)).astype(np.float32)
    labels = rng.integers(1, 4, (2, 200)).astype(np.int32)
    compiled = tf.function(lambda b, s, l: padded_nms(b, s, 0.5, 40, labels=l, tile_size=64),
                           jit_compile=True)
    indices, num = compiled(boxes, scores, labels)
    for b in range(2):
        assert indices[b, :num[b]].numpy().tolist() == ref.greedy_nms_masks(boxes[b], scores[b], 0.5, 40, labels[b])


def test_tf_image_method_equals_the_tiled_method_classwise():
    rng = np.random.default_rng(274)
    boxes = np.stack([ref.random_boxes(rng, 300, high=200, min_size=5, max_size=60) for _ in range(2)])
    scores = rng.choice(np.linspace(0, 1, 12), (2, 300)).astype(np.float32)   # ties
    labels = rng.integers(0, 6, (2, 300)).astype(np.int32)
    valid = rng.random((2, 300)) > 0.1
    for d in (5, 40, 300):
        tiled = padded_nms(boxes, scores, 0.45, d, 0.1, labels=labels, valid=valid, tile_size=32)
        image = padded_nms(boxes, scores, 0.45, d, 0.1, labels=labels, valid=valid, method="tf_image")
        for a, b in zip(tiled, image):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    # no candidate at all
    indices, num = padded_nms(boxes, scores, 0.45, 7, 2.0, labels=labels, method="tf_image")
    assert num.numpy().tolist() == [0, 0] and np.all(indices.numpy() == -1)
