"""MeanAveragePrecision: logs val_mAP where History, CSVLogger, EarlyStopping and
ModelCheckpoint see it, with a fake detector whose detect() returns chosen boxes."""
import csv
import math

import keras
import numpy as np
import pytest

from frcnn_lib.runtime.errors import FrcnnError
from frcnn_lib.evaluation import MeanAveragePrecision

# Two validation images.  Image 0: class 1 at A = [0,0,10,10]; image 1: class 2 at
# B = [5,5,25,25].  The detector finds A exactly (TP) and misses B, firing a class 2 box
# far away instead: AP(class 1) = 1, AP(class 2) = 0, mAP = 0.5 (both VOC metrics).
GROUND_TRUTHS = [{"boxes": np.array([[0, 0, 10, 10]], np.float32), "labels": np.array([1])},
                 {"boxes": np.array([[5, 5, 25, 25]], np.float32), "labels": np.array([2])}]
ANSWERS = [{"boxes": np.array([[0, 0, 10, 10]], np.float32), "scores": np.array([.9]),
            "labels": np.array([1])},
           {"boxes": np.array([[30, 30, 40, 40]], np.float32), "scores": np.array([.8]),
            "labels": np.array([2])}]


def make_images(n=2):
    # Pixel (0, 0, 0) holds the image index, so the fake detector knows which image it got.
    images = [np.zeros((32, 48, 3), np.uint8) for _ in range(n)]
    for i, image in enumerate(images):
        image[0, 0, 0] = i
    return images


class FakeDetector(keras.Model):
    """A trainable one-layer model with the detect() contract of FasterRCNN."""

    def __init__(self, answers=ANSWERS, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(1)
        self.answers = answers
        self.batches = []

    def call(self, x):
        return self.dense(x)

    def detect(self, images):
        assert isinstance(images, list) and all(i.dtype == np.uint8 for i in images)
        self.batches.append(len(images))
        return [self.answers[int(image[0, 0, 0])] for image in images]


class DetectionDataLike:
    """Duck-typed dataset with images() and ground_truths(), as frcnn_lib.datasets offers."""

    def images(self):
        return iter(make_images())

    def ground_truths(self):
        return GROUND_TRUTHS


class RecordsLike:
    """Duck-typed like frcnn_lib.datasets.DetectionData: read_image(i), len(), ground_truths()."""

    def __len__(self):
        return 2

    def read_image(self, index):
        return make_images()[index]

    def ground_truths(self):
        return GROUND_TRUTHS


def epoch_end(callback, model, epoch=0):
    callback.set_model(model)
    logs = {"loss": 1.0}
    callback.on_epoch_end(epoch, logs)
    return logs


@pytest.mark.parametrize("data", [(make_images(), GROUND_TRUTHS), DetectionDataLike(),
                                  RecordsLike()], ids=["pair", "images()", "read_image()"])
def test_logs_map_and_per_class_ap(data):
    model = FakeDetector()
    callback = MeanAveragePrecision(data, batch_size=1, class_names=["cat", "dog"])
    logs = epoch_end(callback, model)
    assert logs["val_mAP"] == pytest.approx(0.5)
    assert logs["val_mAP/cat"] == 1.0 and logs["val_mAP/dog"] == 0.0
    assert model.batches == [1, 1]
    assert callback.result["num_true_positives"] == {1: 1, 2: 0}


def test_every_n_epochs_and_batches():
    model = FakeDetector(answers=ANSWERS * 3)
    callback = MeanAveragePrecision((make_images(5), GROUND_TRUTHS * 2 + GROUND_TRUTHS[:1]),
                                    every_n_epochs=2, batch_size=2, name="map07")
    assert "map07" not in epoch_end(callback, model, epoch=0)  # epoch 1 of 2: skipped
    assert model.batches == []
    logs = epoch_end(callback, model, epoch=1)
    # Images 0, 2, 4 (class 1) detected, images 1, 3 (class 2) missed: mAP = (1 + 0) / 2.
    assert logs["map07"] == pytest.approx(0.5) and model.batches == [2, 2, 1]


def test_class_without_ground_truth_logs_nan():
    model = FakeDetector()
    callback = MeanAveragePrecision((make_images(), GROUND_TRUTHS), class_names=["a", "b", "c"])
    logs = epoch_end(callback, model)
    assert math.isnan(logs["val_mAP/c"]) and logs["val_mAP"] == pytest.approx(0.5)


def test_fit_feeds_history_csvlogger_earlystopping_and_checkpoint(tmp_path):
    model = FakeDetector()
    model.compile(optimizer="sgd", loss="mse")
    csv_path, weights = tmp_path / "log.csv", tmp_path / "best.weights.h5"
    callbacks = [
        MeanAveragePrecision((make_images(), GROUND_TRUTHS)),
        keras.callbacks.CSVLogger(str(csv_path)),
        keras.callbacks.EarlyStopping(monitor="val_mAP", mode="max", patience=5),
        keras.callbacks.ModelCheckpoint(str(weights), monitor="val_mAP", mode="max",
                                        save_best_only=True, save_weights_only=True),
    ]
    history = model.fit(np.ones((4, 3)), np.ones((4, 1)), batch_size=4, epochs=2,
                        callbacks=callbacks, verbose=0)
    assert history.history["val_mAP"] == pytest.approx([0.5, 0.5])
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert [float(row["val_mAP"]) for row in rows] == pytest.approx([0.5, 0.5])
    assert weights.exists()


def test_bad_setup():
    with pytest.raises(FrcnnError, match="3 images but 2 ground truths"):
        MeanAveragePrecision((make_images(3), GROUND_TRUTHS))
    with pytest.raises(FrcnnError, match="ground_truths\\(\\) and images\\(\\)"):
        MeanAveragePrecision(object())
    with pytest.raises(FrcnnError, match="every_n_epochs"):
        MeanAveragePrecision((make_images(), GROUND_TRUTHS), every_n_epochs=0)
    plain = keras.Sequential([keras.layers.Dense(1)])
    with pytest.raises(FrcnnError, match="detect"):
        epoch_end(MeanAveragePrecision((make_images(), GROUND_TRUTHS)), plain)


def test_accepts_detection_data():
    records = pytest.importorskip("frcnn_lib.datasets.records")
    data = records.DetectionData(
        [records.ImageRecord(image, g["boxes"], g["labels"], np.zeros(1, bool), i, 32, 48)
         for i, (image, g) in enumerate(zip(make_images(), GROUND_TRUTHS))], ["cat", "dog"])
    callback = MeanAveragePrecision(data, class_names=data.class_names)
    logs = epoch_end(callback, FakeDetector())
    assert logs["val_mAP"] == pytest.approx(0.5) and logs["val_mAP/cat"] == 1.0
