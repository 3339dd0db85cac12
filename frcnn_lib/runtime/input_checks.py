"""Validating what users feed the model, and turning failures into one-line FrcnnErrors.

Shape glossary: ``B`` images, ``H, W`` image size, ``C`` channels, ``G`` padded
ground-truth boxes per image.

Two halves:

* :func:`check_inputs` runs inside the training/evaluation step (on the graph).  Static
  shapes are checked when the step is traced (FrcnnError at once); values and shapes left
  unknown by tracing are checked when it runs, with ``tf.debugging.Assert`` ops whose
  message starts with :data:`INPUT_CHECK`.  The checked tensors are returned made to depend
  on the checks, so no loss, gradient or weight update is computed from a rejected batch.
  Only static-shaped, XLA-compilable ops besides the asserts (no ``tf.where(mask)``
  with a data-dependent size, no host calls).
* :func:`checked_before_the_step` applies the same checks to the data on its way into
  ``fit`` / ``evaluate`` / ``*_on_batch`` when the step is compiled with XLA, which drops
  ``tf.debugging.Assert`` ops (it has no kernel for them): in the ``tf.data`` pipeline for a
  dataset (host side, never compiled), eagerly for in-memory arrays.
* :func:`call_translating_errors` runs ``fit`` / ``evaluate`` / ``predict`` /
  ``*_on_batch`` and translates two kinds of failure into a FrcnnError with one line:
  a failed graph check above, and a FrcnnError raised by the host-side image reader of
  ``make_dataset`` (a missing, truncated or corrupt file), which ``tf.data`` delivers wrapped
  in an ``InvalidArgumentError`` from ``PyFunc``.

Why the translation frees the input pipeline before it raises: Keras' ``EpochIterator``
and its ``_enumerate_iterator`` generator reference each other (the suspended generator's
frame holds ``self``), and that cycle holds the ``tf.data`` iterator.  When ``fit`` is left
by an exception the generator stays suspended, so only Python's cyclic garbage collector
frees the iterator.  If that first happens in the interpreter's final collection at exit,
the iterator's destructor waits for the parallel map's in-flight ``numpy_function`` calls,
whose threads can no longer take the GIL (Python ends threads that try during
finalisation): ``frcnn train`` printed its error and then hung forever.  So the FrcnnError
is raised outside the ``except`` block with no chain to the TensorFlow error (whose
traceback reaches Keras' ``fit`` frame and through it the iterator), after a
``gc.collect()`` that destroys the pipeline while its threads can still finish.
"""
import gc
import re

import numpy as np
import tensorflow as tf

from frcnn_lib.runtime.errors import FrcnnError

# Marks the messages of the graph-side checks, so that the translation finds them.
INPUT_CHECK = "frcnn input check: "
# How the host-side reader's FrcnnError appears inside tf.data's error message.
_HOST_ERROR = "FrcnnError: "
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Keyword options of fit / evaluate / predict that count images or steps.
_COUNT_OPTIONS = ("batch_size", "steps", "steps_per_epoch", "validation_steps",
                  "validation_batch_size", "validation_freq")


# ----------------------------------------------------------------------------- graph side
# Grayscale batches are refused rather than converted: the model's input is RGB everywhere
# (training, predict, export), and model.detect already converts raw images of any kind.
_CHANNELS = ("images must be (B, H, W, 3) with 3 (RGB) channels (grayscale? repeat it: "
             "np.repeat(images, 3, axis=-1); model.detect converts raw images itself)")


def reject_unit_range(maximum, is_float, what):
    """FrcnnError for float pixels in the ``[0, 1]`` convention (torchvision's, and that of
    ``tf.image.convert_image_dtype``): frcnn's models take pixel values 0..255, and a [0, 1]
    image silently gives no detections.

    The rule: a float image whose maximum is in ``(0, 1]``.  An all-black float image
    (maximum 0) passes, since it is black in both conventions; so do integer images of any
    range.  A 0..255 float image whose brightest pixel is at most 1 (nearly black) is the one
    case refused wrongly: pass it as uint8.

    Args:
      maximum: the largest pixel value (NaN passes).  is_float: whether the pixels are float.
      what: names the image in the message (``"image 3"``, ``"images"``).
    """
    if is_float and 0.0 < float(maximum) <= 1.0:
        raise FrcnnError(
            f"{what}: expected pixel values 0..255 (uint8, or float 0..255 as the training "
            f"pipeline gives), got float pixels with max {float(maximum):.4g} <= 1.0, the "
            f"[0, 1] convention (torchvision, tf.image.convert_image_dtype): multiply by 255 "
            f"(or pass uint8)")


def check_images(images):
    """Static check of ``images (B, H, W, 3)`` (at trace time): FrcnnError if it cannot be."""
    shape = tf.TensorShape(images.shape)
    if shape.rank is not None and shape.rank != 4:
        raise FrcnnError(f"images: expected shape (B, H, W, 3), got {shape}")
    if shape.rank == 4 and shape[-1] is not None and shape[-1] != 3:
        raise FrcnnError(f"{_CHANNELS}; got shape {tuple(shape)}")
    if shape.rank == 4 and shape[0] == 0:
        raise FrcnnError(f"images: the batch holds no images; got shape {tuple(shape)}")


def check_pixel_scale(images, what="images"):
    """Host-side check of concrete ``images`` (a numpy array or an eager tensor) against the
    ``[0, 1]`` float convention: FrcnnError if they are float with max in ``(0, 1]`` (see
    ``reject_unit_range``; an all-black batch passes).  Symbolic tensors, datasets
    and generators pass unchecked (one reduction over arrays already in memory, no more)."""

    if isinstance(images, np.ndarray):
        if images.size and np.issubdtype(images.dtype, np.number):
            reject_unit_range(np.max(images), np.issubdtype(images.dtype, np.floating), what)
    elif isinstance(images, tf.Tensor) and hasattr(images, "numpy"):  # eager, not symbolic
        if images.dtype.is_floating and images.shape.num_elements() != 0:
            reject_unit_range(float(tf.reduce_max(images)), True, what)


def _target(targets, key):
    if not isinstance(targets, dict):
        raise FrcnnError(f"targets: expected a dict with 'boxes' (B, G, 4) and 'labels' (B, G), "
                         f"got {type(targets).__name__}")
    if key not in targets:
        raise FrcnnError(f"targets: missing the key {key!r} (expected 'boxes' (B, G, 4) xyxy and "
                         f"'labels' (B, G); got keys {sorted(map(str, targets))})")
    return targets[key]


def check_inputs(images, targets, num_classes):
    """Reject training input that would give a NaN loss or a deep TensorFlow error.

    Args:
      images: ``(B, H, W, 3)`` float tensor.  targets: dict with ``boxes (B, G, 4)`` xyxy
        and ``labels (B, G)``; ``G`` may be 0 (no objects).  num_classes: ``K - 1``.

    Returns ``images, boxes (float32), labels (int32)`` made to depend on the checks.  Rules:

    * ``images (B, H, W, 3)`` with ``B >= 1``, finite; ``boxes (B, G, 4)``; ``labels (B, G)``;
    * ``labels`` is ``-1`` (padding) or in ``1..num_classes``;
    * ``boxes`` are finite, padding rows included;
    * real boxes (label >= 1) have ``x2 >= x1`` and ``y2 >= y1`` (a negative size means
      another box format).  Boxes of zero size, or partly or wholly outside the image,
      are accepted: they overlap no anchor, so they add nothing to the RPN loss.
    """
    gt_boxes = tf.cast(_target(targets, "boxes"), tf.float32)
    gt_labels = tf.cast(_target(targets, "labels"), tf.int32)
    check_images(images)
    if gt_boxes.shape.rank is not None and (gt_boxes.shape.rank != 3 or gt_boxes.shape[-1] not in (None, 4)):
        raise FrcnnError(f"targets['boxes']: expected shape (B, G, 4) xyxy, got {gt_boxes.shape}")
    if gt_labels.shape.rank is not None and gt_labels.shape.rank != 2:
        raise FrcnnError(f"targets['labels']: expected shape (B, G), got {gt_labels.shape}")
    if not gt_boxes.shape[:2].is_compatible_with(gt_labels.shape):
        raise FrcnnError(f"targets['boxes'] {gt_boxes.shape} and targets['labels'] "
                         f"{gt_labels.shape} disagree on (B, G)")

    # Shapes left unknown by tracing (Keras relaxes them on retracing): check at run time.
    image_shape, box_shape, label_shape = tf.shape(images), tf.shape(gt_boxes), tf.shape(gt_labels)
    checks = [
        tf.debugging.Assert(tf.equal(tf.size(image_shape), 4) & tf.equal(image_shape[-1], 3), [
            INPUT_CHECK + _CHANNELS + "; got shape", image_shape], summarize=8),
        tf.debugging.Assert(image_shape[0] > 0, [
            INPUT_CHECK + "images: the batch holds no images; got shape", image_shape], summarize=8),
        tf.debugging.Assert(
            tf.equal(box_shape[-1], 4) & tf.reduce_all(tf.equal(box_shape[:2], label_shape)), [
                INPUT_CHECK + "targets['boxes'] must be (B, G, 4) and targets['labels'] (B, G); "
                "got shapes", box_shape, label_shape], summarize=8),
    ]
    with tf.control_dependencies(checks):
        images, gt_boxes, gt_labels = tf.identity(images), tf.identity(gt_boxes), tf.identity(gt_labels)
    if gt_boxes.shape[-1] is None:
        # Static last dimension for what follows; a gather (not ensure_shape, which
        # graph optimisation may evaluate before the check) so that the check speaks first.
        gt_boxes = tf.gather(gt_boxes, [0, 1, 2, 3], axis=-1)

    k = num_classes
    finite = tf.reduce_all(tf.math.is_finite(gt_boxes), axis=-1)
    x1, y1, x2, y2 = tf.unstack(gt_boxes, 4, axis=-1)
    checks = [
        _check_each((gt_labels == -1) | ((gt_labels >= 1) & (gt_labels <= k)),
                    f"targets['labels'] must be -1 (padding) or in 1..num_classes={k}", gt_labels),
        _check_each(finite, "targets['boxes'] must be finite (no NaN or inf, padding rows included)",
                    gt_boxes),
        _check_each(~finite | (gt_labels < 1) | ((x2 >= x1) & (y2 >= y1)),
                    "targets['boxes'] must be xyxy with x2 >= x1 and y2 >= y1", gt_boxes),
        tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(images)),
                            [INPUT_CHECK + "images must be finite (no NaN or inf)"]),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(images), tf.identity(gt_boxes), tf.identity(gt_labels)


def _check_each(ok, what, values):
    """Assert ``ok (B, G)``; the message gives the first failing ``(image, box)`` and its
    ``values (B, G, ...)`` row.  Static-size ops only, and safe for ``B = 0`` or ``G = 0``:
    a sentinel True after the flattened failures makes ``argmax`` find index ``B*G`` when
    all is well, and a zero row after the values gives it something to gather."""
    num_boxes = tf.shape(ok)[1]
    bad = tf.concat([tf.reshape(~ok, [-1]), [True]], axis=0)                 # (B*G + 1,)
    first = tf.argmax(tf.cast(bad, tf.int32), output_type=tf.int32)
    where = tf.stack([first // tf.maximum(num_boxes, 1), first % tf.maximum(num_boxes, 1)])
    rows = tf.reshape(values, tf.concat([[-1], tf.shape(values)[2:]], axis=0))
    rows = tf.concat([rows, tf.zeros(tf.concat([[1], tf.shape(rows)[1:]], axis=0), rows.dtype)], axis=0)
    # tf.gather, not rows[first]: a strided slice needs its bounds at compile time under XLA,
    # which then compiled the step anew for every batch of different boxes or labels.
    return tf.debugging.Assert(tf.reduce_all(ok), [INPUT_CHECK + what, where, tf.gather(rows, first)],
                               summarize=8)


# ----------------------------------------------------------------------------- translation
def translate(err):
    """The one-line FrcnnError for ``err`` if it is a failed input check (graph or host
    reader), else None.  The result holds no reference to ``err``."""
    if isinstance(err, FrcnnError):
        # Raised while Keras traced the step (a static shape): keep only the message, without
        # the frame Keras wraps around errors raised in ``call`` ("Exception encountered when
        # calling FasterRCNN.call(). <bold>message</bold> Arguments received by ...").
        lines = [line.strip() for line in _ANSI.sub("", str(err)).splitlines()]
        lines = [line for line in lines if line and not line.startswith("Exception encountered")]
        ours = [line for line in lines if not line.startswith(("Arguments received", "•"))]
        return FrcnnError(ours[0] if ours else str(err))
    if not isinstance(err, tf.errors.OpError):
        return None
    text = err.message or ""
    if INPUT_CHECK in text:
        return FrcnnError(_graph_message(text))
    if _HOST_ERROR in text:
        return FrcnnError(text.split(_HOST_ERROR, 1)[1].splitlines()[0].strip())
    return None


def _graph_message(text):
    # Assert prints "[what] [image box] [value]", quotes escaped.
    line = text[text.find(INPUT_CHECK) + len(INPUT_CHECK):].splitlines()[0].replace("\\'", "'")
    parts = [part.strip(" []") for part in line.split("] [")]
    message = parts[0]
    if len(parts) == 3 and len(parts[1].split()) == 2:
        image, box = parts[1].split()
        message += f"; got {parts[2]} at image {image}, box {box} of the batch"
    elif len(parts) > 1:
        message += " " + " and ".join(f"({', '.join(p.split())})" for p in parts[1:])
    return message


def checked_before_the_step(args, kwargs, num_classes):
    """``(args, kwargs)`` of ``fit`` / ``evaluate`` / ``*_on_batch`` with the training data
    checked before it reaches a step compiled with XLA (see the module docstring).

    A ``tf.data.Dataset`` of ``(images, targets[, sample_weight])`` gets a ``map`` running
    :func:`check_inputs`; in-memory ``x`` and ``y`` are checked at once.  Anything else (a
    generator, a ``PyDataset``) is passed unchanged and is not value-checked under XLA.
    """
    args = list(args)
    x = args[0] if args else kwargs.get("x")
    y = args[1] if len(args) > 1 else kwargs.get("y")
    if isinstance(x, tf.data.Dataset):
        def check(images, targets, *rest):
            images, boxes, labels = check_inputs(images, targets, num_classes)
            return (images, {**targets, "boxes": boxes, "labels": labels}, *rest)
        x = x.map(check)
        if args:
            args[0] = x
        else:
            kwargs["x"] = x
    elif x is not None and isinstance(y, dict):
        check_inputs(tf.convert_to_tensor(x, tf.float32), y, num_classes)
    return tuple(args), kwargs


def call_translating_errors(function, *args, **kwargs):
    """``function(*args, **kwargs)``; a failed input check leaves as a one-line FrcnnError
    (no chained TensorFlow error), after the input pipeline it failed in was freed (see the
    module docstring).  Other errors pass unchanged.  Keras' counting options, when given,
    must be positive ints (FrcnnError naming the option, before any work)."""
    for name in _COUNT_OPTIONS:
        value = kwargs.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                  or value < 1):
            raise FrcnnError(f"{name}: expected a positive int (or None), got {value!r}")
    try:
        return function(*args, **kwargs)
    except (FrcnnError, tf.errors.OpError) as err:
        error = translate(err)
        if error is None:
            raise
    # Outside the except block: ``err`` and its traceback (Keras' frames, the iterator)
    # are gone, so the collection below can free the tf.data pipeline now.
    gc.collect()
    raise error from None
