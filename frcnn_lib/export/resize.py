"""The pipeline's resize (``pipeline.resize_image``) in ops that every export format maps.

Shape glossary: ``h, w`` an input image, ``h', w'`` after resizing, ``C`` channels,
``T`` taps of the resampling filter per output pixel.

``resize_image`` calls ``tf.image.resize``: bilinear, with TensorFlow's antialiasing filter
when it shrinks (the ``ScaleAndTranslate`` kernel, which TFLite's builtin ops and tf2onnx
do not have).  :func:`resample` computes the same filter with gathers, multiplies and adds,
one axis after the other: for output pixel ``x`` of an axis scaled by ``s = out / in``,

    sample = (x + 0.5) / s,   k = max(1 / s, 1)          (the filter widens when shrinking)
    weight(j) = max(0, 1 - |j + 0.5 - sample| / k)        for input pixels j in its span
    out[x] = sum_j weight(j) * in[j] / sum_j weight(j)

which is ``ScaleAndTranslate``'s triangle kernel with antialiasing (TensorFlow,
``core/kernels/image/scale_and_translate_op.cc``: the same spans and normalisation).  When
enlarging, ``k = 1`` and the weights are those of plain bilinear interpolation with
half-pixel centres (``ResizeBilinear``); at ``s = 1`` the image is copied unchanged.  So one
function covers the three branches of ``resize_image``: its pixels (0..255) within 1e-4
(measured 6e-5; tests/test_export_contract.py allows 1e-3).

No matmul: a GPU would round the pixels through TF32 (see docs/engineer.md, "exact on every
device").  The taps run in a ``tf.while_loop`` (``T = 2 * ceil(k) + 1``, 3 when enlarging,
9 when shrinking 4x), each adding one gathered row (or column) of the image, so memory
stays at two images' worth whatever the scale.
"""
import tensorflow as tf

from frcnn_lib.datasets.pipeline import resize_scale, resized_size


def _taps(in_size, out_size):
    """One axis: ``(sources (out, T) int32, weights (out, T) float32)``, the input pixels
    each output pixel reads and their normalised weights (0 beyond the pixel's span)."""
    scale = tf.cast(out_size, tf.float32) / tf.cast(in_size, tf.float32)
    inv_scale = 1.0 / scale
    kernel_scale = tf.maximum(inv_scale, 1.0)
    taps = 2 * tf.cast(tf.math.ceil(kernel_scale), tf.int32) + 1
    sample = (tf.cast(tf.range(out_size), tf.float32) + 0.5) * inv_scale
    last = in_size - 1
    start = tf.clip_by_value(tf.cast(tf.math.ceil(sample - kernel_scale - 0.5), tf.int32), 0, last)
    end = tf.clip_by_value(tf.cast(tf.floor(sample + kernel_scale - 0.5), tf.int32), 0, last) + 1
    sources = start[:, None] + tf.range(taps)[None, :]
    position = tf.cast(sources, tf.float32) + 0.5 - sample[:, None]
    weights = tf.maximum(1.0 - tf.abs(position * (1.0 / kernel_scale)), 0.0)
    weights = tf.where(sources < end[:, None], weights, 0.0)
    weights = weights * (1.0 / tf.reduce_sum(weights, axis=1, keepdims=True))
    return tf.minimum(sources, last), weights


def _resample_axis(image, out_size, axis):
    """``image (h, w, C)`` float32 resampled along ``axis`` (0: rows, 1: columns) to ``out_size``."""
    shape = tf.shape(image)
    sources, weights = _taps(shape[axis], out_size)
    out_shape = tf.stack([out_size, shape[1], shape[2]] if axis == 0 else [shape[0], out_size, shape[2]])

    def add_tap(k, total):
        w = weights[:, k]
        w = w[:, None, None] if axis == 0 else w[None, :, None]
        return k + 1, total + w * tf.gather(image, sources[:, k], axis=axis)

    _, out = tf.while_loop(lambda k, _: k < tf.shape(sources)[1], add_tap,
                           (tf.constant(0), tf.zeros(out_shape, tf.float32)))
    return out


def resample(image, height, width):
    """``image (h, w, C)`` (any real dtype) -> ``(height, width, C)`` float32, as
    ``tf.image.resize(image, (height, width), "bilinear", antialias=True)`` (see the module
    docstring).  ``height``, ``width``: positive int scalars or tensors."""
    image = tf.cast(image, tf.float32)
    return _resample_axis(_resample_axis(image, height, 0), width, 1)


def resize_image(image, min_side, max_side):
    """``pipeline.resize_image`` with :func:`resample`: ``image (h, w, C)`` ->
    ``(resized (h', w', C) float32 in 0..255, scale () float32)``, the same size and scale
    (``pipeline.resize_scale``, ``pipeline.resized_size``) and the same pixels within 1e-4 (see the module docstring)."""
    shape = tf.shape(image)
    scale = resize_scale(shape, min_side, max_side)
    new_h, new_w = resized_size(shape, scale)
    return tf.clip_by_value(resample(image, new_h, new_w), 0.0, 255.0), scale
