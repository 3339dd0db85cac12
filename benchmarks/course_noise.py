"""The library's detector trained on notebook 09's short schedule, once per seed: the noise
that notebook 09's "your detector" table is read against.

Each run: the ``shapes_cpu`` preset with RoIAlign, 1000 steps of 4 images, Adam with cosine
decay, as in the notebook, evaluated on 200 held-out images through ``detect``; prints its
final loss, VOC07 and VOC2010+ mAP and training seconds.  The default seeds ``1,1,2``: the
same seed twice gives the same numbers (training is bit-reproducible on a CPU), so the third
run, another seed, shows how far a difference grows in 1000 steps -- as a learner's part that
rounds a tie differently makes one.

    python benchmarks/course_noise.py [--steps 1000] [--seeds 1,1,2] [--quick]
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


def train_and_evaluate(train_data, test_data, settings, train, steps, seed=1):
    """One run as notebook 09 does it (seed 1): ``(final loss, VOC07, VOC2010+, seconds)``.
    ``seed`` seeds the initial weights; the sampling and the batches stay the notebook's."""
    keras.utils.set_random_seed(seed)
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
    parser.add_argument("--seeds", default="1,1,2", help="one run per seed, comma-separated")
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
    results = []
    for run, seed in enumerate(int(s) for s in args.seeds.split(",")):
        loss, voc07, voc10, seconds = train_and_evaluate(train_data, test_data, settings, train,
                                                         args.steps, seed)
        results.append((seed, loss, voc07, voc10))
        print(f"run {run}, seed {seed}: final loss {loss:.4f}, VOC07 {voc07:.3f}, "
              f"VOC2010+ {voc10:.3f}, {seconds:.0f} s", flush=True)
    same = [a[1:] == b[1:] for i, a in enumerate(results) for b in results[:i] if a[0] == b[0]]
    print(f"SUMMARY course noise: {sum(same)} of {len(same)} same-seed pairs identical; "
          f"VOC07 from {min(r[2] for r in results):.3f} to {max(r[2] for r in results):.3f}")


if __name__ == "__main__":
    main()
