"""Losses of the RPN and the R-CNN head.

Shape glossary: ``B`` images, ``N`` anchors or sampled RoIs per image, ``K`` classes
including background.

The multi-task loss of Fast R-CNN (Girshick 2015, eq. 1), as used by both stages::

    L = (1 / N_cls) sum_i L_cls(p_i, u_i) + lambda (1 / N_reg) sum_i [u_i >= 1] L_reg(t_i, v_i)

with ``L_reg`` the smooth-L1 loss summed over the four coordinates.  The helpers below
take per-element weights (0 for ignored or padded elements) and normalise by the number
of sampled elements, as the reference implementations do.
"""
import tensorflow as tf


def smooth_l1(x, sigma=1.0):
    """Elementwise smooth-L1 of ``x``.

    ``0.5 * (sigma * x)**2`` where ``|x| < 1 / sigma**2``, else ``|x| - 0.5 / sigma**2``.
    Continuous with a continuous first derivative at the switch point.
    """
    x = tf.convert_to_tensor(x, tf.float32)
    sigma2 = float(sigma) ** 2
    abs_x = tf.abs(x)
    return tf.where(abs_x < 1.0 / sigma2, 0.5 * sigma2 * tf.square(x), abs_x - 0.5 / sigma2)


def _normalizer(weights):
    return tf.maximum(tf.reduce_sum(weights), 1.0)


def objectness_loss(logits, labels, weights):
    """Binary cross-entropy of the RPN, averaged over sampled anchors.

    Args:
      logits: ``(B, N)`` objectness logits.
      labels: ``(B, N)`` 1 object, 0 background (any value where ``weights`` is 0).
      weights: ``(B, N)`` 1 for sampled anchors, 0 otherwise.
    """
    labels = tf.cast(tf.maximum(labels, 0), tf.float32)
    weights = tf.cast(weights, tf.float32)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=tf.cast(logits, tf.float32))
    return tf.reduce_sum(ce * weights) / _normalizer(weights)


def classification_loss(logits, labels, weights):
    """Softmax cross-entropy over ``K`` classes, averaged over sampled RoIs.

    Args:
      logits: ``(B, R, K)``.  labels: ``(B, R)`` int in ``0..K-1`` (any where weight 0).
      weights: ``(B, R)`` 1 for sampled RoIs, 0 for padding.
    """
    labels = tf.maximum(tf.cast(labels, tf.int32), 0)
    weights = tf.cast(weights, tf.float32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=tf.cast(logits, tf.float32))
    return tf.reduce_sum(ce * weights) / _normalizer(weights)


def box_regression_loss(deltas, target_deltas, weights, normalizer_weights=None, sigma=1.0,
                        *, smooth_l1_fn=smooth_l1):
    """Smooth-L1 on ``(B, N, 4)`` deltas, summed over coordinates.

    ``weights (B, N)`` is 1 for elements that carry a box target (positive anchors or
    foreground RoIs).  The sum is divided by the number of sampled elements,
    ``sum(normalizer_weights)`` (all sampled anchors or RoIs, as in the reference
    implementations), or by ``sum(weights)`` when ``normalizer_weights`` is None.
    ``smooth_l1_fn``: the elementwise smooth-L1 to use (a learner's, in the course).
    """
    weights = tf.cast(weights, tf.float32)
    diff = tf.cast(deltas, tf.float32) - target_deltas
    per_box = tf.reduce_sum(tf.cast(smooth_l1_fn(diff, sigma), tf.float32), axis=-1)
    norm = weights if normalizer_weights is None else tf.cast(normalizer_weights, tf.float32)
    return tf.reduce_sum(per_box * weights) / _normalizer(norm)
