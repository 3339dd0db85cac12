"""Balanced sampling of positives and negatives to a fixed budget (a pure function).

Shape glossary: ``B`` images, ``N`` candidates (anchors or proposals).

Per image, of the ``num_samples`` budget at most ``round(num_samples * positive_fraction)``
go to positives, chosen uniformly at random; negatives, also at random, fill the rest as far
as there are negatives.  Everything not chosen becomes ``-1`` (ignored).  The draw is a
function of ``seed`` alone (stateless random ops), so it is reproducible and graph-safe.
"""
import tensorflow as tf


def _take_first(mask, keys, count, most):
    """The ``count (B, 1)`` members of ``mask (B, N)`` with the smallest ``keys`` (ties: the
    lower index), as a ``(B, N)`` bool mask; ``count`` is at most ``most`` (a Python int) and
    at most the number of members.

    One partial sort of ``most`` elements (``top_k``) instead of a full sort of ``N``: the RPN
    samples 256 of ~20k anchors per image.
    """
    shape = tf.shape(mask)
    k = tf.minimum(most, shape[1])
    # Members get -key in (-1, 0], non-members -2: top_k lists members first, by ascending key.
    _, order = tf.math.top_k(tf.where(mask, -keys, -2.0), k=k)              # (B, k)
    chosen = tf.range(k)[None, :] < count                                   # (B, k)
    rows = tf.broadcast_to(tf.range(shape[0])[:, None], tf.shape(order))
    hits = tf.scatter_nd(tf.stack([rows, order], axis=-1), tf.cast(chosen, tf.int32), shape)
    return hits > 0


def sample_balanced(labels, num_samples, positive_fraction, seed):
    """Subsample ``labels (B, N)`` in ``{1, 0, -1}`` to ``num_samples`` per image.

    Args:
      labels: ``(B, N)`` int32: 1 positive, 0 negative, -1 ignored.
      num_samples: int, the per-image budget.
      positive_fraction: float in ``[0, 1]``.
      seed: ``(2,)`` int32/int64 seed of the stateless draw.

    Returns:
      ``(B, N)`` int32 labels: the chosen positives stay 1, the chosen negatives 0, all
      others -1.  Per image: ``#1 = min(#pos, round(num_samples * positive_fraction))`` and
      ``#0 = min(#neg, num_samples - #1)``.
    """
    labels = tf.cast(labels, tf.int32)
    seed = tf.cast(seed, tf.int32)
    positive = labels == 1
    negative = labels == 0
    max_pos = int(round(num_samples * positive_fraction))
    num_pos = tf.minimum(tf.reduce_sum(tf.cast(positive, tf.int32), axis=1, keepdims=True), max_pos)
    num_neg = tf.minimum(tf.reduce_sum(tf.cast(negative, tf.int32), axis=1, keepdims=True),
                         num_samples - num_pos)
    keys = tf.random.stateless_uniform(tf.shape(labels), seed=seed)
    take_pos = _take_first(positive, keys, num_pos, max_pos)
    take_neg = _take_first(negative, keys, num_neg, num_samples)
    return tf.where(take_pos, 1, tf.where(take_neg, 0, -1))


def select_sampled(sampled_labels, num_samples):
    """Indices of the sampled elements, positives first, padded to a fixed count.

    Args:
      sampled_labels: ``(B, N)`` output of :func:`sample_balanced`.
      num_samples: ``R``, the fixed number of slots.

    Returns:
      ``indices (B, R)`` int32 into ``N`` and ``valid (B, R)`` bool (False for the padding
      slots of images that had fewer than ``R`` candidates).
    """
    n = tf.shape(sampled_labels)[1]
    position = tf.cast(tf.range(n), tf.float32)[None, :] / tf.cast(n + 1, tf.float32)
    # Positives score in (2, 3), negatives in (1, 2), the rest in (0, 1); ties broken by index.
    key = tf.cast(sampled_labels + 1, tf.float32) + 1.0 - position
    key = tf.where(sampled_labels >= 0, key, -position)
    k = tf.minimum(num_samples, n)
    _, indices = tf.math.top_k(key, k=k)
    valid = tf.gather(sampled_labels, indices, batch_dims=1) >= 0
    pad = num_samples - k
    indices = tf.pad(indices, [[0, 0], [0, pad]])
    valid = tf.pad(valid, [[0, 0], [0, pad]])
    return indices, valid
