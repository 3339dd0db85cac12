"""XLA on or off on this machine, through the calls users make: ``model.fit`` steps and
``model.detect`` on raw images.  Chooses nothing itself: the numbers decide the default
(see benchmarks/README.md, "XLA on a CPU").

For each configuration two models with the same weights are compiled, ``jit_compile=False``
(Keras' default on a CPU) and ``True`` (its default on a GPU/TPU), and timed round-robin in
one process.  Prints medians of wall and process-CPU time per call and the ratio XLA / graph
(< 1: XLA is faster).

    python benchmarks/bench_xla.py [--quick] [--repeats 5]
"""
import argparse
import time

from _common import (build_model, configs, interleaved, machine_info, median, table)  # noqa: I001

import numpy as np
import tensorflow as tf

from frcnn_lib.training.optimizers import FusedSGD


def _training_data(cfg, batch, seed=0, distinct=16):
    """A repeated dataset of ``distinct`` synthetic batches, two boxes per image, every
    batch with its own boxes and labels (as a real pipeline gives): a step that compiled
    anew for new boxes or labels would pay its compilation here in every timed call."""
    rng = np.random.default_rng(seed)
    h, w = cfg["size"]
    images = rng.uniform(0, 255, (distinct * batch, h, w, 3)).astype(np.float32)
    size = rng.uniform(0.2, 0.5, (distinct * batch, 2, 2)) * np.array([w, h])
    corner = rng.uniform(0.0, 1.0, (distinct * batch, 2, 2)) * (np.array([w, h]) - size)
    boxes = np.concatenate([corner, corner + size], axis=-1).astype(np.float32)
    labels = rng.integers(1, 6, (distinct * batch, 2)).astype(np.int32)
    slices = (images, {"boxes": boxes, "labels": labels})
    return tf.data.Dataset.from_tensor_slices(slices).batch(batch).repeat()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small vgg16 case (a smoke run)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="fit steps per timed call")
    args = parser.parse_args()
    print(machine_info())
    rows = []
    for name, cfg in configs(args.quick).items():
        batch = 4 if name == "small" else 2
        models = {}
        for jit in (False, True):
            model = build_model(cfg)
            model.compile(optimizer=FusedSGD(1e-3, momentum=0.9), jit_compile=jit)
            models[jit] = model
        models[True].set_weights(models[False].get_weights())
        data = _training_data(cfg, batch)
        rng = np.random.default_rng(1)
        raw = [rng.integers(0, 256, cfg["size"] + (3,), dtype=np.uint8) for _ in range(batch)]
        fns = {}
        for jit, model in models.items():
            tag = "xla" if jit else "graph"
            fns[f"fit {tag}"] = (lambda m=model: m.fit(data, epochs=1, steps_per_epoch=args.steps,
                                                       verbose=0) and tf.constant(0))
            fns[f"detect {tag}"] = (lambda m=model: m.detect(raw, batch_size=batch) and tf.constant(0))
        start = time.perf_counter()
        times = interleaved(fns, args.repeats, warmup=1)
        for call, per in (("fit", args.steps), ("detect", batch)):
            g, x = f"{call} graph", f"{call} xla"
            rows.append([name, f"{call} ({'ms/step' if call == 'fit' else 'ms/image'})",
                         f"{median(times[g]) / per * 1000:.0f}", f"{median(times[x]) / per * 1000:.0f}",
                         f"{median(times[x]) / median(times[g]):.2f}",
                         f"{median(times.cpu[x]) / median(times.cpu[g]):.2f}"])
        print(f"{name}: measured in {time.perf_counter() - start:.0f} s")
    print(table(rows, ["config", "call", "graph", "xla", "xla/graph wall", "xla/graph cpu"]))


if __name__ == "__main__":
    main()
