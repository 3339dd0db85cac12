"""Mid-epoch resume reads the same data: the training stream started at batch ``k`` equals
the uninterrupted stream from its ``k``-th batch (one canvas and two), and the phases of a
resumed run, and in-epoch checkpoints."""
import json

import keras
import numpy as np
import pytest

from frcnn_lib import FrcnnError
from frcnn_lib.training import checkpoints
from frcnn_lib.datasets import shapes
from frcnn_lib.datasets.pipeline import make_dataset
from frcnn_lib.datasets.records import DetectionData, ImageRecord
from frcnn_lib.datasets.resume import portrait_flags
from frcnn_lib.training.runs import resume_phases


def mixed_orientation(n=11, seed=0):
    """In-memory images, portrait and landscape mixed, a distinct value per image."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        h, w = (48, 32) if rng.random() < 0.4 else (30, 50)
        image = np.full((h, w, 3), 10 + 20 * i, np.uint8)
        records.append(ImageRecord(image, [[2, 3, 20, 25]], [1], [False], i, h, w))
    return DetectionData(records, ["thing"], name="mixed")


def batches(data, skip, count, batch_size=3, sides=(32, 48)):
    ds = make_dataset(data, batch_size, training=True, min_side=sides[0], max_side=sides[1],
                      seed=5, repeat=True, skip_batches=skip)
    return [(t["indices"].numpy(), images.numpy()) for images, t in ds.take(count)]


@pytest.mark.parametrize("make, sides", [
    (mixed_orientation, (32, 48)),                                # two canvases, grouped
    (lambda: shapes.load("train", num_images=10), (160, 160)),   # one canvas
])
@pytest.mark.parametrize("skip", [1, 5, 9])
def test_skipped_stream_continues_the_uninterrupted_one(make, sides, skip):
    data = make()
    full = batches(data, 0, skip + 4, sides=sides)
    resumed = batches(data, skip, 4, sides=sides)
    for (i_full, x_full), (i_res, x_res) in zip(full[skip:], resumed):
        np.testing.assert_array_equal(i_full, i_res)
        np.testing.assert_array_equal(x_full, x_res)              # same flips, same pixels
    # Skipping really moves on (not the start again), across more than one pass of the data.
    assert any(not np.array_equal(full[0][0], r[0]) for r in resumed)


def test_two_canvas_batches_hold_one_orientation_and_flags_agree_with_the_pipeline():
    data = mixed_orientation()
    flags = portrait_flags(data, 32, 48)
    ds = make_dataset(data, 3, training=True, min_side=32, max_side=48, seed=5, repeat=True)
    seen_both = set()
    for images, t in ds.take(8):
        sizes = t["image_sizes"].numpy()
        portrait = sizes[:, 0] > sizes[:, 1]
        np.testing.assert_array_equal(portrait, flags[t["indices"].numpy()])
        assert len(set(portrait)) == 1
        seen_both.add(bool(portrait[0]))
    assert seen_both == {True, False}


def test_skip_needs_a_repeated_stream():
    with pytest.raises(FrcnnError, match="skip_batches"):
        make_dataset(mixed_orientation(), 3, training=True, min_side=32, max_side=48,
                     skip_batches=2)


def test_resume_phases():
    assert resume_phases(None, 3, 12) == [(0, 3, 12, 0)]
    assert resume_phases({"epoch": 1, "step": 12}, 3, 12) == [(1, 3, 12, 12)]
    # 15 steps = 1 epoch + 3: finish epoch 1 (9 steps), then epoch 2.
    assert resume_phases({"epoch": 1, "step": 15, "epoch_step": 3}, 3, 12) == \
        [(1, 2, 9, 15), (2, 3, 12, 24)]
    assert resume_phases({"epoch": 2, "step": 27, "epoch_step": 3}, 3, 12) == [(2, 3, 9, 27)]
    with pytest.raises(FrcnnError, match="batch-size"):
        resume_phases({"epoch": 1, "step": 15, "epoch_step": 3}, 3, 10)


class FakeOptimizer:
    def __init__(self):
        self.iterations = keras.Variable(0, dtype="int64")


def test_in_epoch_checkpoints_every_n_steps(tmp_path, monkeypatch):
    saved = []
    callback = checkpoints.AtomicCheckpoint(str(tmp_path), steps_per_epoch=12, every_steps=5)
    monkeypatch.setattr(callback, "_save", lambda *a: saved.append(a[:3]))
    model = type("M", (), {"optimizer": FakeOptimizer(), "stop_training": False})()
    callback.set_model(model)
    for step in range(1, 25):
        model.optimizer.iterations.assign(step)
        callback.on_train_batch_end(step - 1, {"loss": 1.0})
        if step % 12 == 0:
            callback.on_epoch_end(step // 12 - 1, {"loss": 1.0})
    # (epoch, step, epoch_step): in-epoch at 5, 10, 15, 20; epoch ends at 12, 24.
    assert saved == [(0, 5, 5), (0, 10, 10), (1, 12, 0), (1, 15, 3), (1, 20, 8), (2, 24, 0)]


def test_in_epoch_checkpoints_every_m_minutes(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(checkpoints.time, "monotonic", lambda: clock[0])
    saved = []
    callback = checkpoints.AtomicCheckpoint(str(tmp_path), steps_per_epoch=100, every_minutes=0.5)
    callback.on_train_begin()
    monkeypatch.setattr(callback, "_save", lambda *a: (saved.append(a[:3]),
                                                       setattr(callback, "_last_save", clock[0])))
    model = type("M", (), {"optimizer": FakeOptimizer(), "stop_training": False})()
    callback.set_model(model)
    for step in range(1, 11):
        clock[0] += 7.0                                          # 7 s a step: due every 5th
        model.optimizer.iterations.assign(step)
        callback.on_train_batch_end(step - 1, {"loss": 1.0})
    assert saved == [(0, 5, 5), (0, 10, 10)]


def test_state_json_of_an_in_epoch_checkpoint(tmp_path):
    from frcnn_lib import FasterRCNN
    model = FasterRCNN(2, backbone="small", rpn_channels=8, roi_head_units=8,
                       image_min_side=32, image_max_side=32, anchor_scales=(16,))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.build()
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(7)
    callback = checkpoints.AtomicCheckpoint(str(tmp_path), steps_per_epoch=4, every_steps=7)
    callback.set_model(model)
    callback.on_train_batch_end(2, {"loss": 1.0})
    assert json.loads((tmp_path / "state.json").read_text()) == {"epoch": 1, "step": 7, "epoch_step": 3}
    _, state = checkpoints.load_checkpoint(str(tmp_path))
    assert state == {"epoch": 1, "step": 7, "epoch_step": 3}
