"""Benchmark: the main job (`frcnn demo`) for several seeds, and its accuracy against steps.

For each seed this runs ``frcnn_lib.cli.report.run_demo``, the function ``frcnn demo --seed S``
runs (``--preset``, by default the main job's ``shapes_224``: its data, its schedule), with one more callback: after every
epoch (500 steps at batch 4) it evaluates VOC07 11-point and VOC2010+ area mAP@0.5 on the
demo's held-out test images (300), as the demo's final evaluation does.  That evaluation's time
is reported apart; the demo's own median step time (``metrics.json``) comes from the same run.

Prints, per seed, the curve of both metrics against steps, the final metrics, the median step,
and whether the goal holds: VOC07 >= 0.90 and VOC2010+ >= 0.975 at the end (``--goal-steps``,
4000 steps), for every seed.

``--set KEY=VALUE`` (a FasterRCNN argument of the preset's ``model``) and ``--train-set
KEY=VALUE`` (a setting of its ``train`` dict: ``epochs``, ``learning_rate``, ``warmup_steps``,
...), VALUE in JSON, try a lever of the recipe on every seed; the goal check counts the steps
that run.

Run: ``.venv/bin/python benchmarks/bench_demo.py [--seeds 0,1,2] [--out runs/bench_demo]
[--preset shapes_224] [--set KEY=VALUE ...] [--train-set KEY=VALUE ...] [--quick]``.  Minutes per seed: the demo's
training plus an evaluation of 300 images per epoch.
"""
import argparse
import json
import os
import time

import _common as C
import keras

from frcnn_lib.cli.common import check_overrides, parse_overrides
from frcnn_lib.cli.report import DemoSettings, run_demo
from frcnn_lib.datasets import shapes
from frcnn_lib.evaluation import evaluate_voc
from frcnn_lib.model import DEFAULTS
from frcnn_lib.runtime.errors import FrcnnError
from frcnn_lib.training import runs as training
from frcnn_lib.training.presets import PRESETS, SHAPES_PRESETS, TRAIN_CONTROLS, get_preset

GOAL_VOC07, GOAL_VOC2010 = 0.90, 0.975
# What a preset's train dict may set: the presets' own keys, the training controls and the
# optional gradient clipping read by training.make_optimizer.
TRAIN_KEYS = sorted(set().union(*(p["train"] for p in PRESETS.values()), TRAIN_CONTROLS, ["clipnorm"]))


def train_overrides(pairs):
    """``--train-set KEY=VALUE`` pairs as a dict; an unknown key raises ``FrcnnError``."""
    out = parse_overrides(pairs)
    for key in out:
        if key not in TRAIN_KEYS:
            raise FrcnnError(f"--train-set {key}: not a training setting; expected one of "
                             f"{', '.join(TRAIN_KEYS)}")
    return out


class TestCurve(keras.callbacks.Callback):
    """After each epoch: VOC07 and VOC2010+ mAP@0.5 of the model on ``data``."""

    def __init__(self, data, steps_per_epoch):
        super().__init__()
        self.data, self.steps_per_epoch = data, steps_per_epoch
        self.rows, self.seconds = [], 0.0

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        voc07, detections, _ = training.evaluate(self.model, self.data, use_07_metric=True,
                                                 progress=False)
        voc2010 = evaluate_voc(detections, self.data.ground_truths(), self.data.num_classes, 0.5, False)
        self.rows.append(((epoch + 1) * self.steps_per_epoch, voc07["mAP"], voc2010["mAP"]))
        self.seconds += time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--out", default="runs/bench_demo", help="a run folder per seed under it")
    parser.add_argument("--preset", choices=SHAPES_PRESETS, default="shapes_224",
                        help="the preset the demo trains (default shapes_224, the main job's)")
    parser.add_argument("--goal-steps", type=int, default=4000)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a FasterRCNN argument of the preset, VALUE in JSON")
    parser.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a training setting of the preset, VALUE in JSON")
    parser.add_argument("--quick", action="store_true", help="1 epoch of 8 images, 16 test images")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    model_set = parse_overrides(args.set)
    check_overrides(model_set, DEFAULTS)
    train_set = train_overrides(args.train_set)
    train = {**get_preset(args.preset)["train"], **train_set}
    epochs, train_images = (1, 8) if args.quick else (train["epochs"], train["train_images"])
    test_images = 16 if args.quick else train["test_images"]
    steps_per_epoch = -(-train_images // train["batch_size"])
    print(C.machine_info())
    print(f"frcnn demo ({args.preset}): {epochs} epochs x {steps_per_epoch} steps at batch "
          f"{train['batch_size']}, {train_images} training images, {test_images} test images"
          + (f"; overrides: model {model_set}, train {train_set}" if model_set or train_set else ""))
    results = {}
    for seed in seeds:
        curve = TestCurve(shapes.load("test", num_images=test_images), steps_per_epoch)
        settings = DemoSettings(out=os.path.join(args.out, f"seed{seed}"), preset=args.preset, epochs=epochs,
                                train_images=train_images, test_images=test_images, seed=seed,
                                model_overrides=model_set, train_overrides=train_set)
        metrics = run_demo(settings, verbose=0, extra_callbacks=(curve,),
                           announce=lambda line: print(f"seed {seed}: {line}", flush=True))
        results[seed] = {"curve": curve.rows, "metrics": metrics, "curve_seconds": curve.seconds}
        train_s = metrics["seconds"]["train"] - curve.seconds
        print(f"seed {seed}: training {train_s:.0f} s without the curve's evaluations "
              f"({curve.seconds:.0f} s), median step {1000 * metrics['median_step_seconds']:.1f} ms")

    print("\nsteps | " + " | ".join(f"seed {s} VOC07 / VOC2010+" for s in seeds))
    for i, (steps, _, _) in enumerate(results[seeds[0]]["curve"]):
        cells = [f"{results[s]['curve'][i][1]:.3f} / {results[s]['curve'][i][2]:.3f}" for s in seeds]
        print(f"{steps} | " + " | ".join(cells))
    met = True
    for seed in seeds:
        m = results[seed]["metrics"]
        ok = (m["steps"] <= args.goal_steps and m["mAP_voc07"] >= GOAL_VOC07
              and m["mAP_voc2010"] >= GOAL_VOC2010)
        met &= ok
        print(f"seed {seed}: final VOC07 {m['mAP_voc07']:.3f}, VOC2010+ {m['mAP_voc2010']:.3f} "
              f"after {m['steps']} steps: {'meets' if ok else 'misses'} the goal "
              f"(VOC07 >= {GOAL_VOC07}, VOC2010+ >= {GOAL_VOC2010}, <= {args.goal_steps} steps)")
    finals = ", ".join(f"seed {s} {results[s]['metrics']['mAP_voc07']:.3f} / "
                       f"{results[s]['metrics']['mAP_voc2010']:.3f}" for s in seeds)
    print(f"SUMMARY demo (VOC07 / VOC2010+): {finals}; goal {'met' if met else 'NOT met'} "
          f"for seeds {args.seeds}")
    with open(os.path.join(args.out, "bench_demo.json"), "w") as f:
        json.dump({str(k): v for k, v in results.items()}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
