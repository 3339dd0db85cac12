"""Tiny synthetic detection data and tiny detector configurations shared by the model tests.

The images are coloured rectangles of two classes on dark blocky noise, 64 x 96 pixels, with
padded ground truth (label -1 marks padding).  Image 2 of the overfitting batch has no
object at all, so the losses must stay finite on an image without ground truth.
"""
import functools

import numpy as np

HEIGHT, WIDTH = 64, 96
RED, GREEN = (230, 40, 40), (40, 230, 40)
CLASS_COLOURS = {1: RED, 2: GREEN}

# (image index, box xyxy, class) of the overfitting batch; image 2 is empty.
OBJECTS = (
    (0, (8, 10, 36, 38), 1),
    (0, (52, 20, 88, 44), 2),
    (1, (30, 16, 62, 56), 2),
)


def make_batch(objects=OBJECTS, num_images=3, max_gt=2, seed=0, height=HEIGHT, width=WIDTH):
    """``images (B, H, W, 3)`` float32 0..255 and ``{"boxes": (B, G, 4), "labels": (B, G)}``."""
    rng = np.random.default_rng(seed)
    # Noise in 4 x 4 blocks: texture enough to learn from, and almost unchanged when an image
    # is upscaled and resized back (the detect tests compare the two).
    # Whole numbers, so that the uint8 images given to ``detect`` are the training pixels.
    noise = rng.integers(0, 80, (num_images, -(-height // 4), -(-width // 4), 3))
    images = np.repeat(np.repeat(noise, 4, axis=1), 4, axis=2)[:, :height, :width]
    images = np.ascontiguousarray(images, dtype=np.float32)
    boxes = np.zeros((num_images, max_gt, 4), np.float32)
    labels = -np.ones((num_images, max_gt), np.int32)
    slot = [0] * num_images
    for index, (x1, y1, x2, y2), cls in objects:
        images[index, y1:y2, x1:x2] = CLASS_COLOURS[cls]
        boxes[index, slot[index]] = (x1, y1, x2, y2)
        labels[index, slot[index]] = cls
        slot[index] += 1
    return images, {"boxes": boxes, "labels": labels}


# A detector small enough to train in seconds on 2 CPU cores.  Proposals in training cover
# every anchor (8 x 12 locations x 9 anchors = 864 < 1000), so that even at initialisation
# some sampled RoIs overlap a ground truth and the R-CNN box loss starts from a real value.
TINY = dict(
    backbone="small", anchor_scales=(16, 32, 64), anchor_ratios=(0.5, 1.0, 2.0),
    rpn_channels=64, rpn_batch_size=64, rpn_allowed_border=8.0,
    rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=1000,
    rpn_pre_nms_top_n_test=200, rpn_post_nms_top_n_test=32,
    roi_batch_size=32, roi_head_units=64, roi_head_dropout=0.0,
    detections_max=10, image_min_side=64, image_max_side=96,
)


def tiny_model(num_classes=2, **overrides):
    from frcnn_lib import FasterRCNN

    return FasterRCNN(num_classes, **{**TINY, **overrides})


def built_tiny_model(num_classes=2, **overrides):
    """:func:`tiny_model`, built (its weights exist), as the serving tests load it."""
    model = tiny_model(num_classes, **overrides)
    model.build()
    return model


def train_overfit(steps, seed=0, learning_rate=1e-3, evaluate_first=False, **overrides):
    """A tiny model trained with ``model.fit`` for ``steps`` Adam steps on :func:`make_batch`
    (one step per epoch, so each epoch's logs are that step's losses).

    Returns ``(model, images, targets, record)``; ``record`` holds ``"batches"`` and
    ``"epochs"``, the logs seen by a callback, and with ``evaluate_first`` ``"initial"``,
    ``model.evaluate`` before training.
    """
    import keras
    import tensorflow as tf

    class Recorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.batches, self.epochs = [], []

        def on_train_batch_end(self, batch, logs=None):
            self.batches.append({k: float(v) for k, v in (logs or {}).items()})

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append({k: float(v) for k, v in (logs or {}).items()})

    keras.utils.set_random_seed(seed)
    images, targets = make_batch()
    model = tiny_model(seed=seed, **overrides)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    record = {}
    if evaluate_first:
        record["initial"] = model.evaluate(images, targets, verbose=0, return_dict=True)
    dataset = tf.data.Dataset.from_tensor_slices((images, targets)).batch(len(images)).repeat()
    recorder = Recorder()
    history = model.fit(dataset, epochs=steps, steps_per_epoch=1, verbose=0, shuffle=False,
                        callbacks=[recorder])
    record.update(batches=recorder.batches, epochs=recorder.epochs, history=history.history)
    return model, images, targets, record


@functools.lru_cache(maxsize=None)
def shared_overfit(steps=150, seed=0):
    """:func:`train_overfit` once per process for the modules that need a trained model
    (test_model, test_detect), with ``record["final"]``: ``evaluate`` after training.

    Callers must leave the model's weights as they found them.
    """
    model, images, targets, record = train_overfit(steps, seed=seed, evaluate_first=True)
    record["final"] = model.evaluate(images, targets, verbose=0, return_dict=True)
    images.setflags(write=False)
    for value in targets.values():
        value.setflags(write=False)
    return model, images, targets, record


def match_ground_truth(detections, boxes, labels, min_score=0.5):
    """Per ground-truth box: the best IoU among detections of its class scoring >= min_score.

    ``detections``: dict of ``boxes (D, 4)``, ``scores (D,)``, ``labels (D,)`` (numpy, one
    image, padding allowed).  Returns a list of floats, one per valid ground truth.
    """
    best = []
    for box, label in zip(boxes, labels):
        if label < 0:
            continue
        ok = (detections["labels"] == label) & (detections["scores"] >= min_score)
        best.append(max((iou_xyxy(box, d) for d in detections["boxes"][ok]), default=0.0))
    return best


def iou_xyxy(a, b):
    """IoU of two xyxy boxes, in numpy (independent of frcnn_lib.boxes)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def check_padded_detections(out, batch, height, width, num_classes, max_detections):
    """Assert the documented structure of ``model.predict`` / ``model(images)`` outputs.

    Returns the per-image numbers of detections.
    """
    out = {k: np.asarray(v) for k, v in out.items()}
    assert sorted(out) == ["boxes", "labels", "num_detections", "scores"], sorted(out)
    d = max_detections
    assert out["boxes"].shape == (batch, d, 4) and out["boxes"].dtype == np.float32, out["boxes"].dtype
    assert out["scores"].shape == (batch, d) and out["scores"].dtype == np.float32, out["scores"].dtype
    assert out["labels"].shape == (batch, d) and out["labels"].dtype == np.int32, out["labels"].dtype
    assert out["num_detections"].shape == (batch,) and out["num_detections"].dtype == np.int32
    counts = out["num_detections"].tolist()
    for b, n in enumerate(counts):
        assert 0 <= n <= d, (b, n)
        boxes, scores, labels = out["boxes"][b], out["scores"][b], out["labels"][b]
        assert np.all(np.isfinite(boxes)) and np.all(np.isfinite(scores)), b
        # Padding rows: label -1, score 0.
        np.testing.assert_array_equal(labels[n:], -1, err_msg=f"image {b}: padding labels")
        np.testing.assert_array_equal(scores[n:], 0.0, err_msg=f"image {b}: padding scores")
        # Valid rows: object classes, scores in (0, 1] by descending score, boxes in the image.
        assert np.all((labels[:n] >= 1) & (labels[:n] <= num_classes)), (b, labels[:n])
        assert np.all((scores[:n] > 0) & (scores[:n] <= 1)), (b, scores[:n])
        assert np.all(np.diff(scores[:n]) <= 0), (b, scores[:n])
        x1, y1, x2, y2 = boxes[:n].T
        assert np.all((0 <= x1) & (x1 <= x2) & (x2 <= width)), (b, boxes[:n])
        assert np.all((0 <= y1) & (y1 <= y2) & (y2 <= height)), (b, boxes[:n])
    return counts


def after_one_step(num_classes=2):
    """A tiny detector after one training step on ``make_batch()``: ``(model, weights,
    optimizer_state)``, for a module-scoped fixture (the step is traced once per module)."""
    import keras

    keras.utils.set_random_seed(0)
    model = tiny_model(num_classes, detections_score_threshold=0.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    images, targets = make_batch()
    model.train_on_batch(images, targets)
    return model, model.get_weights(), [v.numpy() for v in model.optimizer.variables]


def reset_to(trained):
    """The model of :func:`after_one_step`, its weights and optimizer state put back."""
    model, weights, optimizer_state = trained
    model.set_weights(weights)
    for variable, value in zip(model.optimizer.variables, optimizer_state):
        variable.assign(value)
    return model
