"""Benchmark: do scale jitter and photometric augmentation help the main job?

Trains ``FasterRCNN(**shapes_cpu["model"])`` from scratch for the same number of steps in
each variant -- ``baseline`` (the preset: horizontal flip only), ``jitter`` (plus
``scale_jitter``), ``photometric`` (plus ``photometric``) -- on the training pipeline of
``frcnn train`` (``runs.training_dataset``: the preset's training images, batch 4), with the
preset's optimizer (``runs.make_optimizer``: Adam, cosine schedule over exactly ``--steps``
steps, clipnorm 10).  Weights and data order come from ``--seeds`` (``keras`` seed and the
pipeline's seed), so the variants of one seed start from the same weights and read the same
images in the same order with the same flips; only the augmentation differs.  Then VOC07
mAP@0.5 on ``--test-images`` held-out ``shapes`` test images (``runs.evaluate``).

The first ``WARMUP`` steps (tracing) are left out of the step time; the run's wall time
includes them.  Runs go one after another in one process (the machine may be shared, so
compare step times only within one run of the script).

    python benchmarks/bench_training_controls.py [--steps 800] [--seeds 0,1]
        [--variants baseline,jitter,photometric] [--jitter 0.8,1.25] [--photometric 0.5]
        [--test-images 300] [--quick]
"""
import argparse
import statistics
import time

import _common as C
import keras

from frcnn_lib import FasterRCNN
from frcnn_lib.datasets import shapes
from frcnn_lib.training import runs
from frcnn_lib.training.presets import get_preset

WARMUP = 5


class StepClock(keras.callbacks.Callback):
    """Wall time of each training step."""

    def on_train_begin(self, logs=None):
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self.start)
        self.loss = float(logs["loss"])


def run(variant, seed, steps, controls, train_data, test_data):
    """Train one variant for ``steps`` steps, then evaluate: a result dict."""
    preset = get_preset("shapes_cpu")
    train = dict(preset["train"], epochs=1, **controls)          # the schedule spans `steps`
    keras.utils.set_random_seed(seed)
    model = FasterRCNN(train_data.num_classes, **dict(preset["model"], seed=seed))
    model.compile(optimizer=runs.make_optimizer(train, steps))
    dataset = runs.training_dataset(train_data, model, train["batch_size"], seed=seed, train=train)
    clock = StepClock()
    start = time.perf_counter()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, callbacks=[clock], verbose=0, shuffle=False)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    metrics, _, _ = runs.evaluate(model, test_data, use_07_metric=True, batch_size=8, progress=False)
    eval_s = time.perf_counter() - start
    timed = clock.times[WARMUP:] or clock.times
    result = dict(variant=variant, seed=seed, steps=steps, step_ms=1000 * statistics.median(timed),
                  train_s=train_s, eval_s=eval_s, loss=clock.loss, mAP=float(metrics["mAP"]))
    print(f"{variant} seed {seed}: {steps} steps, median step {result['step_ms']:.0f} ms, train "
          f"{train_s:.0f} s, final loss {clock.loss:.3f}, mAP@0.5 {result['mAP']:.3f} "
          f"(evaluated in {eval_s:.0f} s)", flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=800, help="training steps per run (default 800)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--variants", default="baseline,jitter,photometric")
    parser.add_argument("--jitter", default="0.8,1.25", help="scale_jitter low,high (default 0.8,1.25)")
    parser.add_argument("--photometric", type=float, default=0.5, help="photometric strength (default 0.5)")
    parser.add_argument("--train-images", type=int, help="default: the preset's train_images")
    parser.add_argument("--test-images", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="smoke run: 8 steps, 32 + 8 images")
    args = parser.parse_args()
    low, high = (float(v) for v in args.jitter.split(","))
    settings = {"baseline": {}, "jitter": {"scale_jitter": (low, high)},
                "photometric": {"photometric": args.photometric}}
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(settings))
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}; expected {', '.join(settings)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    steps = args.steps
    train_images = args.train_images or get_preset("shapes_cpu")["train"]["train_images"]
    test_images = args.test_images
    if args.quick:
        steps, train_images, test_images = WARMUP + 3, 32, 8
    print(C.machine_info())
    print(f"shapes_cpu, {steps} steps of batch 4 per run, {train_images} training images, "
          f"{test_images} test images; jitter {(low, high)}, photometric {args.photometric}; "
          f"seeds {seeds}", flush=True)
    train_data = shapes.load("train", num_images=train_images)
    test_data = shapes.load("test", num_images=test_images)
    results = [run(v, seed, steps, settings[v], train_data, test_data) for seed in seeds for v in variants]

    rows = [[r["variant"], r["seed"], r["steps"], f"{r['step_ms']:.0f}", f"{r['train_s']:.0f}",
             f"{r['loss']:.3f}", f"{r['mAP']:.3f}"] for r in results]
    print()
    print(C.table(rows, ["variant", "seed", "steps", "median step ms", "train s", "final loss",
                         "mAP@0.5 VOC07"]))
    by_variant = {v: [r["mAP"] for r in results if r["variant"] == v] for v in variants}
    print("\nSUMMARY training controls: " + ", ".join(
        f"{v} mAP {statistics.mean(m):.3f}" + (f" (range {min(m):.3f}-{max(m):.3f})" if len(m) > 1 else "")
        for v, m in by_variant.items()) + f" after {steps} steps" + (" [quick]" if args.quick else ""))


if __name__ == "__main__":
    main()
