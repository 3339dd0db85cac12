"""frcnn_lib.sampling: exact counts, label preservation, determinism, selection order."""
import numpy as np
import pytest
import tensorflow as tf

from frcnn_lib.sampling import sample_balanced, select_sampled

SEED = tf.constant([1, 2], tf.int32)


def _counts(labels):
    return (labels == 1).sum(axis=1), (labels == 0).sum(axis=1)


def test_hand_computed():
    labels = np.array([[1, 1, 1, 0, 0, 0, 0, -1]], np.int32)
    # budget 4, fraction 0.5: round(4 * 0.5) = 2 positives of 3, then 4 - 2 = 2 negatives of 4
    out = sample_balanced(labels, 4, 0.5, SEED).numpy()
    assert _counts(out) == ([2], [2])
    # budget 10, fraction 0.25: round(2.5) = 2 positives (Python's round), 10 - 2 = 8 > 4
    # negatives available -> all 4
    out = sample_balanced(labels, 10, 0.25, SEED).numpy()
    assert _counts(out) == ([2], [4])
    # only 1 positive but fraction 0.5 of 4: 1 positive, the remaining 3 go to negatives
    out = sample_balanced(np.array([[1, 0, 0, 0, 0, 0]], np.int32), 4, 0.5, SEED).numpy()
    assert _counts(out) == ([1], [3])


@pytest.mark.parametrize("num_samples,fraction", [(8, 0.5), (16, 0.25), (5, 0.5), (7, 0.5),
                                                  (3, 1.0), (6, 0.0), (256, 0.5)])
def test_exact_counts_and_only_flips_to_ignore(num_samples, fraction):
    rng = np.random.default_rng(20)
    labels = rng.choice([-1, 0, 1], size=(6, 40), p=[0.3, 0.5, 0.2]).astype(np.int32)
    labels[1] = -1                              # nothing to sample
    labels[2, :] = np.where(labels[2] == 0, 1, labels[2])  # no negatives
    labels[3, :3] = 1
    labels[3, 3:] = 0                           # few positives
    out = sample_balanced(labels, num_samples, fraction, SEED).numpy()
    n_pos, n_neg = _counts(labels)
    want_pos = np.minimum(n_pos, round(num_samples * fraction))
    want_neg = np.minimum(n_neg, num_samples - want_pos)
    got_pos, got_neg = _counts(out)
    np.testing.assert_array_equal(got_pos, want_pos)
    np.testing.assert_array_equal(got_neg, want_neg)
    # labels are kept or turned into -1, never anything else
    assert np.all((out == labels) | (out == -1))


def test_deterministic_for_a_seed_and_different_for_another():
    labels = np.tile(np.array([1] * 20 + [0] * 80, np.int32), (2, 1))
    a = sample_balanced(labels, 16, 0.5, [3, 4]).numpy()
    b = sample_balanced(labels, 16, 0.5, [3, 4]).numpy()
    c = sample_balanced(labels, 16, 0.5, [5, 6]).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a[0], a[1])   # images of a batch draw independently


def test_draw_is_uniform_not_first_come():
    # 500 identical images, 10 positives and 10 negatives, budget 6 -> 3 of each per image.
    # Every element should be chosen with frequency ~ 3/10 (not the first three every time).
    labels = np.tile(np.array([1] * 10 + [0] * 10, np.int32), (500, 1))
    out = sample_balanced(labels, 6, 0.5, SEED).numpy()
    freq = (out >= 0).mean(axis=0)
    assert np.all(np.abs(freq - 0.3) < 0.08), freq


def test_select_sampled_positives_first_and_padding():
    sampled = np.array([[-1, 0, 1, -1, 0, 1, -1],
                        [0, -1, -1, -1, -1, -1, -1]], np.int32)
    idx, valid = select_sampled(sampled, 5)
    # image 0: positives 2, 5 then negatives 1, 4, then one padding slot
    np.testing.assert_array_equal(idx.numpy()[0, :4], [2, 5, 1, 4])
    np.testing.assert_array_equal(valid.numpy(), [[1, 1, 1, 1, 0], [1, 0, 0, 0, 0]])
    assert idx.numpy()[1, 0] == 0
    # more slots than candidates: padded with invalid slots
    idx, valid = select_sampled(sampled, 10)
    assert idx.shape == (2, 10) and valid.numpy().sum() == 5
    assert np.all((idx.numpy() >= 0) & (idx.numpy() < 7))


def test_select_sampled_random_against_sort():
    rng = np.random.default_rng(21)
    labels = rng.choice([-1, 0, 1], size=(4, 50)).astype(np.int32)
    sampled = sample_balanced(labels, 12, 0.25, SEED).numpy()
    idx, valid = select_sampled(sampled, 12)
    idx, valid = idx.numpy(), valid.numpy()
    for b in range(4):
        want = list(np.where(sampled[b] == 1)[0]) + list(np.where(sampled[b] == 0)[0])
        np.testing.assert_array_equal(idx[b][valid[b]], want)
        assert valid[b].sum() == len(want)
        assert np.all(valid[b][:len(want)]) and not np.any(valid[b][len(want):])


def test_tf_function_matches_eager():
    rng = np.random.default_rng(22)
    labels = tf.constant(rng.choice([-1, 0, 1], size=(3, 30)).astype(np.int32))

    def fn(labels):
        s = sample_balanced(labels, 8, 0.5, SEED)
        return (s,) + select_sampled(s, 8)

    for eager, graph in zip(fn(labels), tf.function(fn)(labels)):
        np.testing.assert_array_equal(eager.numpy(), graph.numpy())


def _reference_sample(labels, num_samples, fraction, keys):
    """numpy: per image, the members with the smallest keys (ties: lower index) win."""
    out = np.full_like(labels, -1)
    max_pos = round(num_samples * fraction)
    for b, (row, key) in enumerate(zip(labels, keys)):
        order = sorted(range(len(row)), key=lambda i: (key[i], i))
        pos = [i for i in order if row[i] == 1][:max_pos]
        neg = [i for i in order if row[i] == 0][:num_samples - len(pos)]
        out[b, pos], out[b, neg] = 1, 0
    return out


@pytest.mark.parametrize("n,num_samples,fraction", [(40, 8, 0.5), (300, 64, 0.25), (5000, 256, 0.5),
                                                    (30, 64, 0.25), (12, 4, 0.0)])
def test_the_draw_takes_the_smallest_keys_as_a_sort_would(n, num_samples, fraction):
    """The members with the smallest stateless-uniform keys, as a full sort would take them
    (float32 keys tie often at n = 5000: ties go to the lower index)."""
    rng = np.random.default_rng(n)
    labels = rng.choice([-1, 0, 1], size=(3, n), p=[0.2, 0.6, 0.2]).astype(np.int32)
    keys = tf.random.stateless_uniform(labels.shape, seed=SEED).numpy()
    np.testing.assert_array_equal(sample_balanced(labels, num_samples, fraction, SEED).numpy(),
                                  _reference_sample(labels, num_samples, fraction, keys))
