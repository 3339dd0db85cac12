"""Anchors: reference boxes at every feature-map location (Ren et al. 2015, sec. 3.1.1).

Shape glossary: ``H, W`` feature-map size, ``A = len(scales) * len(ratios)`` anchors per
location, ``N = H * W * A`` anchors.

An anchor of scale ``s`` and ratio ``r`` (height / width) has area ``s**2``:
``w = s / sqrt(r)``, ``h = s * sqrt(r)``.  It is centred on ``((j + 0.5) * stride,
(i + 0.5) * stride)`` for feature location ``(i, j)``: the centre of the input patch that
the feature pixel sits over.  Order is location-major: the ``A`` anchors of location
``(0, 0)``, then ``(0, 1)``, ... row by row; within a location scales vary slowest.
This is the order in which a ``(B, H, W, A * k)`` head output reshapes to ``(B, N, k)``.
"""
import numpy as np
import tensorflow as tf


def base_anchors(scales, ratios):
    """The ``A`` anchors centred on the origin, ``(A, 4)`` xyxy float32, scale-major."""
    scales = tf.constant(scales, tf.float32)[:, None]   # (S, 1)
    ratios = tf.constant(ratios, tf.float32)[None, :]   # (1, R)
    widths = tf.reshape(scales / tf.sqrt(ratios), [-1])  # (A,)
    heights = tf.reshape(scales * tf.sqrt(ratios), [-1])
    return tf.stack([-widths / 2, -heights / 2, widths / 2, heights / 2], axis=-1)


def generate_anchors(feature_height, feature_width, stride, scales=(128, 256, 512),
                     ratios=(0.5, 1.0, 2.0)):
    """All anchors over a ``feature_height x feature_width`` map of the given ``stride``.

    Returns ``(feature_height * feature_width * A, 4)`` xyxy float32 in image pixels.
    ``feature_height`` and ``feature_width`` may be tensors (inside ``tf.function``).
    """
    stride = tf.cast(stride, tf.float32)
    ys = (tf.range(feature_height, dtype=tf.float32) + 0.5) * stride
    xs = (tf.range(feature_width, dtype=tf.float32) + 0.5) * stride
    cy, cx = tf.meshgrid(ys, xs, indexing="ij")                          # (H, W)
    centres = tf.reshape(tf.stack([cx, cy, cx, cy], axis=-1), [-1, 1, 4])  # (H*W, 1, 4)
    anchors = centres + base_anchors(scales, ratios)[None]               # (H*W, A, 4)
    return tf.reshape(anchors, [-1, 4])


def inside_image_mask(anchors, height, width, allowed_border=0.0):
    """``(..., N)`` bool: True for anchors lying wholly inside the image.

    The paper ignores cross-boundary anchors in training; ``allowed_border`` pixels of
    overhang are tolerated.  ``height``/``width`` may be per-image ``(B, 1)`` tensors.
    """
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    b = float(allowed_border)
    return ((anchors[..., 0] >= -b) & (anchors[..., 1] >= -b)
            & (anchors[..., 2] <= w + b) & (anchors[..., 3] <= h + b))


def num_anchors_per_location(scales, ratios):
    """``A``: the number of anchors at each feature-map location."""
    return int(np.size(scales) * np.size(ratios))
