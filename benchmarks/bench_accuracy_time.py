"""Benchmark: accuracy against training time for the main job (the ``shapes_cpu`` preset).

Trains ``FasterRCNN(**shapes_cpu["model"])`` from scratch with ``model.fit`` on the
training pipeline of ``frcnn train`` (``frcnn_lib.training.runs.training_dataset``, i.e.
``datasets.pipeline.make_dataset``: shuffled, flipped, repeated; the preset's
``train_images`` generated training images and batch size), with the preset's optimizer
(``training.make_optimizer``: Adam, cosine schedule over the preset's epochs, clipnorm 10).  A callback watches the wall clock after every step; when the
training time passes a mark (``--minutes``, default 2, 5, 10) it pauses, evaluates
VOC07 mAP@0.5 on 300 held-out ``shapes`` test images (``training.evaluate``, i.e.
``model.detect``), and goes on.  Evaluation time is excluded from the training clock;
the first step's tracing is included (a user pays it too).

Run: ``.venv/bin/python benchmarks/bench_accuracy_time.py [--minutes 2,5,10]
[--train-images N] [--test-images 300] [--quick]``.  The result depends on the
machine's speed (steps per minute are reported); on a shared machine it is pessimistic.
"""
import argparse
import math
import time

import _common as C
import keras

from frcnn_lib import FasterRCNN
from frcnn_lib.training import runs as training
from frcnn_lib.datasets import shapes
from frcnn_lib.training.presets import get_preset


def _minutes(seconds):
    return f"{seconds / 60:.2f}".rstrip("0").rstrip(".")


class EvaluateAtMarks(keras.callbacks.Callback):
    """Evaluate at wall-clock marks of training time (seconds), then stop after the last."""

    def __init__(self, marks, test_data, batch_size):
        super().__init__()
        self.marks = sorted(marks)
        self.test_data = test_data
        self.batch_size = batch_size
        self.results = []
        self.steps = 0

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()
        self.excluded = 0.0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        elapsed = time.perf_counter() - self.start - self.excluded
        if not self.marks or elapsed < self.marks[0]:
            return
        mark = self.marks.pop(0)
        t = time.perf_counter()
        metrics, _, sec_per_image = training.evaluate(self.model, self.test_data, use_07_metric=True,
                                                      batch_size=8, progress=False)
        spent = time.perf_counter() - t
        self.excluded += spent
        self.results.append({"mark_s": mark, "train_s": elapsed, "steps": self.steps,
                             "images": self.steps * self.batch_size, "mAP": metrics["mAP"],
                             "loss": float(logs.get("loss", float("nan"))) if logs else float("nan"),
                             "eval_s": spent})
        r = self.results[-1]
        print(f"  {_minutes(mark)} min: step {r['steps']}, loss {r['loss']:.3f}, "
              f"mAP@0.5 {r['mAP']:.3f} (evaluated in {spent:.0f} s)", flush=True)
        if not self.marks:
            self.model.stop_training = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", default="2,5,10",
                        help="comma-separated training-time marks in minutes (default 2,5,10)")
    parser.add_argument("--train-images", type=int,
                        help="generated training images (default: the preset's train_images)")
    parser.add_argument("--test-images", type=int, default=300, help="held-out test images (default 300)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: marks at 5 and 10 s, 64 training and 20 test images")
    args = parser.parse_args()
    preset = get_preset("shapes_cpu")
    train = preset["train"]
    marks_min = [float(m) for m in args.minutes.split(",")]
    train_images = args.train_images or train["train_images"]
    test_images = args.test_images
    if args.quick:
        marks_min, train_images, test_images = [5 / 60, 10 / 60], 64, 20
    print(C.machine_info())
    print(f"shapes_cpu: {train_images} training images, batch {train['batch_size']}, "
          f"{test_images} test images, marks {', '.join(_minutes(60 * m) for m in marks_min)} min")

    train_data = shapes.load("train", num_images=train_images)
    test_data = shapes.load("test", num_images=test_images)
    keras.utils.set_random_seed(0)
    model = FasterRCNN(train_data.num_classes, **preset["model"])
    steps_per_epoch = math.ceil(len(train_data) / train["batch_size"])
    model.compile(optimizer=training.make_optimizer(train, steps_per_epoch))
    dataset = training.training_dataset(train_data, model, train["batch_size"], seed=0)
    callback = EvaluateAtMarks([60 * m for m in marks_min], test_data, train["batch_size"])
    t = time.perf_counter()
    model.fit(dataset, epochs=10_000, steps_per_epoch=steps_per_epoch, callbacks=[callback], verbose=0,
              shuffle=False)  # the dataset shuffles itself
    wall = time.perf_counter() - t

    rows = [[_minutes(r["mark_s"]), f"{r['train_s']:.0f}", r["steps"], f"{r['steps'] / steps_per_epoch:.1f}",
             f"{r['images'] / r['train_s']:.1f}", f"{r['loss']:.3f}", f"{r['mAP']:.3f}", f"{r['eval_s']:.0f}"]
            for r in callback.results]
    print()
    print(C.table(rows, ["minutes", "train s", "steps", "epochs", "train images/s", "loss",
                         "mAP@0.5 VOC07", "eval s"]))
    print(f"(total wall time {wall:.0f} s including evaluations)")
    print("\nSUMMARY accuracy/time: " + ", ".join(
        f"{_minutes(r['mark_s'])} min -> mAP@0.5 {r['mAP']:.3f} ({r['steps']} steps)" for r in callback.results)
        + (" [quick]" if args.quick else ""))


if __name__ == "__main__":
    main()
