"""``tf.data`` batches for training and evaluation: resize, flip, pad to a fixed canvas.

Shape glossary: ``B`` images, ``G`` ground-truth boxes per image (padded), ``h, w`` an
original image, ``h', w'`` after resizing, ``Hc, Wc`` the canvas a batch is padded to.

Every element is ``(images, targets)``:

- ``images (B, Hc, Wc, 3)`` float32 in 0..255 (the model normalises); content at the top
  left, zeros bottom and right (the model paints them its backbone's neutral colour, using
  ``image_sizes``).
- ``targets["boxes"] (B, G, 4)`` float32 xyxy in RESIZED pixels (padding rows are 0),
  ``targets["labels"] (B, G)`` int32 in ``1..K``, ``-1`` for padding,
  ``targets["image_sizes"] (B, 2)`` int32 ``(h', w')``, ``targets["scales"] (B,)``
  float32 ``h' / h`` (original box = resized box / scale), ``targets["indices"] (B,)``
  int32 position of the record in the DetectionData (to fetch its ground truth).

Resizing keeps the aspect ratio: the shorter side becomes ``min_side`` unless the longer
would then exceed ``max_side`` (then the longer side becomes ``max_side``).  Both sides are
rounded to whole pixels, so the true x and y factors can differ from ``scale`` by less than
half a pixel over the image; boxes use ``scale`` so that dividing by it is exact.

Canvases follow the images (:func:`canvas_for`): a resized image goes on the canvas whose
sides are its own rounded up to a multiple of 32, and a batch holds images of one canvas
only (``group_by_window``), so a batch pays for its real pixels plus at most 31 rows and
columns -- on Pascal VOC's 500 x 375 images (800 x 600 resized, canvas 800 x 608) 1.3 %
of the pixels.  The number of canvases is bounded (one side of a resized image is
``min_side`` or ``max_side``), so the model traces a bounded number of shapes.  When
``min_side == max_side`` there is one fixed canvas and the element spec is fully static
(except ``B``); otherwise the spec leaves ``Hc, Wc`` unknown.

Training augmentation (off unless asked; graph ops inside ``tf.data``, seeded per image by
the stream's random bits, so the same seed gives the same batches and a resumed stream the
same augmentations):

- ``scale_jitter=(low, high)``: the image is resized by ``scale * f``, ``f`` uniform in
  ``[low, high]``, boxes with it; the canvas stays the one of the unjittered size, so the
  shapes the model sees do not change.  An image larger than its canvas is cropped to it at a
  random offset; boxes are shifted and clipped, and a box with less than one pixel left in
  either direction is dropped (label ``-1``).  ``image_sizes`` is the content kept and
  ``scales`` the jittered scale (after a crop, original box = (box + offset) / scale).
- ``photometric=s``: brightness, contrast, saturation and hue jitter of strength ``s`` on the
  content (padding stays 0), clipped to 0..255; boxes unchanged.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import tensorflow as tf

from frcnn_lib.boxes import clip
from frcnn_lib.datasets.imageio import user_image
from frcnn_lib.runtime.input_checks import reject_unit_range
from frcnn_lib.datasets.records import is_int
from frcnn_lib.runtime.errors import FrcnnError

CANVAS_MULTIPLE = 32


def canvas_size(min_side, max_side, portrait=False) -> tuple[int, int]:
    """``(Hc, Wc)``: the largest canvas of one orientation, sides rounded up to 32 (the
    canvas of every image when ``min_side == max_side``)."""
    short = int(math.ceil(min_side / CANVAS_MULTIPLE) * CANVAS_MULTIPLE)
    long = int(math.ceil(max_side / CANVAS_MULTIPLE) * CANVAS_MULTIPLE)
    return (long, short) if portrait else (short, long)


def canvas_for(height, width, min_side, max_side):
    """``(Hc, Wc)``: the canvas of an image resized to ``(height, width)`` (python ints or
    scalar tensors).

    With ``min_side == max_side``: the one fixed canvas :func:`canvas_size` (a static shape).
    Otherwise each side rounded up to a multiple of 32, so a batch pays only for its own
    pixels: one side of a resized image is ``min_side`` or ``max_side``, so there are at
    most ``4 * ceil(max_side / 32)`` canvases (Keras and XLA trace each once).
    """
    if min_side == max_side:
        return canvas_size(min_side, max_side)
    m = CANVAS_MULTIPLE
    if isinstance(height, (int, np.integer)) and isinstance(width, (int, np.integer)):
        return int(-(-height // m) * m), int(-(-width // m) * m)
    return (height + m - 1) // m * m, (width + m - 1) // m * m


def resize_image(image, min_side, max_side):
    """Resize ``image (h, w, C)`` keeping its aspect ratio (graph-safe).

    Returns:
      ``(resized (h', w', C) float32 in 0..255, scale () float32)`` with
      ``scale = min(min_side / min(h, w), max_side / max(h, w))`` and
      ``h', w' = round(h * scale), round(w * scale)``.  An image already at its target
      size is only cast, not resampled.
    """
    image = tf.convert_to_tensor(image)
    scale = resize_scale(tf.shape(image), min_side, max_side)
    return resample(image, scale), scale


def resize_scale(shape, min_side, max_side):
    """``()`` float32: ``min(min_side / min(h, w), max_side / max(h, w))`` for ``shape = (h, w, ...)``."""
    h = tf.cast(shape[0], tf.float32)
    w = tf.cast(shape[1], tf.float32)
    return tf.minimum(min_side / tf.minimum(h, w), max_side / tf.maximum(h, w))


def resized_size(shape, scale):
    """``(round(h * scale), round(w * scale))`` int32 scalars for ``shape = (h, w, ...)``,
    each at least 1."""
    new_h = tf.maximum(tf.cast(tf.round(tf.cast(shape[0], tf.float32) * scale), tf.int32), 1)
    new_w = tf.maximum(tf.cast(tf.round(tf.cast(shape[1], tf.float32) * scale), tf.int32), 1)
    return new_h, new_w


def resample(image, scale):
    """``image (h, w, C)`` resized by ``scale`` to :func:`resized_size`, float32 clipped to
    0..255; only cast if the size is unchanged."""
    shape = tf.shape(image)
    new_h, new_w = resized_size(shape, scale)
    image = tf.cast(image, tf.float32)
    unchanged = tf.logical_and(tf.equal(new_h, shape[0]), tf.equal(new_w, shape[1]))
    size = tf.stack([new_h, new_w])
    # Antialiasing matters only when shrinking; when enlarging (most VOC and COCO images) it
    # gives the plain bilinear result (within 5e-5 of 255) at 3.5x the cost
    # (benchmarks/bench_pipeline.py), so it is skipped there.
    resized = tf.cond(
        unchanged, lambda: image,
        lambda: tf.cond(scale < 1.0,
                        lambda: tf.image.resize(image, size, "bilinear", antialias=True),
                        lambda: tf.image.resize(image, size, "bilinear")))
    return tf.clip_by_value(resized, 0.0, 255.0)


# Salts of an image's independent stateless draws (its seed is ``(stream bits, salt)``).
_JITTER_SALT, _CROP_SALT, _PHOTOMETRIC_SALT = 1, 2, 3


def check_augmentation(scale_jitter=None, photometric=0.0):
    """``(scale_jitter, photometric)`` checked and normalised: ``None`` or a ``(low, high)``
    float pair with ``0 < low <= high``, and a strength ``0 <= s <= 1`` (0 = off).  Raises
    FrcnnError naming the field."""
    if scale_jitter is not None:
        try:
            if isinstance(scale_jitter, (str, bytes)):
                raise TypeError
            low, high = (float(v) for v in scale_jitter)
        except (TypeError, ValueError):
            raise FrcnnError(f"scale_jitter: expected None or a pair (low, high) of factors, "
                             f"got {scale_jitter!r}") from None
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
            raise FrcnnError(f"scale_jitter: expected 0 < low <= high, got ({low}, {high})")
        scale_jitter = (low, high)
    numbers = (int, float, np.integer, np.floating)
    if isinstance(photometric, bool) or not isinstance(photometric, numbers) \
            or not 0 <= photometric <= 1:
        raise FrcnnError(f"photometric: expected a strength in [0, 1] (0 = off), got {photometric!r}")
    return scale_jitter, float(photometric)


def jitter_scale(image, boxes, labels, scale, canvas, scale_jitter, seed):
    """Scale jitter of one training image: resize by ``scale * f``, crop to the canvas.

    Like ``torchvision.transforms.v2.ScaleJitter`` followed by ``RandomCrop`` to a fixed
    size (the large-scale-jitter recipe of Ghiasi et al. 2021), with the canvas of the
    unjittered image as the fixed size.

    Args:
      image: ``(h, w, 3)`` uint8 or float 0..255, the original image.
      boxes: ``(G, 4)`` xyxy in original pixels.  labels: ``(G,)``, ``-1`` for padding.
      scale: ``()`` the pipeline's resize scale (:func:`resize_scale`).
      canvas: ``(Hc, Wc)`` the canvas of the unjittered resized image.
      scale_jitter: ``(low, high)``: ``f`` is uniform in ``[low, high]``.
      seed: ``(2,)`` int stateless seed of this image.

    Returns:
      ``(image (h'', w'', 3) float32 0..255 with h'' <= Hc and w'' <= Wc, boxes (G, 4) xyxy
      in its pixels, labels (G,), scale * f)``.  An image larger than the canvas is cropped at
      a uniformly random offset; boxes are shifted and clipped, and one with less than one
      pixel left in width or height gets label ``-1`` (box zeroed by the caller).
    """
    low, high = scale_jitter
    seed = tf.cast(seed, tf.int64)
    factor = tf.random.stateless_uniform([], tf.stack([seed[0], seed[1] + _JITTER_SALT]), low, high)
    scale = scale * factor
    image = resample(image, scale)
    size = tf.shape(image)[:2]
    kept = tf.minimum(size, tf.cast(tf.stack(canvas), tf.int32))
    excess = size - kept                                                   # (2,) >= 0
    u = tf.random.stateless_uniform([2], tf.stack([seed[0], seed[1] + _CROP_SALT]))
    offset = tf.minimum(tf.cast(tf.floor(u * tf.cast(excess + 1, tf.float32)), tf.int32), excess)
    image = tf.slice(image, tf.concat([offset, [0]], 0), tf.concat([kept, [-1]], 0))
    shift = tf.cast(tf.stack([offset[1], offset[0], offset[1], offset[0]]), tf.float32)
    boxes = clip(boxes * scale - shift, kept[0], kept[1])
    visible = (boxes[:, 2] - boxes[:, 0] >= 1.0) & (boxes[:, 3] - boxes[:, 1] >= 1.0)
    labels = tf.where(visible, labels, -1)
    return image, boxes, labels, scale


def photometric_jitter(image, strength, seed):
    """Brightness, contrast, saturation and hue jitter of ``image (h, w, 3)`` float 0..255.

    With ``s = strength``: brightness factor in ``1 +- s/4``, contrast and saturation factors
    in ``1 +- s``, hue shift in ``+- s/10`` of the colour circle, each uniform, applied in that
    order as torchvision's ``adjust_*`` functions do (a blend with black, with the mean grey
    level, with the grey image; then a hue rotation) and clipped after each step.  At
    ``s = 0.5`` the ranges are those of torchvision's ``RandomPhotometricDistort`` (SSD's
    contrast and saturation 0.5..1.5, hue +-0.05, brightness 0.875..1.125), which applies
    each with probability 0.5 in a random order; here all four always apply.

    Returns ``(h, w, 3)`` float32 in 0..255.  ``seed``: ``(2,)`` int stateless seed.
    """
    s = float(strength)
    seed = tf.cast(seed, tf.int64)
    u = tf.random.stateless_uniform([4], tf.stack([seed[0], seed[1] + _PHOTOMETRIC_SALT]), -1.0, 1.0)
    x = tf.cast(image, tf.float32) / 255.0

    def blend(x, factor, reference):
        return tf.clip_by_value((x - reference) * factor + reference, 0.0, 1.0)

    x = blend(x, 1.0 + s / 4.0 * u[0], 0.0)
    x = blend(x, 1.0 + s * u[1], tf.reduce_mean(tf.image.rgb_to_grayscale(x)))
    x = blend(x, 1.0 + s * u[2], tf.image.rgb_to_grayscale(x))
    x = tf.image.adjust_hue(x, s / 10.0 * u[3])
    return tf.clip_by_value(x * 255.0, 0.0, 255.0)


def resize_for_inference(image, min_side=600, max_side=1000):
    """Prepare one user image for the model, as the pipeline does for evaluation.

    Args:
      image: ``uint8`` array ``(h, w)``, ``(h, w, 1)``, ``(h, w, 3)`` or ``(h, w, 4)``
        (grayscale is repeated to RGB, alpha is dropped).

    Returns:
      ``(resized (h', w', 3) float32 tf.Tensor in 0..255, scale float)``.  Pad it with
      :func:`pad_to_canvas` onto :func:`canvas_size` to keep the model's input shape fixed;
      divide predicted boxes by ``scale`` to get original pixels.
    """
    image = to_rgb_array(image)
    resized, scale = resize_image(image, min_side, max_side)
    return resized, float(scale)


def to_rgb_array(image) -> np.ndarray:
    """A user image (uint8 gray, gray+1, RGB or RGBA) -> ``uint8 (h, w, 3)``.

    The strict form of :func:`as_rgb_uint8` for :func:`resize_for_inference`: uint8 only,
    no gray+alpha.
    """
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise FrcnnError(f"image: expected a uint8 array, got dtype {array.dtype}")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4)) \
            or min(array.shape[:2], default=0) < 1:
        raise FrcnnError(f"image: expected shape (h, w), (h, w, 1), (h, w, 3) or (h, w, 4), "
                         f"got {array.shape}")
    return as_rgb_uint8(array)


def as_rgb_uint8(image, index=0):
    """``(H, W)`` gray, ``(H, W, 1)`` gray, ``(H, W, 2)`` gray + alpha, ``(H, W, 3)`` RGB or
    ``(H, W, 4)`` RGBA array (uint8, uint16 or float 0..255) -> ``(H, W, 3)`` uint8.  Alpha
    is dropped.  A ``PIL.Image`` of any mode, or a file path, is converted as image files
    are (see ``imageio.user_image``); None and other non-images raise FrcnnError naming
    ``index``.  Float pixels in [0, 1] (max in ``(0, 1]``) raise FrcnnError
    (``input_checks.reject_unit_range``)."""
    array = user_image(image, index)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4) or array.shape[0] < 1 or array.shape[1] < 1:
        raise FrcnnError(f"image {index}: expected an (H, W) or (H, W, C) array with C in 1..4 "
                         f"and H, W >= 1, got shape {array.shape}")
    if array.dtype == np.uint16:
        array = (array.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
            raise FrcnnError(f"image {index}: expected uint8 pixels, got {array.dtype} with "
                             f"non-finite or non-numeric values")
        reject_unit_range(array.max(), np.issubdtype(array.dtype, np.floating), f"image {index}")
        array = np.rint(np.clip(array, 0, 255)).astype(np.uint8)
    if array.shape[-1] == 2:
        array = array[..., :1]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array[..., :3]


def pad_to_canvas(image, canvas):
    """Zero-pad ``image (h', w', C)`` at the bottom and right to ``canvas = (Hc, Wc)``."""
    return tf.image.pad_to_bounding_box(image, 0, 0, canvas[0], canvas[1])


def make_dataset(data, batch_size=2, training=False, min_side=None, max_side=None,
                 max_boxes=None, flip=True, shuffle=True, seed=0, repeat=False,
                 drop_remainder=False, use_difficult=False, skip_batches=0,
                 num_parallel_calls=None, scale_jitter=None, photometric=0.0) -> tf.data.Dataset:
    """Batches of ``(images, targets)`` from a DetectionData (see the module docstring).

    Args:
      data: a DetectionData (``frcnn_lib.datasets.load(...)``).
      batch_size: images per batch ``B``.
      training: if True, shuffle and randomly flip (as allowed by ``shuffle``, ``flip``).
      min_side, max_side: resize targets; ``None`` takes ``data.default_sides``
        (``(600, 1000)`` for VOC and COCO, the native size for ``shapes``).
      max_boxes: ``G``; default the most boxes in any image of ``data`` (at least 1).
        Images with more keep their first ``G`` boxes (with a warning).
      flip: random horizontal flip when training (``x1' = w' - x2``, ``x2' = w' - x1``).
      shuffle: reshuffle every epoch when training.
      seed: seeds shuffling, flipping and augmentation (the same seed gives the same batches).
      repeat: repeat forever.
      drop_remainder: drop a last incomplete batch per orientation (makes ``B`` static).
      use_difficult: keep VOC ``difficult`` boxes as training targets (default: left out,
        as in the paper's code; evaluation still sees them).
      skip_batches: start after this many batches of the same stream, without reading their
        images (resuming mid-epoch; needs ``repeat``; see ``datasets/resume.py``).
      num_parallel_calls: images decoded and resized at once; default ``tf.data.AUTOTUNE``
        (tuned at run time; benchmarks/bench_pipeline.py compares fixed values).
      scale_jitter: when training, ``None`` (off) or ``(low, high)``: each image resized by
        a factor in ``[low, high]`` times its scale, cropped to its canvas
        (:func:`jitter_scale`).
      photometric: when training, the strength of :func:`photometric_jitter` (0 = off).

    Returns:
      A ``tf.data.Dataset``, prefetched.
    """
    if len(data) == 0:
        raise FrcnnError(f"dataset {data.name or ''}: has no images")
    if not is_int(batch_size, 1):
        raise FrcnnError(f"batch_size: expected a positive int, got {batch_size!r}")
    default_min, default_max = data.default_sides
    min_side = default_min if min_side is None else min_side
    max_side = default_max if max_side is None else max_side
    numbers = (int, float, np.integer, np.floating)
    if not (isinstance(min_side, numbers) and isinstance(max_side, numbers)
            and 0 < min_side <= max_side):
        raise FrcnnError(f"min_side, max_side: expected 0 < min_side <= max_side, "
                         f"got {min_side}, {max_side}")
    num_boxes = max_boxes if max_boxes is not None else data.max_boxes(use_difficult)
    if not is_int(num_boxes, 1):
        raise FrcnnError(f"max_boxes: expected a positive int, got {max_boxes!r}")
    num_boxes = int(num_boxes)
    too_many = [i for i, r in enumerate(data.records)
                if (len(r.boxes) if use_difficult else int(np.sum(~r.difficult))) > num_boxes]
    if too_many:
        warnings.warn(f"{len(too_many)} images have more than max_boxes={num_boxes} boxes "
                      f"(first: index {too_many[0]}); only the first {num_boxes} are kept",
                      stacklevel=2)

    scale_jitter, photometric = check_augmentation(scale_jitter, photometric)
    single_canvas = min_side == max_side
    do_flip = bool(training and flip)
    jitter = scale_jitter if training else None
    strength = photometric if training else 0.0

    def load(index):  # host side: decode the image, pad the boxes to G
        i = int(index)
        record = data.records[i]
        image = data.read_image(i)
        keep = np.ones(len(record.boxes), bool) if use_difficult else ~record.difficult
        boxes = np.zeros((num_boxes, 4), np.float32)
        labels = np.full((num_boxes,), -1, np.int32)
        kept_boxes = record.boxes[keep][:num_boxes]
        boxes[:len(kept_boxes)] = kept_boxes
        labels[:len(kept_boxes)] = record.labels[keep][:num_boxes]
        return image, boxes, labels

    def load_tf(index, flip_bits):
        image, boxes, labels = tf.numpy_function(
            load, [index], [tf.uint8, tf.float32, tf.int32], stateful=False)
        image = tf.ensure_shape(image, [None, None, 3])
        boxes = tf.ensure_shape(boxes, [num_boxes, 4])
        labels = tf.ensure_shape(labels, [num_boxes])
        return index, image, boxes, labels, flip_bits

    def prepare(index, image, boxes, labels, flip_bits):
        seed = tf.stack([flip_bits, tf.zeros_like(flip_bits)])  # this image's draws
        if jitter is None:
            image, scale = resize_image(image, min_side, max_side)
            canvas = None
        else:
            scale = resize_scale(tf.shape(image), min_side, max_side)
            canvas = canvas_for(*resized_size(tf.shape(image), scale), min_side, max_side)
            image, boxes, labels, scale = jitter_scale(image, boxes, labels, scale, canvas, jitter, seed)
        size = tf.shape(image)[:2]
        height, width = size[0], size[1]
        if jitter is None:
            boxes = clip(boxes * scale, height, width)
            canvas = canvas_for(height, width, min_side, max_side)
        if strength:
            image = photometric_jitter(image, strength, seed)
        if do_flip:
            flip_now = tf.equal(flip_bits % 2, 1)
            image = tf.cond(flip_now, lambda: tf.reverse(image, axis=[1]), lambda: image)
            flipped = flip_boxes(boxes, width)
            boxes = tf.where(flip_now, flipped, boxes)
        boxes = tf.where((labels >= 0)[:, None], boxes, 0.0)
        image = pad_to_canvas(image, canvas)
        if single_canvas:
            image = tf.ensure_shape(image, [*canvas, 3])
        targets = {"boxes": boxes, "labels": labels, "image_sizes": tf.cast(size, tf.int32),
                   "scales": scale, "indices": tf.cast(index, tf.int32)}
        return image, targets

    ds = index_stream(len(data), training and shuffle, repeat, seed)
    if skip_batches:
        from frcnn_lib.datasets.resume import skip_consumed
        ds = skip_consumed(ds, lambda: index_stream(len(data), training and shuffle, repeat, seed),
                           data, batch_size, min_side, max_side, single_canvas, skip_batches, repeat)
    parallel = tf.data.AUTOTUNE if num_parallel_calls is None else int(num_parallel_calls)
    ds = ds.map(load_tf, num_parallel_calls=parallel)
    ds = ds.map(prepare, num_parallel_calls=parallel)
    if single_canvas:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    else:
        # A batch holds images of one canvas (torchvision's GroupedBatchSampler groups by
        # aspect ratio; grouping by canvas also makes the batch's padding minimal).
        def canvas_key(image, targets):
            shape = tf.cast(tf.shape(image), tf.int64)
            return shape[0] * 100_000 + shape[1]

        ds = ds.group_by_window(
            key_func=canvas_key,
            reduce_func=lambda key, window: window.batch(batch_size, drop_remainder=drop_remainder),
            window_size=batch_size)
    return ds.prefetch(tf.data.AUTOTUNE)


def index_stream(n, shuffle, repeat, seed):
    """The ``(record index, flip bits)`` int64 stream that :func:`make_dataset` reads images for."""
    indices = tf.data.Dataset.range(n)
    if shuffle:
        indices = indices.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        indices = indices.repeat()
    bits = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return tf.data.Dataset.zip(indices, bits)


def flip_boxes(boxes, width):
    """Mirror xyxy ``boxes (..., 4)`` in an image of ``width``: ``x1' = w - x2, x2' = w - x1``."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    width = tf.cast(width, tf.float32)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    return tf.stack([width - x2, y1, width - x1, y2], axis=-1)
