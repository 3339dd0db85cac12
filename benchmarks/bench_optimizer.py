"""Keras' optimizers against the library's fused ones (``frcnn_lib.training.optimizers``), through
the call users make: ``model.train_on_batch`` of a whole training step.

For each configuration two models with the same weights are compiled, one with Keras'
optimizer and one with the fused twin that ``training.make_optimizer`` builds, and their
steps are timed round-robin in one process, on a fresh batch every round:

* ``small``: the ``shapes_cpu`` preset at its training batch of 4 (the main job's step),
  Adam with clipnorm 10, on the shapes data through the training pipeline;
* ``vgg16``: the paper's settings at 600x800, batch 1, SGD with momentum 0.9 and clipnorm 10
  (``voc_vgg16``), on random images holding 3 boxes each.

Prints the medians of wall and process-CPU time per step and ``keras / fused`` (> 1: the
fused update is faster).  Floor for keeping the fused classes: ``keras / fused >= 1.0``.

    python benchmarks/bench_optimizer.py [--configs small,vgg16] [--repeats 30] [--quick]
"""
import argparse

from _common import build_model, configs, interleaved, machine_info, median, table  # noqa: I001

import keras
import numpy as np

from bench_training import batch_data
from frcnn_lib.training.optimizers import FusedAdam, FusedSGD


def _pair(name, cfg):
    """``{"keras": model, "fused": model}`` with the same weights."""
    if name == "small":
        optimizers = {"keras": lambda: keras.optimizers.Adam(1e-4, clipnorm=10.0),
                      "fused": lambda: FusedAdam(1e-4, clipnorm=10.0)}
    else:
        optimizers = {"keras": lambda: keras.optimizers.SGD(1e-4, momentum=0.9, clipnorm=10.0),
                      "fused": lambda: FusedSGD(1e-4, momentum=0.9, clipnorm=10.0)}
    models = {}
    for key, make in optimizers.items():
        keras.utils.set_random_seed(0)
        models[key] = build_model(cfg)
        models[key].compile(optimizer=make())
    return models


def _batches(name, cfg, model, count, batch):
    """``count`` training batches: the shapes pipeline's for ``small``, random for vgg16."""
    if name == "small":
        from frcnn_lib.datasets import shapes
        from frcnn_lib.training.runs import training_dataset
        stream = iter(training_dataset(shapes.load("train", num_images=count * batch), model, batch))
        return [next(stream) for _ in range(count)]
    return [batch_data(batch, cfg["size"], seed=i) for i in range(count)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="small,vgg16")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed rounds (default 30 for small, 4 for vgg16)")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny vgg16, 3 rounds")
    args = parser.parse_args()
    print(machine_info())
    rows = []
    for name in args.configs.split(","):
        cfg = configs(args.quick)[name]
        repeats = args.repeats or (3 if args.quick else 30 if name == "small" else 4)
        batch = 4 if name == "small" else 1
        models = _pair(name, cfg)
        batches = _batches(name, cfg, models["keras"], repeats + 1, batch)
        rounds, current = iter(batches), {}

        def keras_step():
            current["batch"] = next(rounds)      # a fresh batch each round, the same for both
            return models["keras"].train_on_batch(*current["batch"], return_dict=True)

        def fused_step():
            return models["fused"].train_on_batch(*current["batch"], return_dict=True)

        times = interleaved({"keras": keras_step, "fused": fused_step}, repeats)
        wall = {k: median(v) for k, v in times.items()}
        cpu = {k: median(times.cpu[k]) for k in models}
        for k in models:
            rows.append([name, k, f"{1000 * wall[k]:.1f}", f"{1000 * cpu[k]:.1f}", len(times[k])])
        rows.append([name, "keras / fused", f"{wall['keras'] / wall['fused']:.3f}",
                     f"{cpu['keras'] / cpu['fused']:.3f}", ""])
        paired = np.median(np.array(times["keras"]) / np.array(times["fused"]))
        print(f"{name}: keras / fused {wall['keras'] / wall['fused']:.3f} (median of paired rounds "
              f"{paired:.3f}), CPU {cpu['keras'] / cpu['fused']:.3f}; floor 1.0")
    print(table(rows, ["config", "optimizer", "wall ms", "CPU ms", "rounds"]))


if __name__ == "__main__":
    main()
