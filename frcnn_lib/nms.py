"""Non-maximum suppression: greedy, by descending score, on ops that XLA compiles.

Shape glossary: ``B`` images, ``N`` boxes, ``T`` boxes per tile, ``D`` the fixed output size.

Greedy NMS keeps the highest-scoring box, drops every remaining box whose IoU with it is
``> iou_threshold`` (IoU as in :func:`frcnn_lib.boxes.iou`: inverted and empty boxes overlap
nothing), and repeats.  Ties in score go to the lower index.  Class-wise NMS
(:func:`batched_nms`) runs NMS separately per label, by shifting each label's boxes to a
region of their own so that boxes of different labels never overlap, then one NMS call.

Implementation (the tiled scheme of the TensorFlow Model Garden's padded NMS, written
afresh): sort by score, cut the sorted boxes into tiles of ``T``, and walk the tiles in
order.  A tile first loses the boxes that overlap a box already kept in an earlier tile;
then suppression inside the tile is solved as a fixed point: a box that no surviving
higher-scored box of the tile overlaps is certainly kept, and removes the boxes it
overlaps; repeat until nothing changes.  By induction on the sorted order the fixed point
is exactly the greedy result.  Every shape is static (``(B, N)`` in, ``(B, D)`` out), so the
same code runs eagerly, in a ``tf.function`` and under ``jit_compile=True`` (GPU, TPU).
Kept boxes are collected, in order, in ``D + T`` slots; each tile is compared with those
slots and with itself, so the cost is ``O(N * (D + T))`` IoUs and the loop stops as soon as
``D`` boxes are kept.
"""
import tensorflow as tf

from frcnn_lib import boxes as box_ops

TILE_SIZE = 256


def _label_offset_boxes(boxes, labels):
    """Shift each label's boxes to a region of their own, so different labels never overlap.

    The shift is ``label * 2 * span`` along both axes, with ``span`` the largest coordinate
    magnitude; boxes are first moved to start at 0, which keeps the shifted coordinates as
    small as possible (float32 keeps about 7 significant digits).
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    low = tf.reduce_min(boxes, axis=[-2, -1], keepdims=True)
    boxes = boxes - low
    span = tf.reduce_max(boxes, axis=[-2, -1], keepdims=True) + 1.0
    return boxes + tf.cast(labels, tf.float32)[..., None] * 2.0 * span


def _overlaps(boxes_a, boxes_b, iou_threshold):
    """``(B, T, 4), (B, M, 4) -> (B, T, M)`` bool: IoU ``> iou_threshold``."""
    return box_ops.iou(boxes_a, boxes_b) > iou_threshold


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
      labels: optional ``(B, N)`` int for class-wise NMS.
      valid: optional ``(B, N)`` bool; False boxes are never kept and suppress nothing.
      method: ``"tiled"`` (this module's, compiles with XLA) or ``"tf_image"``
        (``tf.image.non_max_suppression`` per image: no XLA kernel, faster on a CPU for a few
        thousand boxes).  The same indices either way.

    Returns:
      ``indices (B, D)`` int32 into ``N`` by descending score (``-1`` pads after the kept
      ones) and ``num_valid (B,)`` int32.
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    scores = tf.cast(scores, tf.float32)
    if labels is not None:
        boxes = _label_offset_boxes(boxes, labels)
    candidate = scores > score_threshold
    if valid is not None:
        candidate &= tf.cast(valid, tf.bool)
    if method == "tf_image":
        return _padded_nms_tf_image(boxes, tf.where(candidate, scores, float("-inf")),
                                    iou_threshold, max_output_size)
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

    num_tiles = (n + tile_size - 1) // tile_size
    padded = num_tiles * tile_size
    sorted_boxes = tf.pad(sorted_boxes, [[0, 0], [0, padded - n], [0, 0]])
    alive = tf.pad(alive, [[0, 0], [0, padded - n]])
    # Tiles by reshaping and gathering (no slices of dynamic size: XLA needs static ones).
    box_tiles = tf.reshape(sorted_boxes, [batch, num_tiles, tile_size, 4])
    alive_tiles = tf.reshape(alive, [batch, num_tiles, tile_size])
    upper = tf.linalg.band_part(tf.ones([tile_size, tile_size], tf.bool), 0, -1) \
        & ~tf.eye(tile_size, dtype=tf.bool)                                   # i < j

    # The boxes kept so far, compacted in order: at most D + T - 1 of them before the loop
    # stops, so a tile is compared with D + T boxes rather than with all N.
    slots = max_output_size + tile_size
    tile_ids = tf.range(num_tiles)  # made outside the loop: XLA needs its size as a constant

    def tile_body(tile, count, kept_boxes, kept):
        tile_boxes = tf.gather(box_tiles, tile, axis=1)                          # (B, T, 4)
        tile_alive = tf.gather(alive_tiles, tile, axis=1)                        # (B, T)
        # Unused slots hold zero boxes, which overlap nothing.
        earlier = _overlaps(tile_boxes, kept_boxes, iou_threshold)              # (B, T, slots)
        tile_alive &= ~tf.reduce_any(earlier, axis=2)
        overlap = _overlaps(tile_boxes, tile_boxes, iou_threshold) & upper[None]
        tile_kept = _suppress_within_tile(overlap, tile_alive)
        # Append this tile's kept boxes after the ``count`` already there (a one-hot product:
        # no scatter, no dynamic shape).
        position = count[:, None] + tf.cumsum(tf.cast(tile_kept, tf.int32), axis=1) - 1
        place = tf.one_hot(tf.where(tile_kept, position, -1), slots)            # (B, T, slots)
        kept_boxes += tf.einsum("bts,btc->bsc", place, tile_boxes)
        count += tf.reduce_sum(tf.cast(tile_kept, tf.int32), axis=1)
        this_tile = tf.equal(tile_ids, tile)[None, :, None]
        return tile + 1, count, kept_boxes, tf.where(this_tile, tile_kept[:, None, :], kept)

    def more(tile, count, kept_boxes, kept):
        return (tile < num_tiles) & tf.reduce_any(count < max_output_size)

    state = (tf.constant(0), tf.zeros([batch], tf.int32), tf.zeros([batch, slots, 4]),
             tf.zeros([batch, num_tiles, tile_size], tf.bool))
    _, _, _, kept = tf.while_loop(more, tile_body, state)
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


def _padded_nms_tf_image(boxes, scores, iou_threshold, max_output_size):
    """``padded_nms`` by ``tf.image.non_max_suppression``, one image at a time."""
    # tf.image reads any two opposite corners as a box: collapse inverted boxes to zero size
    # so that, as in boxes.iou, they overlap nothing.  Non-candidates score -inf, which the
    # kernel drops (it keeps scores > score_threshold).
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    yxyx = tf.stack([y1, x1, tf.maximum(y2, y1), tf.maximum(x2, x1)], axis=-1)

    def one_image(args):
        b, s = args
        keep = tf.image.non_max_suppression(b, s, max_output_size, iou_threshold=iou_threshold,
                                            score_threshold=float("-inf"))
        n = tf.shape(keep)[0]
        return tf.pad(keep, [[0, max_output_size - n]], constant_values=-1), n

    return tf.map_fn(one_image, (yxyx, scores), fn_output_signature=(
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
    each other.  Returns indices ``(D',) int32`` by descending score."""
    return nms(_label_offset_boxes(boxes, labels), scores, iou_threshold, max_output_size,
               score_threshold)


def gather_padded(values, indices):
    """Gather ``values (B, N, ...)`` at ``indices (B, D)`` where ``-1`` marks padding (gives 0)."""
    safe = tf.maximum(indices, 0)
    out = tf.gather(values, safe, batch_dims=1)
    mask = tf.reshape(indices >= 0, tf.concat([tf.shape(indices), tf.ones([tf.rank(out) - 2], tf.int32)], 0))
    return tf.where(mask, out, tf.zeros_like(out))
