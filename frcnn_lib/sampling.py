"""Balanced sampling of positives and negatives to a fixed budget (a pure function).

Shape glossary: ``B`` images, ``N`` candidates (anchors or proposals).

Per image, of the ``num_samples`` budget at most ``round(num_samples * positive_fraction)``
go to positives, chosen uniformly at random; negatives, also at random, fill the rest as far
as there are negatives.  Everything not chosen becomes ``-1`` (ignored).  The draw is a
function of ``seed`` alone (stateless random ops), so it is reproducible and graph-safe.
"""
import tensorflow as tf


def _rank_among(mask, keys):
    """Rank (0 = first) of each True element of ``mask (B, N)`` in the order of ``keys``."""
    # Non-members get key 2 > any uniform key, so members come first in the order.
    order = tf.argsort(tf.where(mask, keys, 2.0), axis=1, stable=True)
    # The inverse permutation of ``order`` is each element's rank.
    return tf.argsort(order, axis=1, stable=True)


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
    take_pos = positive & (_rank_among(positive, keys) < num_pos)
    take_neg = negative & (_rank_among(negative, keys) < num_neg)
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
