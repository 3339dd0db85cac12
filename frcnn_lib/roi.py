"""RoI feature extraction: a fixed-size feature grid for every region of interest.

Shape glossary: ``B`` images, ``Hf, Wf`` feature-map size, ``C`` channels, ``R`` RoIs in
all (over the batch), ``S`` output size (7 for VGG-16's fc6).

Coordinates: feature pixel ``(i, j)`` sits over the image point ``((j + 0.5) * stride,
(i + 0.5) * stride)``, so an image coordinate ``x`` is the continuous feature coordinate
``x / stride - 0.5`` (Detectron2's ``aligned=True``).  Both functions take RoIs in image
pixels (xyxy) with the index of the image each belongs to, and sample bilinearly for the
whole batch at once, by gathers (``method="gather"``: compiles with XLA and TFLite; or
``"compiled_gather"``: the same, with its forward pass and gradient each run as one XLA kernel),
or by ``tf.image.crop_and_resize`` (``"crop_and_resize"``: faster on a CPU, no XLA kernel).
Borders as in
Detectron2: a sample up to one pixel outside ``[0, Hf - 1] x [0, Wf - 1]`` reads the nearest
edge value (so RoIs touching the image border see real features), farther out 0.

* :func:`roi_pool` -- as in Luminoth: crop-and-resize the RoI to ``2S x 2S`` samples spanning
  it edge to edge, then 2x2 max-pool to ``S x S``.  A differentiable stand-in for the
  quantised max pooling of Fast R-CNN.
* :func:`roi_align` -- RoIAlign (He et al. 2017): ``S x S`` bins, ``sampling_ratio**2``
  bilinear samples at regular positions inside each bin, averaged.
"""
import tensorflow as tf

# Three implementations of the same sampling, tested against each other and the reference:
# "gather" is plain ops that compile everywhere (XLA on GPU/TPU, TFLite); "crop_and_resize"
# is TensorFlow's fused kernel, several times faster on a CPU without XLA, for inference:
# its CPU gradient (CropAndResizeGradImage) shards the RoIs over threads that add into the
# same feature map without atomics, so where RoIs overlap updates are lost at random.
# "compiled_gather" runs the gathers, and apart their gradient (a scatter-add), as two XLA
# kernels even inside a step that is not compiled: race-free like "gather" and, on a CPU,
# about 3x faster than it with its gradient.  FasterRCNN's losses crop this way.
METHODS = ("gather", "crop_and_resize", "compiled_gather")


def _axis_positions(low, size, samples, first, last):
    """``(R, n)`` sample positions along one axis: sample ``k`` of ``samples`` sits at
    ``low + (first + k * (last - first) / (samples - 1)) * size`` (``low, size (R,)``: the
    RoI's start and size in continuous feature coordinates)."""
    steps = tf.range(samples, dtype=tf.float32) / max(samples - 1, 1)
    return low[:, None] + (first + steps[None, :] * (last - first)) * size[:, None]


def _axis_taps(position, extent):
    """Bilinear taps of ``position (R, n)`` on an axis of ``extent`` pixels.

    Returns ``(i0, i1) (R, n)`` int32 neighbouring indices, ``frac (R, n)`` the weight of
    ``i1``, and ``inside (R, n)`` bool (False farther than one pixel outside the map).
    """
    limit = tf.cast(extent, tf.float32)
    inside = (position >= -1.0) & (position <= limit)
    position = tf.clip_by_value(position, 0.0, limit - 1.0)
    i0 = tf.floor(position)
    frac = position - i0
    i0 = tf.cast(i0, tf.int32)
    i1 = tf.minimum(i0 + 1, tf.cast(extent, tf.int32) - 1)
    return i0, i1, frac, inside


def _axis_samples(low, size, samples, first, last, extent):
    """:func:`_axis_taps` of :func:`_axis_positions`."""
    return _axis_taps(_axis_positions(low, size, samples, first, last), extent)


def _crop_by_gather(features, rois, box_indices, stride, samples, first, last, grid=None):
    """Bilinear samples on a ``samples x samples`` grid per RoI: ``(R, n, n, C)``.

    Along each axis the first sample lies at ``lo + first * (hi - lo)`` and the last at
    ``lo + last * (hi - lo)``, in continuous feature coordinates.  Border rule of
    Detectron2's RoIAlign: a sample within one pixel outside the map reads the nearest edge
    value; one farther out reads 0.  Bilinear interpolation by gathering the four taps of
    every sample from the flattened map (ops XLA compiles; the gradient is a scatter-add),
    with no gradient through the coordinates.

    ``grid``: optional ``(rois (R, 4) image pixels, stride) -> (ys (R, n), xs (R, n))`` giving
    the sample positions in continuous feature coordinates instead (a learner's RoIAlign
    grid, ``frcnn_lib.parts``); ``samples``, ``first`` and ``last`` are then unused.
    """
    features = tf.convert_to_tensor(features)
    feats = tf.cast(features, tf.float32)
    rois = tf.stop_gradient(tf.convert_to_tensor(rois, tf.float32))
    shape = tf.shape(feats)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    if grid is None:
        f = rois / tf.cast(stride, tf.float32) - 0.5             # continuous feature coordinates
        x1, y1, x2, y2 = tf.unstack(f, axis=-1)
        y0, y1i, fy, in_y = _axis_samples(y1, y2 - y1, samples, first, last, height)
        x0, x1i, fx, in_x = _axis_samples(x1, x2 - x1, samples, first, last, width)
    else:
        ys, xs = grid(rois, stride)
        y0, y1i, fy, in_y = _axis_taps(tf.stop_gradient(tf.cast(ys, tf.float32)), height)
        x0, x1i, fx, in_x = _axis_taps(tf.stop_gradient(tf.cast(xs, tf.float32)), width)
    image = tf.cast(box_indices, tf.int32)[:, None, None] * height          # (R, 1, 1)
    flat = tf.reshape(feats, [-1, channels])                               # (B*Hf*Wf, C)

    def tap(rows, cols):                                                   # (R, n), (R, n)
        index = (image + rows[:, :, None]) * width + cols[:, None, :]       # (R, n, n)
        return tf.gather(flat, index)                                      # (R, n, n, C)

    wy, wx = fy[:, :, None, None], fx[:, None, :, None]
    top = tap(y0, x0) * (1.0 - wx) + tap(y0, x1i) * wx
    bottom = tap(y1i, x0) * (1.0 - wx) + tap(y1i, x1i) * wx
    crops = top * (1.0 - wy) + bottom * wy
    inside = tf.cast(in_y[:, :, None] & in_x[:, None, :], tf.float32)[..., None]
    return tf.cast(crops * inside, features.dtype)


def _crop_by_crop_and_resize(features, rois, box_indices, stride, samples, first, last):
    """:func:`_crop_by_gather` with ``tf.image.crop_and_resize`` (fast on CPUs and GPUs, but
    no XLA or TFLite kernel)."""
    features = tf.convert_to_tensor(features)
    rois = tf.convert_to_tensor(rois, tf.float32)
    # One edge-replicated pixel all round: coordinates in [-1, 0] and [Hf - 1, Hf] read the
    # edge value, and crop_and_resize's zero extrapolation starts exactly one pixel out.
    # (It also gives one-pixel maps the two rows crop_and_resize's (Hf - 1) scaling needs.)
    feats = tf.pad(tf.cast(features, tf.float32), [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    shape = tf.shape(feats)
    hf = tf.cast(shape[1], tf.float32)
    wf = tf.cast(shape[2], tf.float32)
    f = rois / tf.cast(stride, tf.float32) - 0.5 + 1.0          # padded feature coordinates
    x1, y1, x2, y2 = tf.unstack(f, axis=-1)
    w, h = x2 - x1, y2 - y1
    # crop_and_resize puts sample k at  y_norm1 * (Hf - 1) + k * (y_norm2 - y_norm1) * (Hf - 1) / (n - 1).
    ny1 = (y1 + first * h) / (hf - 1.0)
    ny2 = (y1 + last * h) / (hf - 1.0)
    nx1 = (x1 + first * w) / (wf - 1.0)
    nx2 = (x1 + last * w) / (wf - 1.0)
    norm = tf.stop_gradient(tf.stack([ny1, nx1, ny2, nx2], axis=-1))
    crops = tf.image.crop_and_resize(feats, norm, tf.cast(box_indices, tf.int32), [samples, samples])
    return tf.cast(crops, features.dtype)


# reduce_retracing: eager calls on ever new shapes (a notebook's) trace once with unknown
# sizes rather than once per shape; XLA still compiles each shape it meets.
@tf.function(jit_compile=True, reduce_retracing=True)
def _compiled_crop(features, rois, box_indices, stride, samples, first, last):
    """:func:`_crop_by_gather` as one XLA kernel (traced once per setting, compiled per shape)."""
    return _crop_by_gather(features, rois, box_indices, stride, samples, first, last)


@tf.function(jit_compile=True, reduce_retracing=True)
def _compiled_crop_gradient(features, rois, box_indices, upstream, stride, samples, first, last):
    """The gradient of :func:`_crop_by_gather` with respect to ``features`` for ``upstream
    (R, n, n, C)``, as one XLA kernel: a scatter-add of the four weighted taps of every sample.
    The crop is linear in ``features``, so only their shape is read."""
    with tf.GradientTape() as tape:
        tape.watch(features)
        crops = _crop_by_gather(features, rois, box_indices, stride, samples, first, last)
    return tape.gradient(crops, features, output_gradients=upstream)


def _crop_by_compiled_gather(features, rois, box_indices, stride, samples, first, last):
    """:func:`_crop_by_gather` with its forward pass and its gradient each compiled by XLA.

    Within a step that XLA does not compile (Keras' default on a CPU), TensorFlow's own
    gradient of the gathers is many small ops over ``(R, n, n, C)`` tensors; one compiled
    scatter-add is about 3x faster, and, unlike ``crop_and_resize``'s, free of races."""
    features = tf.convert_to_tensor(features)
    rois = tf.stop_gradient(tf.convert_to_tensor(rois, tf.float32))
    box_indices = tf.cast(box_indices, tf.int32)

    @tf.custom_gradient
    def crop(feats):
        def gradient(upstream):
            return _compiled_crop_gradient(feats, rois, box_indices, upstream,
                                           stride, samples, first, last)
        return _compiled_crop(feats, rois, box_indices, stride, samples, first, last), gradient

    return crop(features)


_CROPS = {"gather": _crop_by_gather, "crop_and_resize": _crop_by_crop_and_resize,
          "compiled_gather": _crop_by_compiled_gather}


def _crop(features, rois, box_indices, stride, samples, first, last, method):
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {', '.join(METHODS)}")
    return _CROPS[method](features, rois, box_indices, stride, samples, first, last)


def roi_pool(features, rois, box_indices, stride, output_size=7, method="gather"):
    """Crop-and-resize to ``2S x 2S`` then 2x2 max-pool: ``(R, S, S, C)``.

    Args:
      features: ``(B, Hf, Wf, C)``.  rois: ``(R, 4)`` xyxy image pixels.
      box_indices: ``(R,)`` int32, the image of each RoI.  stride: feature stride in pixels.
      method: ``"gather"``, ``"crop_and_resize"`` or ``"compiled_gather"`` (same result;
        see ``METHODS``).
    """
    crops = _crop(features, rois, box_indices, stride, 2 * output_size, 0.0, 1.0, method)
    return tf.nn.max_pool2d(crops, ksize=2, strides=2, padding="VALID")


def roi_align(features, rois, box_indices, stride, output_size=7, sampling_ratio=2,
              method="gather", grid=None):
    """RoIAlign: ``(R, S, S, C)``, each bin the mean of ``sampling_ratio**2`` bilinear samples.

    With ``n = S * sampling_ratio`` samples per axis, sample ``k`` sits at the centre of the
    ``k``-th of ``n`` equal slices of the RoI: ``lo + (k + 0.5) * (hi - lo) / n``.

    ``grid``: optional ``(rois (R, 4), stride, output_size, sampling_ratio) -> (ys (R, n),
    xs (R, n))``, the sample positions in continuous feature coordinates (a learner's, in
    the course: ``frcnn_lib.parts``); it implies ``method="gather"``.
    """
    n = output_size * sampling_ratio
    if grid is not None:
        crops = _crop_by_gather(features, rois, box_indices, stride, n, 0.0, 1.0,
                                grid=lambda r, st: grid(r, st, output_size, sampling_ratio))
        return tf.nn.avg_pool2d(crops, ksize=sampling_ratio, strides=sampling_ratio, padding="VALID")
    crops = _crop(features, rois, box_indices, stride, n, 0.5 / n, (n - 0.5) / n, method)
    if sampling_ratio == 1:   # one sample per bin: the crop is the output (no 1 x 1 pooling op)
        return crops
    return tf.nn.avg_pool2d(crops, ksize=sampling_ratio, strides=sampling_ratio, padding="VALID")


def flatten_rois(rois):
    """``rois (B, R, 4)`` -> ``(B*R, 4)`` and the matching ``box_indices (B*R,)``."""
    shape = tf.shape(rois)
    indices = tf.repeat(tf.range(shape[0]), shape[1])
    return tf.reshape(rois, [-1, 4]), indices
