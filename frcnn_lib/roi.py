"""RoI feature extraction: a fixed-size feature grid for every region of interest.

Shape glossary: ``B`` images, ``Hf, Wf`` feature-map size, ``C`` channels, ``R`` RoIs in
all (over the batch), ``S`` output size (7 for VGG-16's fc6).

Coordinates: feature pixel ``(i, j)`` sits over the image point ``((j + 0.5) * stride,
(i + 0.5) * stride)``, so an image coordinate ``x`` is the continuous feature coordinate
``x / stride - 0.5`` (Detectron2's ``aligned=True``).  Both functions take RoIs in image
pixels (xyxy) with the index of the image each belongs to, and call
``tf.image.crop_and_resize`` (bilinear sampling) once for the whole batch.  Borders as in
Detectron2: a sample up to one pixel outside ``[0, Hf - 1] x [0, Wf - 1]`` reads the nearest
edge value (so RoIs touching the image border see real features), farther out 0.

* :func:`roi_pool` -- as in Luminoth: crop-and-resize the RoI to ``2S x 2S`` samples spanning
  it edge to edge, then 2x2 max-pool to ``S x S``.  A differentiable stand-in for the
  quantised max pooling of Fast R-CNN.
* :func:`roi_align` -- RoIAlign (He et al. 2017): ``S x S`` bins, ``sampling_ratio**2``
  bilinear samples at regular positions inside each bin, averaged.
"""
import tensorflow as tf


def _crop(features, rois, box_indices, stride, samples, first, last):
    """Bilinear samples on a ``samples x samples`` grid per RoI.

    Along each axis the first sample lies at ``lo + first * (hi - lo)`` and the last at
    ``lo + last * (hi - lo)``, in continuous feature coordinates.  Border rule of
    Detectron2's RoIAlign: a sample within one pixel outside the map reads the nearest edge
    value; one farther out reads 0.
    """
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


def roi_pool(features, rois, box_indices, stride, output_size=7):
    """Crop-and-resize to ``2S x 2S`` then 2x2 max-pool: ``(R, S, S, C)``.

    Args:
      features: ``(B, Hf, Wf, C)``.  rois: ``(R, 4)`` xyxy image pixels.
      box_indices: ``(R,)`` int32, the image of each RoI.  stride: feature stride in pixels.
    """
    crops = _crop(features, rois, box_indices, stride, 2 * output_size, 0.0, 1.0)
    return tf.nn.max_pool2d(crops, ksize=2, strides=2, padding="VALID")


def roi_align(features, rois, box_indices, stride, output_size=7, sampling_ratio=2):
    """RoIAlign: ``(R, S, S, C)``, each bin the mean of ``sampling_ratio**2`` bilinear samples.

    With ``n = S * sampling_ratio`` samples per axis, sample ``k`` sits at the centre of the
    ``k``-th of ``n`` equal slices of the RoI: ``lo + (k + 0.5) * (hi - lo) / n``.
    """
    n = output_size * sampling_ratio
    crops = _crop(features, rois, box_indices, stride, n, 0.5 / n, (n - 0.5) / n)
    return tf.nn.avg_pool2d(crops, ksize=sampling_ratio, strides=sampling_ratio, padding="VALID")


def flatten_rois(rois):
    """``rois (B, R, 4)`` -> ``(B*R, 4)`` and the matching ``box_indices (B*R,)``."""
    shape = tf.shape(rois)
    indices = tf.repeat(tf.range(shape[0]), shape[1])
    return tf.reshape(rois, [-1, 4]), indices
