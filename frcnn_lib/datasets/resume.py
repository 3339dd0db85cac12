"""Resuming the training stream mid-epoch: skip the batches a run already consumed.

Shape glossary: ``n`` records, ``k`` batches to skip, ``B`` images per batch, ``p`` stream
elements consumed by those ``k`` batches.

The training pipeline (``pipeline.make_dataset``) reads a repeated stream of
``(record index, flip bits)`` pairs, fully determined by the seed
(``pipeline.index_stream``), and batches the prepared images: ``B`` at a time with one
canvas, or grouped by orientation (``group_by_window``: a batch is emitted when ``B``
images of one orientation have arrived) with two.  A run that consumed ``k`` batches
resumes exactly where it was when the new stream

    buffered ++ stream[p:]

is batched the same way, where ``p`` is the number of pairs the first ``k`` batches used
and ``buffered`` the pairs of the other orientation still waiting in their unfilled window
at that moment (fewer than ``B``, so they fill no batch before the stream goes on as it
did).  ``p`` and ``buffered`` come from replaying the grouping on the index stream alone --
orientation is known from the record's size -- so no skipped image is read.  With one
canvas ``p = k * B`` and nothing is buffered.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from frcnn_lib.runtime.errors import FrcnnError


def portrait_flags(data, min_side, max_side):
    """``(n,)`` bool: the image is portrait after resizing (``h' > w'``), with the float32
    arithmetic of ``pipeline.resize_image`` (so that rounding agrees)."""
    h = tf.constant([r.height for r in data.records], tf.float32)
    w = tf.constant([r.width for r in data.records], tf.float32)
    scale = tf.minimum(min_side / tf.minimum(h, w), max_side / tf.maximum(h, w))
    new_h = tf.maximum(tf.cast(tf.round(h * scale), tf.int32), 1)
    new_w = tf.maximum(tf.cast(tf.round(w * scale), tf.int32), 1)
    return (new_h > new_w).numpy()


def consumed(stream, portrait, batch_size, skip_batches, chunk=4096):
    """Replay ``group_by_window`` on the index stream: ``(p, buffered)`` after ``skip_batches``
    batches, ``buffered`` a list of ``(index, bits)`` pairs in stream order."""
    windows = {False: [], True: []}
    emitted = position = 0
    for indices, bits in stream.batch(chunk).as_numpy_iterator():
        for index, bit in zip(indices, bits):
            position += 1
            window = windows[bool(portrait[index])]
            window.append((int(index), int(bit)))
            if len(window) == batch_size:
                window.clear()
                emitted += 1
                if emitted == skip_batches:
                    rest = windows[not portrait[index]]
                    return position, list(rest)
    raise FrcnnError(f"skip_batches={skip_batches}: the stream ended first")  # repeat is required


def skip_consumed(stream, make_stream, data, batch_size, min_side, max_side, single_canvas,
                  skip_batches, repeat=True):
    """``stream`` (the ``(index, bits)`` pairs of ``pipeline.index_stream``) without the pairs
    of its first ``skip_batches`` batches; see the module docstring.

    ``make_stream()`` builds an identical, never iterated stream for the replay: a dataset
    with ``reshuffle_each_iteration`` gives another order each time it is iterated, so the
    replay must not iterate ``stream`` itself.
    """
    if not repeat:
        raise FrcnnError("skip_batches: only for a repeated (training) stream")
    if skip_batches < 0:
        raise FrcnnError(f"skip_batches={skip_batches}: expected a count >= 0")
    if single_canvas:
        return stream.skip(skip_batches * batch_size)
    position, buffered = consumed(make_stream(), portrait_flags(data, min_side, max_side), batch_size,
                                  skip_batches)
    rest = stream.skip(position)
    if not buffered:
        return rest
    head = tf.data.Dataset.from_tensor_slices(
        (np.array([b[0] for b in buffered], np.int64), np.array([b[1] for b in buffered], np.int64)))
    return head.concatenate(rest)
