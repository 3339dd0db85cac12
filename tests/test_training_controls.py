"""Training controls (issue 28, goal 2): keep the best model by val_mAP, early stopping,
scale jitter and photometric augmentation.

The fit tests train a tiny detector (64 px, 8 shapes images in batches of 4 = 2 steps an
epoch) with ``runs.MeanAveragePrecision`` replaced by a callback that logs a scripted
val_mAP per epoch, so that the epochs of improvement are known in advance; one test keeps
the real callback and a learning rate of 0, so that the real val_mAP cannot improve.
"""
import csv
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from frcnn_lib import FasterRCNN
from frcnn_lib.datasets import shapes
from frcnn_lib.datasets.pipeline import check_augmentation, jitter_scale, make_dataset, photometric_jitter
from frcnn_lib.datasets.records import DetectionData, ImageRecord
from frcnn_lib.runtime.errors import FrcnnError
from frcnn_lib.training import checkpoints, runs
from frcnn_lib.training.controls import (EarlyStopOnMetric, KeepBest, TrainingControls, metric_history,
                                         read_best)
from helpers.reliability import TINY


# ------------------------------------------------------------------ early stopping, scripted
class FakeModel:
    stop_training = False


def drive(callback, values, first_epoch=0):
    """Feed ``values`` as the val_mAP of epochs ``first_epoch, ...``; the 1-based epoch after
    which the callback stopped training, or None."""
    model = FakeModel()
    callback.set_model(model)
    for epoch, value in enumerate(values, first_epoch):
        callback.on_epoch_end(epoch, {} if value is None else {"val_mAP": value})
        if model.stop_training:
            return epoch + 1
    return None


def test_early_stopping_on_a_scripted_sequence():
    values = [0.1, 0.3, 0.2, 0.3, 0.5]          # best 0.3 after epoch 2; 0.3 again is no gain
    assert drive(EarlyStopOnMetric(2), values) == 4
    assert drive(EarlyStopOnMetric(3), values) is None
    assert drive(EarlyStopOnMetric(1), values) == 3
    callback = EarlyStopOnMetric(2)
    drive(callback, values)
    assert (callback.stopped_epoch, callback.best, callback.best_epoch) == (4, 0.3, 2)
    assert "no val_mAP gain in the last 2 validations" in callback.reason
    assert "best 0.3000 after epoch 2" in callback.reason and "after epoch 4" in callback.reason
    # Epochs without a val_mAP are not validations; NaN is one, without a gain.
    assert drive(EarlyStopOnMetric(2), [0.1, None, 0.05, None, 0.2, 0.1, None, 0.1]) == 8
    assert drive(EarlyStopOnMetric(2), [0.1, float("nan"), float("nan")]) == 3


def test_early_stopping_counts_on_from_the_replayed_history():
    history = [(1, 0.1), (2, 0.3), (3, 0.2)]      # one validation without a gain already
    assert drive(EarlyStopOnMetric(2, history=history), [0.25], first_epoch=3) == 4
    assert drive(EarlyStopOnMetric(2), [0.25, 0.2, 0.1], first_epoch=3) == 6   # fresh: later
    assert drive(EarlyStopOnMetric(2, history=history), [0.35, 0.3], first_epoch=3) is None


def test_metric_history_reads_csvlogger_rows(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_mAP\n0,1.0,0.1\n1,0.9,NA\n2,0.8,nan\n3,0.7,0.4\n")
    got = metric_history(str(path), "val_mAP", epochs=3)
    assert [e for e, _ in got] == [1, 3] and got[0][1] == 0.1 and np.isnan(got[1][1])
    assert metric_history(str(path), "val_mAP")[-1] == (4, 0.4)
    assert metric_history(str(tmp_path / "none.csv")) == []
    path.write_text("epoch,val_mAP\n0,high\n")
    with pytest.raises(FrcnnError, match="history.csv: epoch 0: val_mAP 'high'"):
        metric_history(str(path))


@pytest.mark.parametrize("train, field", [
    ({"keep_best": "yes"}, "keep_best"),
    ({"early_stopping_patience": 0}, "early_stopping_patience"),
    ({"early_stopping_patience": 2.5}, "early_stopping_patience"),
    ({"scale_jitter": (1.2, 0.8)}, "scale_jitter"),
    ({"scale_jitter": "0.8,1.2"}, "scale_jitter"),
    ({"scale_jitter": (0.0, 1.0)}, "scale_jitter"),
    ({"photometric": 1.5}, "photometric"),
    ({"photometric": True}, "photometric"),
])
def test_bad_controls_raise_frcnn_error_naming_the_field(train, field):
    with pytest.raises(FrcnnError, match=field):
        TrainingControls.from_train(train)


def test_controls_defaults_and_validation_data():
    controls = TrainingControls.from_train({"learning_rate": 1e-3})
    assert controls.settings() == {"keep_best": None, "early_stopping_patience": None,
                                   "scale_jitter": None, "photometric": 0.0}
    assert controls.keeps_best(True) and not controls.keeps_best(False)
    assert not TrainingControls(keep_best=False).keeps_best(True)
    for train in ({"keep_best": True}, {"early_stopping_patience": 3}):
        with pytest.raises(FrcnnError, match="needs validation data"):
            runs.fit(None, None, "unused", 1, 1, train)   # before anything is touched


def test_a_fresh_run_removes_an_earlier_runs_best(tmp_path):
    (tmp_path / "best.keras").write_bytes(b"old")
    (tmp_path / "best.json").write_text("{}")
    KeepBest(str(tmp_path), resume=False)
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------- real tiny runs
EPOCH_STEPS = 2


@pytest.fixture(scope="module")
def data():
    return shapes.load("train", num_images=4 * EPOCH_STEPS)


def tiny_model(data):
    keras.utils.set_random_seed(0)
    return FasterRCNN(data.num_classes, backbone="small", image_min_side=64, image_max_side=64,
                      anchor_scales=(16, 32), **TINY)


def scripted_map(values):
    """A stand-in for ``runs.MeanAveragePrecision`` logging ``values[epoch]``."""
    class Scripted(keras.callbacks.Callback):
        def __init__(self, data, class_names=None, name="val_mAP"):
            super().__init__()
            self.name = name

        def on_epoch_end(self, epoch, logs=None):
            logs[self.name] = values[epoch]
    return Scripted


class Watch(keras.callbacks.Callback):
    """Per epoch (1-based): the weights, and the inode and content of best.json."""

    def __init__(self, out):
        super().__init__()
        self.out = out
        self.weights, self.best_files = {}, {}

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch + 1] = [w.copy() for w in self.model.get_weights()]
        path = os.path.join(self.out, "best.keras")
        self.best_files[epoch + 1] = (os.stat(path).st_ino, read_best(self.out)) \
            if os.path.exists(path) else None


def same_weights(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def fit(model, data, out, epochs, values, monkeypatch, resume_state=None, **controls):
    monkeypatch.setattr(runs, "MeanAveragePrecision", scripted_map(values))
    watch = Watch(str(out))
    history = runs.fit(model, data, str(out), epochs, 4,
                       {"learning_rate": 1e-3, "epochs": epochs, **controls}, val_data=data,
                       resume_state=resume_state, verbose=0, extra_callbacks=(watch,))
    return history, watch


def test_best_is_written_on_improvement_only_and_holds_the_best_epochs_weights(
        data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    values = [0.1, 0.3, 0.2, 0.3, 0.9, 0.9]      # patience 2: stops after epoch 4
    history, watch = fit(tiny_model(data), data, out, 6, values, monkeypatch,
                         early_stopping_patience=2)
    # Written after epochs 1 and 2 (gains), not rewritten after 3 and 4 (same file).
    files = watch.best_files
    assert [files[e][1]["epoch"] for e in (1, 2, 3, 4)] == [1, 2, 2, 2]
    assert files[1][0] != files[2][0] and files[2] == files[3] == files[4]
    assert read_best(str(out)) == json.loads((out / "best.json").read_text()) == \
        {"epoch": 2, "step": 2 * EPOCH_STEPS, "val_mAP": 0.3}
    best = checkpoints.load_model(str(out / "best.keras"))
    assert same_weights(best.get_weights(), watch.weights[2])
    assert not same_weights(best.get_weights(), watch.weights[4])
    # Stopped after epoch 4; the reason is recorded and printed on stderr; model.keras is
    # the last epoch's model.
    assert len(history.history["loss"]) == 4 and sorted(watch.weights) == [1, 2, 3, 4]
    assert "stopped after epoch 4" in history.stop_reason
    assert history.stop_reason in capsys.readouterr().err
    assert same_weights(checkpoints.load_model(str(out / "model.keras")).get_weights(), watch.weights[4])
    assert json.loads((out / "checkpoints" / "state.json").read_text())["epoch"] == 4
    with open(out / "history.csv") as f:
        assert [float(r["val_mAP"]) for r in csv.DictReader(f)] == values[:4]
    config = json.loads((out / "config.json").read_text())["train"]
    assert config["early_stopping_patience"] == 2 and config["keep_best"] is None


def test_the_best_and_the_patience_count_survive_a_resume(data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    values = [0.1, 0.3, 0.2, 0.25, 0.9, 0.9]
    history, _ = fit(tiny_model(data), data, out, 3, values, monkeypatch, early_stopping_patience=2)
    assert history.stop_reason is None and read_best(str(out))["epoch"] == 2
    inode = os.stat(out / "best.keras").st_ino
    # Resume as `frcnn train --resume` does: the model and state of the checkpoint.
    model, state = checkpoints.load_checkpoint(str(out / "checkpoints"))
    assert state == {"epoch": 3, "step": 3 * EPOCH_STEPS, "epoch_step": 0}
    history, watch = fit(model, data, out, 6, values, monkeypatch, resume_state=state,
                         early_stopping_patience=2)
    # 0.25 < 0.3: the best of epoch 2 stays (a resumed run not knowing it would overwrite
    # it); two validations without a gain (epochs 3 and 4): stop after epoch 4, not 6.
    assert sorted(watch.weights) == [4]
    assert os.stat(out / "best.keras").st_ino == inode and read_best(str(out))["epoch"] == 2
    assert "stopped after epoch 4" in history.stop_reason


def test_early_stopping_on_a_real_validation(data, tmp_path):
    """Learning rate 0: the weights never change, so the real val_mAP is the same after each
    epoch; patience 1 stops after epoch 2 of 5, and best.keras is epoch 1's."""
    out = tmp_path / "run"
    model = tiny_model(data)
    history = runs.fit(model, data, str(out), 5, 4,
                       {"learning_rate": 0.0, "epochs": 5, "early_stopping_patience": 1},
                       val_data=shapes.load("val", num_images=4), verbose=0)
    maps = history.history["val_mAP"]
    assert len(maps) == 2 and maps[0] == maps[1]
    assert "stopped after epoch 2" in history.stop_reason
    assert read_best(str(out)) == {"epoch": 1, "step": EPOCH_STEPS, "val_mAP": maps[0]}


# ---------------------------------------------------------------------------- augmentation
def painted(size=100):
    """One 100 x 100 image, black, with box A = (10, 20, 30, 60) painted 200 and box B =
    (90, 90, 100, 100) painted 100."""
    image = np.zeros((size, size, 3), np.uint8)
    image[20:60, 10:30] = 200
    image[90:100, 90:100] = 100
    boxes = np.array([[10, 20, 30, 60], [90, 90, 100, 100]], np.float32)
    return image, boxes


def one_image_data():
    image, boxes = painted()
    record = ImageRecord(image, boxes, [1, 2], [False, False], 0, 100, 100)
    return DetectionData([record], ["a", "b"], name="painted")


def jittered(factor, bits):
    image, boxes = painted()
    out = jitter_scale(image, boxes, tf.constant([1, 2]), tf.constant(1.0), (128, 128),
                       (factor, factor), tf.constant([bits, 0], tf.int64))
    return [np.asarray(t) for t in out]


def test_scale_jitter_hand_computed_shrink():
    # 100 px image, min = max = 100 (canvas 128), factor 0.5: a 50 x 50 image, boxes halved.
    ds = make_dataset(one_image_data(), 1, training=True, min_side=100, max_side=100, flip=False,
                      scale_jitter=(0.5, 0.5))
    images, t = next(iter(ds))
    np.testing.assert_allclose(t["boxes"][0].numpy(), [[5, 10, 15, 30], [45, 45, 50, 50]])
    np.testing.assert_array_equal(t["image_sizes"][0].numpy(), [50, 50])
    np.testing.assert_allclose(t["scales"][0].numpy(), 0.5)
    image = images[0].numpy()
    assert image.shape == (128, 128, 3)
    np.testing.assert_allclose(image[11:29, 6:14], 200, atol=1e-3)     # inside box A
    assert image[:9].max() < 1 and image[31:44, :].max() < 1            # outside the boxes
    assert not image[50:].any() and not image[:, 50:].any()             # padding stays 0


@pytest.mark.parametrize("bits", range(6))
def test_scale_jitter_crop_keeps_boxes_on_their_pixels(bits):
    # Factor 2: 200 x 200, cropped to the 128 x 128 canvas at a random offset.
    image, boxes, labels, scale = jittered(2.0, bits)
    assert image.shape == (128, 128, 3) and scale == 2.0
    for k, value in enumerate((200, 100)):
        ys, xs = np.nonzero(np.abs(image[..., 0] - value) < 1)          # the painted pixels
        if labels[k] < 0:                                               # dropped: < 1 px left
            assert len(ys) == 0 or min(np.ptp(xs), np.ptp(ys)) < 2
            continue
        x1, y1, x2, y2 = boxes[k]
        assert 0 <= x1 < x2 <= 128 and 0 <= y1 < y2 <= 128
        # Full-value pixels fill the box, except one blurred pixel at an edge of the crop.
        np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1],
                                   [x1, y1, x2, y2], atol=1)
        assert (x2 - x1, y2 - y1) <= (2 * 20 if k == 0 else 2 * 10, 2 * 40 if k == 0 else 2 * 10)
    # Box A's full size is 40 x 80: where nothing was cut, it has exactly that size.
    x1, y1, x2, y2 = boxes[0]
    if labels[0] == 1 and 0 < x1 and 0 < y1 and x2 < 128 and y2 < 128:
        np.testing.assert_allclose([x2 - x1, y2 - y1], [40, 80])


def test_scale_jitter_crop_offsets_vary_and_box_b_is_dropped_when_cut_away():
    offsets, dropped = set(), 0
    for bits in range(40):
        _, boxes, labels, _ = jittered(2.0, bits)
        if labels[0] == 1 and boxes[0][0] > 0:
            offsets.add(round(20 - float(boxes[0][0])))                # x1 = 20 - offset_x
        dropped += labels[1] == -1
    # Box B = (180, 180, 200, 200) after scaling: outside a crop whose offset is < 52.
    assert len(offsets) > 5 and 0 < dropped < 40


def test_scale_jitter_stays_on_the_canvas_and_is_deterministic_per_seed():
    data = shapes.load("train", num_images=8)

    def batches(seed, **kwargs):
        ds = make_dataset(data, 4, training=True, min_side=160, max_side=160, seed=seed, repeat=True,
                          scale_jitter=(0.6, 1.4), **kwargs)
        return [(images.numpy(), {k: v.numpy() for k, v in t.items()}) for images, t in ds.take(4)]

    first = batches(3)
    sizes = np.concatenate([t["image_sizes"] for _, t in first])
    assert sizes.min() < 150 and sizes.max() == 160                     # shrunk and cropped
    for images, t in first:
        assert images.shape[1:] == (160, 160, 3)
        boxes, labels = t["boxes"], t["labels"]
        real = labels >= 0
        h, w = t["image_sizes"][:, 0, None], t["image_sizes"][:, 1, None]
        assert np.all(boxes[..., 0] >= 0) and np.all(boxes[..., 2] <= w) and np.all(boxes[..., 3] <= h)
        assert np.all(boxes[..., 2][real] - boxes[..., 0][real] >= 1)
        assert not np.any(boxes[~real])
        for image, (hh, ww) in zip(images, t["image_sizes"]):
            assert not image[hh:].any() and not image[:, ww:].any()    # padding stays 0
    for (ia, ta), (ib, tb) in zip(first, batches(3)):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(ta["boxes"], tb["boxes"])
    assert any(not np.array_equal(ta["image_sizes"], tb["image_sizes"])
               for (_, ta), (_, tb) in zip(first, batches(4)))


def test_photometric_keeps_boxes_and_range_changes_pixels_and_is_deterministic():
    data = shapes.load("train", num_images=8)

    def batches(seed, strength):
        ds = make_dataset(data, 4, training=True, min_side=160, max_side=160, seed=seed,
                          repeat=True, photometric=strength)
        return [(images.numpy(), {k: v.numpy() for k, v in t.items()}) for images, t in ds.take(3)]

    plain, strong, again = batches(1, 0.0), batches(1, 0.8), batches(1, 0.8)
    for (ip, tp), (is_, ts), (ia, _) in zip(plain, strong, again):
        for key in tp:                                    # same images, flips and boxes
            np.testing.assert_array_equal(tp[key], ts[key], err_msg=key)
        assert 0 <= is_.min() and is_.max() <= 255
        assert np.mean(np.abs(ip - is_)) > 2                # the pixels changed
        np.testing.assert_array_equal(is_, ia)              # the same seed, the same pixels
    other = batches(2, 0.8)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(strong, other))


def test_photometric_strength_zero_is_identity_and_grey_stays_grey():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (20, 30, 3)).astype(np.float32)
    np.testing.assert_allclose(photometric_jitter(image, 0.0, [5, 0]).numpy(), image, atol=2e-3)
    grey = np.repeat(rng.uniform(0, 255, (20, 30, 1)), 3, axis=-1).astype(np.float32)
    outs = []
    for bits in range(5):
        out = photometric_jitter(grey, 1.0, [bits, 0]).numpy()
        np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-3)
        np.testing.assert_allclose(out[..., 0], out[..., 2], atol=1e-3)
        assert not np.allclose(out, grey, atol=1)
        assert not any(np.allclose(out, other, atol=1) for other in outs)   # seed matters
        outs.append(out)


def test_each_image_of_a_stream_draws_its_own_augmentation():
    image, boxes = painted()
    records = [ImageRecord(image, boxes, [1, 2], [False, False], i, 100, 100) for i in range(4)]
    data = DetectionData(records, ["a", "b"], name="copies")
    for kwargs in ({"photometric": 0.5}, {"scale_jitter": (0.5, 0.9)}):   # no crop: the factor
        images, _ = next(iter(make_dataset(data, 4, training=True, min_side=100, max_side=100,
                                           flip=False, **kwargs)))
        images = images.numpy()
        assert all(not np.array_equal(images[i], images[j]) for i in range(4) for j in range(i))


def test_augmented_stream_resumes_where_it_was():
    data = shapes.load("train", num_images=10)
    kwargs = dict(training=True, min_side=160, max_side=160, seed=5, repeat=True,
                  scale_jitter=(0.7, 1.3), photometric=0.5)
    full = [images.numpy() for images, _ in make_dataset(data, 3, **kwargs).take(6)]
    resumed = [images.numpy() for images, _ in make_dataset(data, 3, skip_batches=4, **kwargs).take(2)]
    for a, b in zip(full[4:], resumed):
        np.testing.assert_array_equal(a, b)


def test_augmentation_is_off_when_evaluating_and_by_default():
    data = shapes.load("train", num_images=4)

    def first(**kwargs):
        images, t = next(iter(make_dataset(data, 4, min_side=160, max_side=160, **kwargs)))
        return images.numpy(), t["boxes"].numpy()

    plain = first()
    for a, b in zip(plain, first(scale_jitter=(0.5, 0.6), photometric=1.0)):   # training=False
        np.testing.assert_array_equal(a, b)
    assert check_augmentation() == (None, 0.0)
    with pytest.raises(FrcnnError, match="scale_jitter"):
        make_dataset(data, 2, training=True, scale_jitter=(2, 1))
