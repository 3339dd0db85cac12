"""The library's detector trained twice on notebook 09's short schedule: the run-to-run noise
that notebook 09's "your detector" table is read against.

Two runs of the same code, seed and batches (the ``shapes_cpu`` preset with RoIAlign, 1000
steps of 4 images, Adam with cosine decay, as in the notebook), each evaluated on 200
held-out images through ``detect``; prints each run's final loss, VOC07 and VOC2010+ mAP and
training seconds.

    python benchmarks/course_noise.py [--steps 1000] [--runs 2] [--quick]
"""
import argparse
import time

from _common import machine_info  # noqa: I001

import keras

from frcnn_lib import FasterRCNN
from frcnn_lib.datasets import make_dataset, shapes
from frcnn_lib.evaluation import evaluate_voc
from frcnn_lib.training.presets import get_preset
from frcnn_lib.training.runs import make_optimizer


def train_and_evaluate(train_data, test_data, settings, train, steps):
    """One run as notebook 09 does it: ``(final loss, VOC07, VOC2010+, seconds)``."""
    keras.utils.set_random_seed(1)
    detector = FasterRCNN(train_data.num_classes, **settings)
    detector.compile(optimizer=make_optimizer({**train, "epochs": 1}, steps))
    batches = make_dataset(train_data, batch_size=train["batch_size"], training=True,
                           shuffle=True, flip=True, seed=0, repeat=True)
    start = time.perf_counter()
    history = detector.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    found = detector.detect([test_data.read_image(i) for i in range(len(test_data))], batch_size=8)
    truths = test_data.ground_truths()
    voc07, voc10 = (evaluate_voc(found, truths, test_data.num_classes, use_07_metric=m)["mAP"]
                    for m in (True, False))
    return history.history["loss"][-1], voc07, voc10, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2 steps, 8 test images (a smoke run)")
    args = parser.parse_args()
    preset = get_preset("shapes_cpu")
    train = preset["train"]
    if args.quick:
        args.steps = 2
    train_data = shapes.load("train", num_images=32 if args.quick else train["train_images"])
    test_data = shapes.load("test", num_images=8 if args.quick else 200)
    settings = {**preset["model"], "roi_pooling": "roi_align"}
    print(machine_info())
    for run in range(args.runs):
        loss, voc07, voc10, seconds = train_and_evaluate(train_data, test_data, settings, train,
                                                         args.steps)
        print(f"run {run}: final loss {loss:.4f}, VOC07 {voc07:.3f}, VOC2010+ {voc10:.3f}, "
              f"{seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
