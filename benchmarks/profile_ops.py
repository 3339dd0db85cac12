"""Where a training step's CPU time goes, op by op: TensorFlow's profiler around real
``model.train_on_batch`` calls of the ``shapes_cpu`` preset (the main job's step: batch 4,
the training pipeline's batches, the preset's optimizer from ``training.make_optimizer``).

Prints the self time of every op per step (summed over the threads, so up to 2x the wall
time on 2 cores), grouped by the part of the model it belongs to (the op's name scope:
``small_backbone``, ``rpn_head``, ``small_roi_head``, the optimizer ``adam``, ...; forward and
``grad:`` backward apart), and the op types that take the most.  ``IDLE`` is the profiler's
own line for threads waiting.

    python benchmarks/profile_ops.py [--steps 20] [--batch 4] [--top 15] [--quick]
"""
import argparse
import collections
import glob
import json
import os
import re
import tempfile
import time

from _common import machine_info, median, table  # noqa: I001

import tensorflow as tf

from frcnn_lib import FasterRCNN
from frcnn_lib.training import runs as training
from frcnn_lib.datasets.classes import data_classes
from frcnn_lib.datasets import shapes
from frcnn_lib.training.presets import get_preset


def _scope(op_name):
    """The model part of an op: its first name scope (Keras' ``_1`` suffixes dropped),
    ``grad:`` for the backward pass; ops outside any scope (targets, sampling, losses) and
    the optimizer's each get one line."""
    parts = op_name.split("/")
    if parts[0] == "gradient_tape" and len(parts) > 1:
        return "grad:" + re.sub(r"_\d+$", "", parts[1])
    head = re.sub(r"_\d+$", "", parts[0])
    if head.startswith(("adam", "sgd", "fused_adam", "fused_sgd", "clip_by_norm")):
        return "optimizer"
    return head if len(parts) > 1 or head == "IDLE" else "(ops outside a scope)"


def op_stats(logdir):
    """Rows of the profiler's per-op table (``framework_op_stats``) as dicts."""
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    path = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0]
    raw, _ = plugin.xspace_to_tools_data([path], "framework_op_stats", {})
    tables = [t for t in json.loads(raw) if isinstance(t, dict) and "rows" in t]
    cols = [c["id"] for c in tables[0]["cols"]]
    return [dict(zip(cols, [c.get("v") for c in r["c"]])) for r in tables[0]["rows"]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="profiled steps")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--top", type=int, default=15, help="rows of each table")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 steps")
    args = parser.parse_args()
    steps = 3 if args.quick else args.steps
    print(machine_info())
    preset = get_preset("shapes_cpu")
    data = shapes.load("train", num_images=(steps + 10) * args.batch)
    model = FasterRCNN(data.num_classes, **data_classes(data), **preset["model"])
    model.compile(optimizer=training.make_optimizer(preset["train"], 500))
    stream = iter(training.training_dataset(data, model, args.batch))
    batches = [next(stream) for _ in range(steps + 10)]
    for batch in batches[:5]:                                   # trace and warm up
        model.train_on_batch(*batch)
    wall = []
    for batch in batches[5:10]:
        start = time.perf_counter()
        model.train_on_batch(*batch)
        wall.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for batch in batches[10:]:
            model.train_on_batch(*batch)
        tf.profiler.experimental.stop()
        rows = op_stats(logdir)
    total = sum(r["total_self_time"] for r in rows)
    busy = total - sum(r["total_self_time"] for r in rows if r["type"] == "IDLE")
    by_scope, by_type = collections.Counter(), collections.Counter()
    for r in rows:
        by_scope[_scope(r["operation"])] += r["total_self_time"]
        by_type[r["type"]] += r["total_self_time"]

    def rows_of(counter):
        return [[name, f"{us / steps / 1000:.1f}", f"{100 * us / busy:.1f}" if name != "IDLE" else ""]
                for name, us in counter.most_common(args.top)]

    print(f"\ntrain_on_batch, batch {args.batch}: median {1000 * median(wall):.1f} ms wall "
          f"(5 steps before profiling); profiled {steps} steps: {busy / steps / 1000:.1f} ms of "
          f"op time per step on all threads")
    print(table(rows_of(by_scope), ["part (name scope)", "ms / step", "% of op time"]))
    print(table(rows_of(by_type), ["op type", "ms / step", "% of op time"]))
    print(f"SUMMARY op time per step {busy / steps / 1000:.1f} ms; "
          f"optimizer {100 * by_scope['optimizer'] / busy:.1f} %")


if __name__ == "__main__":
    main()
