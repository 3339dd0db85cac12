"""Non-maximum suppression: greedy, by descending score, on ops that XLA compiles.

Shape glossary: ``B`` images, ``N`` boxes, ``T`` boxes per tile, ``D`` the fixed output size.

Greedy NMS keeps the highest-scoring box, drops every remaining box whose IoU with it is
``> iou_threshold`` (IoU as in :func:`frcnn_lib.boxes.iou`: inverted and empty boxes overlap
nothing, and neither do boxes with a non-finite coordinate, whose IoU is NaN or 0), and
repeats.  Ties in score go to the lower index.  Class-wise NMS (:func:`batched_nms`,
``padded_nms(labels=...)``) is NMS run separately per label: IoUs are computed on the boxes
as given and masked by label (a box only suppresses boxes of its own label).  Earlier
versions shifted each label's boxes by ``label * 2 * span`` instead; in float32 that rounds
large coordinates (at x = 214,000 shifted by a few labels, to 1/8 px), enough to flip an IoU
of 0.5000039 below a threshold of 0.5.

Exact on every device: boxes are only compared and copied (gathers, ``tf.where``), never
moved through arithmetic such as a matmul, which GPUs run in TF32 by default (10-bit
mantissa: about 0.4 px of rounding at 800 px).  So the kept indices are the greedy ones on
a CPU, a GPU with TF32 on, and under XLA alike, and a box with a NaN or infinite coordinate
stays in its own slot.

Implementation (the tiled scheme of the TensorFlow Model Garden's padded NMS, written
afresh): sort by score, cut the sorted boxes into tiles of ``T``, and walk the tiles in
order.  A tile first loses the boxes that overlap a box already kept in an earlier tile;
then suppression inside the tile is solved as a fixed point: a box that no surviving
higher-scored box of the tile overlaps is certainly kept, and removes the boxes it
overlaps; repeat until nothing changes.  By induction on the sorted order the fixed point
is exactly the greedy result.  Every shape is static (``(B, N)`` in, ``(B, D)`` out), so the
same code runs eagerly, in a ``tf.function`` and under ``jit_compile=True`` (GPU, TPU).
Kept boxes are collected, in order, in ``D + T`` slots (copied there by a gather); each tile
is compared with those slots and with itself, so the cost is ``O(N * (D + T))`` IoUs and the
loop stops as soon as ``D`` boxes are kept.
"""
import tensorflow as tf

from frcnn_lib import boxes as box_ops

TILE_SIZE = 256


def _overlaps(boxes_a, boxes_b, iou_threshold, labels_a=None, labels_b=None):
    """``(B, T, 4), (B, M, 4) -> (B, T, M)`` bool: IoU ``> iou_threshold``, and (when labels
    ``(B, T), (B, M)`` are given) the same label."""
    over = box_ops.iou(boxes_a, boxes_b) > iou_threshold
    if labels_a is not None:
        over &= tf.equal(labels_a[:, :, None], labels_b[:, None, :])
    return over


def _append_kept(slot_values, count, tile_values, tile_kept):
    """Copy the kept entries of a tile, in order, into the slots after the ``count`` used.

    Args:
      slot_values: ``(B, S, ...)``, the slots.  count: ``(B,)`` int32, slots used so far.
      tile_values: ``(B, T, ...)``.  tile_kept: ``(B, T)`` bool.

    Returns ``slot_values`` with slot ``count + r`` holding the ``r``-th kept entry of the
    tile.  A gather, not a one-hot product: values are copied bit for bit (a matmul runs in
    TF32 on recent GPUs, and ``0 * nan`` would spread a NaN into every slot), with static
    shapes and no scatter, so it compiles with XLA and converts to TFLite.
    """
    tile_size = tile_values.shape[1]
    num_slots = slot_values.shape[1]
    kept_up_to = tf.cumsum(tf.cast(tile_kept, tf.int32), axis=1)                # (B, T)
    rank = tf.range(num_slots)[None, :] - count[:, None]                         # (B, S)
    # The r-th kept entry sits at the first t with kept_up_to[t] > r, i.e. at the number of
    # t with kept_up_to[t] <= r (kept_up_to never decreases).
    source = tf.reduce_sum(tf.cast(kept_up_to[:, None, :] <= rank[:, :, None], tf.int32), axis=2)
    fresh = (rank >= 0) & (rank < kept_up_to[:, -1:])                           # (B, S)
    copied = tf.gather(tile_values, tf.minimum(source, tile_size - 1), batch_dims=1)
    for _ in range(len(copied.shape) - 2):
        fresh = fresh[..., None]
    return tf.where(fresh, copied, slot_values)


def _suppress_within_tile(overlap, alive):
    """Greedy NMS inside one sorted tile as a fixed point.

    Args:
      overlap: ``(B, T, T)`` bool, ``overlap[b, i, j]``: box ``i`` would suppress ``j``
        (``i < j`` and IoU above the threshold).
      alive: ``(B, T)`` bool, the candidates (valid, not suppressed by earlier tiles).

    Returns:
      ``(B, T)`` bool, the boxes greedy NMS keeps.
    """
    def suppressed_by(sources, alive_now):
        # (B, T): some box of ``sources`` overlaps this box.
        return alive_now & tf.reduce_any(overlap & sources[:, :, None], axis=1)

    def body(alive_now, _):
        certain = alive_now & ~suppressed_by(alive_now, alive_now)
        after = alive_now & ~suppressed_by(certain, alive_now)
        return after, tf.reduce_any(tf.not_equal(after, alive_now))

    alive, _ = tf.while_loop(lambda _, changed: changed, body, (alive, tf.constant(True)))
    return alive


def padded_nms(boxes, scores, iou_threshold, max_output_size, score_threshold=float("-inf"),
               labels=None, valid=None, method="tiled", tile_size=TILE_SIZE):
    """NMS over a batch with a fixed-size output, for use inside the model.

    Args:
      boxes: ``(B, N, 4)`` xyxy.  scores: ``(B, N)``.
      iou_threshold: boxes overlapping a kept box by IoU ``> iou_threshold`` are dropped.
      max_output_size: ``D``, the number of slots in the output.
      score_threshold: boxes scoring ``<= score_threshold`` are dropped first.
      labels: optional ``(B, N)`` int for class-wise NMS: a box suppresses only boxes of
        its own label (IoUs on the boxes as given, masked by label).
      valid: optional ``(B, N)`` bool; False boxes are never kept and suppress nothing.
      method: ``"tiled"`` (this module's, compiles with XLA) or ``"tf_image"``
        (``tf.image.non_max_suppression`` per image, and per label when ``labels`` are
        given: no XLA kernel, faster on a CPU for a few thousand boxes).  The same indices
        either way.

    Returns:
      ``indices (B, D)`` int32 into ``N`` by descending score (``-1`` pads after the kept
      ones) and ``num_valid (B,)`` int32.
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    scores = tf.cast(scores, tf.float32)
    if labels is not None:
        labels = tf.cast(labels, tf.int32)
    candidate = scores > score_threshold
    if valid is not None:
        candidate &= tf.cast(valid, tf.bool)
    if method == "tf_image":
        return _padded_nms_tf_image(boxes, tf.where(candidate, scores, float("-inf")),
                                    iou_threshold, max_output_size, labels)
    if method != "tiled":
        raise ValueError(f"method={method!r}: expected 'tiled' or 'tf_image'")
    batch = tf.shape(boxes)[0]
    # Static N where known (it is inside the model), so that the tile count is static too.
    n = boxes.shape[1] if boxes.shape[1] is not None else tf.shape(boxes)[1]

    # Sort by descending score; top_k puts equal scores in index order (ties to the lower).
    order_key = tf.where(candidate, scores, float("-inf"))
    _, order = tf.math.top_k(order_key, k=n)
    sorted_boxes = tf.gather(boxes, order, batch_dims=1)
    alive = tf.gather(candidate, order, batch_dims=1)
    classwise = labels is not None

    num_tiles = (n + tile_size - 1) // tile_size
    padded = num_tiles * tile_size
    sorted_boxes = tf.pad(sorted_boxes, [[0, 0], [0, padded - n], [0, 0]])
    alive = tf.pad(alive, [[0, 0], [0, padded - n]])
    # Tiles by reshaping and gathering (no slices of dynamic size: XLA needs static ones).
    box_tiles = tf.reshape(sorted_boxes, [batch, num_tiles, tile_size, 4])
    alive_tiles = tf.reshape(alive, [batch, num_tiles, tile_size])
    if classwise:  # the labels travel with their boxes; without them nothing is masked
        sorted_labels = tf.pad(tf.gather(labels, order, batch_dims=1), [[0, 0], [0, padded - n]])
        label_tiles = tf.reshape(sorted_labels, [batch, num_tiles, tile_size])
    upper = tf.linalg.band_part(tf.ones([tile_size, tile_size], tf.bool), 0, -1) \
        & ~tf.eye(tile_size, dtype=tf.bool)                                   # i < j

    # The boxes kept so far (and their labels), compacted in order: at most D + T - 1 of them
    # before the loop stops, so a tile is compared with D + T boxes rather than with all N.
    slots = max_output_size + tile_size
    tile_ids = tf.range(num_tiles)  # made outside the loop: XLA needs its size as a constant

    def tile_body(tile, count, kept_boxes, kept_labels, kept):
        tile_boxes = tf.gather(box_tiles, tile, axis=1)                          # (B, T, 4)
        tile_alive = tf.gather(alive_tiles, tile, axis=1)                        # (B, T)
        tile_labels = tf.gather(label_tiles, tile, axis=1) if classwise else None
        # Unused slots hold zero boxes, which overlap nothing.
        earlier = _overlaps(tile_boxes, kept_boxes, iou_threshold,
                            tile_labels, kept_labels if classwise else None)     # (B, T, slots)
        tile_alive &= ~tf.reduce_any(earlier, axis=2)
        overlap = _overlaps(tile_boxes, tile_boxes, iou_threshold, tile_labels, tile_labels) & upper[None]
        tile_kept = _suppress_within_tile(overlap, tile_alive)
        # Append this tile's kept boxes (and labels) after the ``count`` already there.
        kept_boxes = _append_kept(kept_boxes, count, tile_boxes, tile_kept)
        if classwise:
            kept_labels = _append_kept(kept_labels, count, tile_labels, tile_kept)
        count += tf.reduce_sum(tf.cast(tile_kept, tf.int32), axis=1)
        this_tile = tf.equal(tile_ids, tile)[None, :, None]
        return tile + 1, count, kept_boxes, kept_labels, tf.where(this_tile, tile_kept[:, None, :], kept)

    def more(tile, count, kept_boxes, kept_labels, kept):
        return (tile < num_tiles) & tf.reduce_any(count < max_output_size)

    state = (tf.constant(0), tf.zeros([batch], tf.int32), tf.zeros([batch, slots, 4]),
             tf.zeros([batch, slots], tf.int32), tf.zeros([batch, num_tiles, tile_size], tf.bool))
    _, _, _, _, kept = tf.while_loop(more, tile_body, state)
    kept = tf.reshape(kept, [batch, padded])[:, :n]

    # The first D kept boxes in sorted order: top_k of a key that falls along the order.
    rank_key = tf.where(kept, n - tf.range(n)[None, :], -1)
    k = min(max_output_size, n) if isinstance(n, int) else tf.minimum(max_output_size, n)
    top_key, top_position = tf.math.top_k(rank_key, k=k)
    indices = tf.where(top_key > 0, tf.gather(order, top_position, batch_dims=1), -1)
    indices = tf.pad(indices, [[0, 0], [0, max_output_size - k]], constant_values=-1)
    indices = tf.reshape(indices, [-1, max_output_size])  # static D (not ensure_shape: no TFLite op)
    num_valid = tf.minimum(tf.reduce_sum(tf.cast(kept, tf.int32), axis=1), max_output_size)
    return indices, num_valid


def _padded_nms_tf_image(boxes, scores, iou_threshold, max_output_size, labels=None):
    """``padded_nms`` by ``tf.image.non_max_suppression``, one image (and one label) at a time.

    Class-wise, the candidates are grouped by label (one sort) and the kernel runs once per
    label present, on that label's boxes alone; the kept boxes of all labels are merged by
    descending score, ties to the lower index, as the tiled method orders them.  Not one call
    on boxes shifted apart per label: in float32 the shift rounds large coordinates and so
    the IoUs (see the module docstring), and the kernel's IoU would no longer be the tiled
    method's.  Per label, the kernel sees the boxes as given, so both methods compare the
    same IoUs and keep the same boxes.
    """
    # tf.image reads any two opposite corners as a box: collapse inverted boxes to zero size
    # so that, as in boxes.iou, they overlap nothing.  So must boxes with a non-finite
    # coordinate (their boxes.iou is NaN or 0; the kernel would let an infinite box suppress
    # others): they become zero boxes.  Non-candidates score -inf, which the kernel drops (it
    # keeps scores > score_threshold).
    finite = tf.reduce_all(tf.math.is_finite(boxes), axis=-1, keepdims=True)
    x1, y1, x2, y2 = tf.unstack(tf.where(finite, boxes, 0.0), axis=-1)
    yxyx = tf.stack([y1, x1, tf.maximum(y2, y1), tf.maximum(x2, x1)], axis=-1)

    def kernel(b, s):
        return tf.image.non_max_suppression(b, s, max_output_size, iou_threshold=iou_threshold,
                                            score_threshold=float("-inf"))

    def pad(keep):
        n = tf.shape(keep)[0]
        return tf.pad(keep, [[0, max_output_size - n]], constant_values=-1), n

    def one_image(args):
        b, s = args[:2]
        if labels is None:
            return pad(kernel(b, s))
        lab = args[2]
        n = tf.shape(s)[0]
        # The candidates grouped by label (one stable sort), so that each label's kernel call
        # sees only its own boxes, a slice: O(N log N) in all rather than O(N) per label.
        candidates = tf.cast(tf.where(s > float("-inf"))[:, 0], tf.int32)
        by_label = tf.gather(candidates, tf.argsort(tf.gather(lab, candidates), stable=True))
        _, _, counts = tf.unique_with_counts(tf.gather(lab, by_label))
        ends = tf.cumsum(counts)
        starts = ends - counts
        grouped_boxes, grouped_scores = tf.gather(b, by_label), tf.gather(s, by_label)

        def one_label(i, kept):
            start, end = starts[i], ends[i]
            keep = kernel(grouped_boxes[start:end], grouped_scores[start:end])
            return i + 1, kept.write(i, keep + start)

        groups = tf.size(counts)
        # One slot more than the groups, holding nothing: concat needs at least one element.
        found = tf.TensorArray(tf.int32, size=groups + 1, infer_shape=False,
                               element_shape=tf.TensorShape([None])).write(groups, tf.zeros([0], tf.int32))
        _, kept = tf.while_loop(lambda i, _: i < groups, one_label, (tf.constant(0), found))
        kept = tf.gather(by_label, kept.concat())
        kept = tf.scatter_nd(kept[:, None], tf.ones_like(kept), [n]) > 0
        # top_k puts equal scores in index order: descending score, ties to the lower index.
        num = tf.minimum(tf.reduce_sum(tf.cast(kept, tf.int32)), max_output_size)
        _, order = tf.math.top_k(tf.where(kept, s, float("-inf")), k=num)
        return pad(order)

    elems = (yxyx, scores) if labels is None else (yxyx, scores, labels)
    return tf.map_fn(one_image, elems, fn_output_signature=(
        tf.TensorSpec([max_output_size], tf.int32), tf.TensorSpec([], tf.int32)))


def nms(boxes, scores, iou_threshold, max_output_size, score_threshold=float("-inf")):
    """Indices ``(D',) int32`` of the boxes kept, ``D' <= max_output_size``, by descending score.

    Args:
      boxes: ``(N, 4)`` xyxy.  scores: ``(N,)``.
      iou_threshold: boxes overlapping a kept box by IoU ``> iou_threshold`` are dropped.
      score_threshold: boxes scoring ``<= score_threshold`` are dropped first.
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    indices, num = padded_nms(boxes[None], tf.convert_to_tensor(scores, tf.float32)[None],
                              iou_threshold, max_output_size, score_threshold)
    return indices[0, :num[0]]


def batched_nms(boxes, scores, labels, iou_threshold, max_output_size, score_threshold=float("-inf")):
    """Class-wise NMS: like :func:`nms`, but boxes of different ``labels (N,)`` never suppress
    each other (IoUs on the boxes as given, masked by label: exactly NMS run per label and
    merged).  Returns indices ``(D',) int32`` by descending score."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    indices, num = padded_nms(boxes[None], tf.convert_to_tensor(scores, tf.float32)[None],
                              iou_threshold, max_output_size, score_threshold,
                              labels=tf.convert_to_tensor(labels)[None])
    return indices[0, :num[0]]


def gather_padded(values, indices):
    """Gather ``values (B, N, ...)`` at ``indices (B, D)`` where ``-1`` marks padding (gives 0)."""
    safe = tf.maximum(indices, 0)
    out = tf.gather(values, safe, batch_dims=1)
    mask = tf.reshape(indices >= 0, tf.concat([tf.shape(indices), tf.ones([tf.rank(out) - 2], tf.int32)], 0))
    return tf.where(mask, out, tf.zeros_like(out))
