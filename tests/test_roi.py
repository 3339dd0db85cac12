"""frcnn_lib.roi: RoIAlign and Luminoth RoI pooling against explicit bilinear sampling."""
import numpy as np
import pytest
import tensorflow as tf

import reference as ref
from frcnn_lib import roi
from frcnn_lib.roi import flatten_rois


@pytest.fixture(params=roi.METHODS, autouse=True)
def method(request):
    """Every test runs on both implementations (gathers, crop_and_resize)."""
    return request.param


def roi_align(*args, **kwargs):
    return roi.roi_align(*args, **kwargs, method=_current_method[0])


def roi_pool(*args, **kwargs):
    return roi.roi_pool(*args, **kwargs, method=_current_method[0])


_current_method = ["gather"]


@pytest.fixture(autouse=True)
def _use_method(method):
    _current_method[0] = method


def _ramp(h=4, w=4):
    """(1, h, w, 1) feature map whose value is the column index x."""
    return np.tile(np.arange(w, dtype=np.float32)[None, None, :, None], (1, h, 1, 1))


def test_roi_align_hand_computed():
    # stride 16: image [16, 48] -> feature [16/16 - 0.5, 48/16 - 0.5] = [0.5, 2.5]
    # S = 2, ratio 1: n = 2 samples at 0.5 + (k + 0.5) * 2 / 2 = 1.0, 2.0; value = x
    out = roi_align(_ramp(), [[16.0, 16.0, 48.0, 48.0]], [0], 16, 2, 1).numpy()
    np.testing.assert_allclose(out[0, :, :, 0], [[1.0, 2.0], [1.0, 2.0]], atol=1e-6)
    # ratio 2: n = 4 samples at 0.75, 1.25, 1.75, 2.25; bins average pairs -> 1.0, 2.0
    out = roi_align(_ramp(), [[16.0, 16.0, 48.0, 48.0]], [0], 16, 2, 2).numpy()
    np.testing.assert_allclose(out[0, :, :, 0], [[1.0, 2.0], [1.0, 2.0]], atol=1e-6)
    # [16, 40] -> [0.5, 2.0], S = 1, ratio 1: one sample at the centre 1.25
    out = roi_align(_ramp(), [[16.0, 16.0, 40.0, 40.0]], [0], 16, 1, 1).numpy()
    np.testing.assert_allclose(out[0, 0, 0, 0], 1.25, atol=1e-6)


def test_roi_pool_hand_computed():
    # [0.5, 2.5] in feature coordinates; S = 1: 2 samples at the edges 0.5 and 2.5 -> max 2.5
    out = roi_pool(_ramp(), [[16.0, 16.0, 48.0, 48.0]], [0], 16, 1).numpy()
    np.testing.assert_allclose(out.ravel(), [2.5], atol=1e-6)
    # S = 2: 4 samples at 0.5 + k * 2/3 = 0.5, 1.167, 1.833, 2.5 -> max of pairs 1.167, 2.5
    out = roi_pool(_ramp(), [[16.0, 16.0, 48.0, 48.0]], [0], 16, 2).numpy()
    np.testing.assert_allclose(out[0, :, :, 0], [[7 / 6, 2.5], [7 / 6, 2.5]], atol=1e-5)


def test_samples_far_outside_the_map_are_zero():
    feats = np.ones((1, 4, 4, 1), np.float32)
    # image [-64, -32] -> feature [-4.5, -2.5]: all samples more than 1 px left of the map -> 0
    out = roi_align(feats, [[-64.0, 0.0, -32.0, 32.0]], [0], 16, 2, 1).numpy()
    np.testing.assert_array_equal(out, 0.0)
    # image [32, 112] -> feature x in [1.5, 6.5], S = 2, ratio 1: samples at 2.5 (inside, 1)
    # and 5.5 (beyond W = 4, more than one pixel out, so 0)
    out = roi_align(feats, [[32.0, 16.0, 112.0, 48.0]], [0], 16, 2, 1).numpy()
    np.testing.assert_allclose(out[0, :, :, 0], [[1.0, 0.0], [1.0, 0.0]])


@pytest.mark.parametrize("roi", [[0, 0, 40, 40], [0, 60, 30, 100], [120, 120, 160, 160],
                                 [140, 0, 160, 20], [0, 0, 6, 6], [0, 0, 160, 160]])
def test_constant_features_give_constant_output_for_rois_inside_the_image(roi):
    # Within one pixel of the map the edge value is read (Detectron2), so a constant map
    # gives the constant back for every RoI inside the image, border-touching ones included.
    # (Before this rule RoIAlign read 0.25 at the corner of [0, 0, 40, 40].)
    feats = np.full((1, 20, 20, 1), 3.0, np.float32)
    for fn in (lambda: roi_align(feats, [roi], [0], 8, 7, 2), lambda: roi_pool(feats, [roi], [0], 8, 7)):
        np.testing.assert_allclose(fn().numpy(), 3.0, atol=1e-5)


def _random_case(rng, b=2, h=5, w=6, c=3, r=7, stride=8):
    feats = rng.normal(0, 1, (b, h, w, c)).astype(np.float32)
    x1 = rng.uniform(-15, w * stride, r)
    y1 = rng.uniform(-15, h * stride, r)
    rois = np.stack([x1, y1, x1 + rng.uniform(1, 40, r), y1 + rng.uniform(1, 40, r)], 1)
    return feats, rois.astype(np.float32), rng.integers(0, b, r).astype(np.int32), stride


@pytest.mark.parametrize("size,ratio", [(2, 2), (3, 1), (1, 2), (4, 3)])
def test_roi_align_against_reference(size, ratio):
    feats, rois, idx, stride = _random_case(np.random.default_rng(50))
    got = roi_align(feats, rois, idx, stride, size, ratio).numpy()
    np.testing.assert_allclose(got, ref.roi_align(feats, rois, idx, stride, size, ratio), atol=2e-4)


@pytest.mark.parametrize("size", [1, 2, 3])
def test_roi_pool_against_reference(size):
    feats, rois, idx, stride = _random_case(np.random.default_rng(51))
    got = roi_pool(feats, rois, idx, stride, size).numpy()
    np.testing.assert_allclose(got, ref.roi_pool(feats, rois, idx, stride, size), atol=2e-4)


@pytest.mark.parametrize("shape", [(1, 1, 5, 2), (2, 4, 1, 2), (1, 1, 1, 3)])
def test_one_pixel_wide_or_high_maps_against_reference(shape):
    # crop_and_resize maps normalised coordinates onto [0, H - 1], a single point when H == 1
    rng = np.random.default_rng(52)
    feats = rng.normal(0, 1, shape).astype(np.float32)
    _, rois, idx, stride = _random_case(rng, b=shape[0], h=shape[1], w=shape[2], r=6)
    # include a RoI whose only sample sits exactly on the pixel centre (feature coordinate 0)
    rois = np.concatenate([rois, [[0.0, 0.0, 16.0, 16.0]]]).astype(np.float32)
    idx = np.concatenate([idx, [0]]).astype(np.int32)
    np.testing.assert_allclose(roi_align(feats, rois, idx, 8, 2, 2).numpy(),
                               ref.roi_align(feats, rois, idx, 8, 2, 2), atol=2e-4)
    np.testing.assert_allclose(roi_align(feats, rois, idx, 8, 1, 1).numpy(),
                               ref.roi_align(feats, rois, idx, 8, 1, 1), atol=2e-4)
    np.testing.assert_allclose(roi_pool(feats, rois, idx, 8, 2).numpy(),
                               ref.roi_pool(feats, rois, idx, 8, 2), atol=2e-4)


def test_roi_align_is_crop_and_resize_at_the_sample_grid():
    # with sampling_ratio 1, RoIAlign of size n is crop_and_resize of size n on the box whose
    # corners are the first and last sample points, on the map padded by one edge-replicated
    # pixel (the Detectron2 border rule): coordinates + 1, normalised by (H + 1, W + 1)
    feats, rois, idx, stride = _random_case(np.random.default_rng(53))
    n = 4
    feats = np.pad(feats, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = feats.shape[1:3]
    f = rois / stride - 0.5 + 1.0
    step_x, step_y = (f[:, 2] - f[:, 0]) / n, (f[:, 3] - f[:, 1]) / n
    first_x, last_x = f[:, 0] + step_x / 2, f[:, 2] - step_x / 2
    first_y, last_y = f[:, 1] + step_y / 2, f[:, 3] - step_y / 2
    norm = np.stack([first_y / (h - 1), first_x / (w - 1), last_y / (h - 1), last_x / (w - 1)], 1)
    want = tf.image.crop_and_resize(feats, norm, idx, [n, n]).numpy()
    unpadded = feats[:, 1:-1, 1:-1]
    np.testing.assert_allclose(roi_align(unpadded, rois, idx, stride, n, 1).numpy(), want, atol=1e-5)
    # and RoI pooling is a 2x2 max-pool of the edge-to-edge crop of size 2S
    norm = np.stack([f[:, 1] / (h - 1), f[:, 0] / (w - 1), f[:, 3] / (h - 1), f[:, 2] / (w - 1)], 1)
    crops = tf.image.crop_and_resize(feats, norm, idx, [2 * n, 2 * n])
    want = tf.nn.max_pool2d(crops, 2, 2, "VALID").numpy()
    np.testing.assert_allclose(roi_pool(unpadded, rois, idx, stride, n).numpy(), want, atol=1e-5)


def test_gradient_reaches_features_as_convex_weights():
    # every RoIAlign output is an average of bilinear samples (weights summing to 1) when all
    # samples are inside the map: d(sum of outputs)/d(features) sums to S * S per channel
    feats = tf.Variable(np.random.default_rng(54).normal(0, 1, (1, 6, 6, 2)).astype(np.float32))
    with tf.GradientTape() as tape:
        out = roi_align(feats, [[10.0, 12.0, 70.0, 60.0]], [0], 16, 3, 2)
        total = tf.reduce_sum(out)
    grad = tape.gradient(total, feats).numpy()
    np.testing.assert_allclose(grad.sum(axis=(0, 1, 2)), [9.0, 9.0], rtol=1e-5)


def _adjoint_case(rng, overlapping):
    """Features, RoIs and an upstream gradient.  ``overlapping``: 40 RoIs over 2 images, many
    sharing pixels; otherwise one RoI per image (nothing two RoIs write to is shared)."""
    b, r = (2, 40) if overlapping else (4, 4)
    feats, rois, idx, stride = _random_case(rng, b=b, h=9, w=11, c=5, r=r)
    if not overlapping:
        idx = np.arange(b, dtype=np.int32)
    return feats, rois, idx, stride


# crop_and_resize's CPU gradient races where RoIs overlap (roi.METHODS): it is held only to
# the case without overlap.  (Parametrizing ``method`` here overrides the module's fixture.)
@pytest.mark.parametrize("method,overlapping", [
    ("gather", False), ("crop_and_resize", False), ("compiled_gather", False),
    ("gather", True), ("compiled_gather", True)])
def test_gradient_is_the_adjoint_of_the_reference_sampling(method, overlapping):
    # Every crop is linear in the features: its gradient G for an upstream U is the adjoint,
    # so <crop(F), U> = <F, G> for every F.  Checked against the numpy reference's RoIAlign
    # (2 samples per bin), in float64; roi_pool samples through the same crop function, its
    # gradient routed through the max.
    rng = np.random.default_rng(57)
    feats, rois, idx, stride = _adjoint_case(rng, overlapping)
    upstream = rng.normal(0, 1, (len(rois), 6, 6, feats.shape[-1])).astype(np.float32)
    features = tf.constant(feats)
    with tf.GradientTape() as tape:
        tape.watch(features)
        crops = roi.roi_align(features, rois, idx, stride, 3, 2, method=method)
        crops = tf.image.resize(crops, [6, 6], method="nearest")   # one more linear step
        total = tf.reduce_sum(crops * upstream)
    grad = tape.gradient(total, features).numpy().astype(np.float64)
    want = ref.roi_align(feats, rois, idx, stride, 3, 2).astype(np.float64)
    want = tf.image.resize(want, [6, 6], method="nearest").numpy()
    probe = rng.normal(0, 1, feats.shape)           # <crop(probe), U> against <probe, G>
    lhs = np.sum(tf.image.resize(ref.roi_align(probe, rois, idx, stride, 3, 2), [6, 6],
                                 method="nearest").numpy() * upstream)
    assert abs(lhs - np.sum(probe * grad)) < 1e-3 * max(1.0, abs(lhs))
    np.testing.assert_allclose(float(total), np.sum(want * upstream), rtol=1e-4)


@pytest.mark.parametrize("method", ["compiled_gather"])   # once, not once per method
def test_compiled_gather_gradient_repeats_and_matches_gather_in_every_compilation(method):
    # The losses' crop: the same gradient as plain gathers, bit for bit on every call, alone,
    # inside a traced step and inside an XLA-compiled one (each its own order of sums);
    # float16 features get float16 gradients.
    rng = np.random.default_rng(58)
    feats, rois, idx, stride = _adjoint_case(rng, overlapping=True)
    upstream = rng.normal(0, 1, (len(rois), 3, 3, feats.shape[-1])).astype(np.float32)

    def gradient(f, crop_method):
        with tf.GradientTape() as tape:
            tape.watch(f)
            total = tf.reduce_sum(tf.cast(roi.roi_align(f, rois, idx, stride, 3, 2,
                                                        method=crop_method), tf.float32) * upstream)
        return tape.gradient(total, f)

    features = tf.constant(feats)
    want = gradient(features, "gather").numpy()
    traced = tf.function(lambda f: gradient(f, method))
    compiled = tf.function(lambda f: gradient(f, method), jit_compile=True)
    for run in (lambda: gradient(features, method), lambda: traced(features),
                lambda: compiled(features)):
        runs = [run().numpy() for _ in range(3)]
        np.testing.assert_allclose(runs[0], want, atol=1e-5)
        for got in runs[1:]:
            np.testing.assert_array_equal(got, runs[0])
    half = gradient(tf.constant(feats, tf.float16), method)
    assert half.dtype == tf.float16
    np.testing.assert_allclose(half.numpy().astype(np.float32), want, atol=2e-2)


def test_output_shapes_and_dtype():
    feats = np.zeros((2, 5, 5, 4), np.float16)
    out = roi_align(feats, [[0.0, 0.0, 30.0, 30.0]] * 3, [0, 1, 1], 8, 7, 2)
    assert out.shape == (3, 7, 7, 4) and out.dtype == tf.float16
    assert roi_pool(feats, [[0.0, 0.0, 30.0, 30.0]], [1], 8, 7).shape == (1, 7, 7, 4)


def test_flatten_rois():
    rois = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    flat, idx = flatten_rois(rois)
    np.testing.assert_array_equal(flat.numpy(), rois.reshape(6, 4))
    np.testing.assert_array_equal(idx.numpy(), [0, 0, 0, 1, 1, 1])


def test_tf_function_matches_eager():
    feats, rois, idx, stride = _random_case(np.random.default_rng(55))
    args = (tf.constant(feats), tf.constant(rois), tf.constant(idx))
    fn = lambda f, r, i: (roi_align(f, r, i, stride, 3, 2), roi_pool(f, r, i, stride, 3))  # noqa: E731
    # Graph mode may fold the coordinate arithmetic in another order: float32 rounding of
    # O(10) coordinates (ulp ~1e-6) is the only difference allowed.
    for eager, graph in zip(fn(*args), tf.function(fn)(*args)):
        np.testing.assert_allclose(eager.numpy(), graph.numpy(), atol=1e-5)


def test_unknown_spatial_shape_in_tf_function():
    # the feature-map size only known at run time (as for images of any size): still right,
    # for a one-row map and for an ordinary one
    spec = [tf.TensorSpec([None, None, None, 2], tf.float32), tf.TensorSpec([None, 4], tf.float32),
            tf.TensorSpec([None], tf.int32)]
    fn = tf.function(lambda f, r, i: roi_align(f, r, i, 8, 2, 2), input_signature=spec)
    rng = np.random.default_rng(56)
    for shape in [(1, 1, 5, 2), (2, 4, 6, 2)]:
        feats = rng.normal(0, 1, shape).astype(np.float32)
        _, rois, idx, _ = _random_case(rng, b=shape[0], h=shape[1], w=shape[2], r=5)
        np.testing.assert_allclose(fn(feats, rois, idx).numpy(),
                                   ref.roi_align(feats, rois, idx, 8, 2, 2), atol=2e-4)


def test_both_methods_agree_and_gather_compiles_with_xla():
    rng = np.random.default_rng(5)
    feats = rng.normal(size=(2, 9, 13, 4)).astype(np.float32)
    xy = rng.uniform(-20, 180, (24, 2))
    rois = np.concatenate([xy, xy + rng.uniform(1, 90, (24, 2))], 1).astype(np.float32)
    index = np.repeat([0, 1], 12).astype(np.int32)
    for fn in (roi.roi_pool, roi.roi_align):
        fused = fn(feats, rois, index, 16, 3, method="crop_and_resize").numpy()
        gathered = fn(feats, rois, index, 16, 3, method="gather").numpy()
        compiled = tf.function(lambda f, r, i: fn(f, r, i, 16, 3, method="gather"),
                               jit_compile=True)(feats, rois, index).numpy()
        np.testing.assert_allclose(gathered, fused, atol=1e-4)
        np.testing.assert_allclose(compiled, fused, atol=1e-4)
    with pytest.raises(ValueError, match="method"):
        roi.roi_pool(feats, rois, index, 16, 3, method="bilinear")
