"""Benchmark: one compiled training step of ``FasterRCNN`` against its compute floor.

Two configurations, random weights, random images each holding 3 ground-truth boxes:

* ``vgg16``: the paper's settings: 600x800, 12000/2000 proposals before/after NMS, 128
  sampled RoIs, fc6/fc7 of 4096, 20 classes; the ``voc_vgg16`` optimizer (SGD, momentum
  0.9, clipnorm 10, from ``training.make_optimizer``).
* ``small``: the ``shapes_cpu`` preset (160x160, 1000/300 proposals, 64 RoIs, 256 units,
  5 classes) with its own optimizer (Adam, clipnorm 10, from ``training.make_optimizer``).

Timed in one process, round-robin after a warm-up, median of ``--repeats`` runs:

* ``step``: ``model.train_on_batch(images, targets)`` at batch 1, or ``--batch B`` (Keras'
  compiled train function: forward, the four losses, weight decay, gradients, optimizer
  update);
* ``floor``: one ``tf.function``: forward + backward of the model's own conv trunk and of
  fc6, fc7 as plain matmuls on ``B * R`` RoI rows (``R`` = 128 for vgg16) with the dummy loss
  ``sum(outputs)``, including the gradient with respect to the RoI features, and the update
  by the same optimizer;
* ``floor + RPN head``: the same with an RPN head of the model's shape on the trunk's
  features (the one dense layer the floor leaves out);
* ``floor + RPN head, sequential``: the same, with the fc layers' gradient made to wait for
  the trunk's forward pass as the detector's must (``_common.make_floor(sequential=True)``;
  without it the RoI rows' gradient, fc6's costliest matmul, overlaps the trunk).

Reported: ``step / floor`` (goal for vgg16: <= 1.25) in wall and in process CPU time,
``step / (floor + RPN head)`` (the share that is not dense compute; goal 30.2 for small:
<= 1.3) and the same against the sequential floor, the first call (tracing) apart, all at
batch 1 (where the goals are read, as issue 30 measured them) unless ``--batch`` says
otherwise; images/s at batch 1, 2, 4 (the three interleaved in this process,
``--throughput-repeats`` rounds after each size's first step); and the peak resident memory
of a training step at batch 1 and 2, each in a fresh subprocess (build + two steps;
``VmHWM``, i.e. the ``ru_maxrss`` of that process alone), with the peak after the build
alone for reference.

Run: ``.venv/bin/python benchmarks/bench_training.py [--configs vgg16,small]
[--repeats 5] [--throughput-repeats 1] [--ratios-only] [--batch 1] [--quick]``.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import _common as C
import numpy as np
import tensorflow as tf


RPN, SEQUENTIAL = "floor + RPN head", "floor + RPN head, sequential"


def training_configs(quick):
    configs = C.configs(quick)
    for cfg in configs.values():
        cfg["num_rois"] = cfg["kwargs"].get("roi_batch_size", 128)
    return configs


def make_optimizer(name, cfg):
    """The same optimizer for the model and the floor (small learning rates keep random
    weights finite over the benchmark's few steps; the rate does not change the cost)."""
    from frcnn_lib.training.presets import get_preset
    from frcnn_lib.training.runs import make_optimizer as preset_optimizer
    preset = "shapes_cpu" if name == "small" else "voc_vgg16"
    return preset_optimizer(dict(get_preset(preset)["train"], learning_rate=1e-4), 100)


def batch_data(batch, size, seed=0):
    """Random images and 3 boxes per image (in the middle third of the image)."""
    rng = np.random.default_rng(seed)
    h, w = size
    images = tf.constant(rng.uniform(0, 255, (batch, h, w, 3)).astype(np.float32))
    boxes = np.zeros((batch, 3, 4), np.float32)
    for i in range(batch):
        for j in range(3):
            bw, bh = rng.uniform(0.15, 0.5) * w, rng.uniform(0.15, 0.5) * h
            x1, y1 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            boxes[i, j] = (x1, y1, x1 + bw, y1 + bh)
    labels = rng.integers(1, 6, (batch, 3)).astype(np.int32)
    return images, {"boxes": tf.constant(boxes), "labels": tf.constant(labels)}


def compiled(name, cfg):
    model = C.build_model(cfg)
    model.compile(optimizer=make_optimizer(name, cfg))
    return model


def peak_rss_mb():
    """Peak resident memory of this process so far, MB: ``VmHWM`` from /proc (reset by exec,
    unlike ``ru_maxrss``, which a child started by fork + exec inherits from its parent)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(name, batch, quick):
    """Subprocess: build, then two training steps at one batch size; prints one JSON line
    with the peak RSS after the build and after the steps."""
    cfg = training_configs(quick)[name]
    model = compiled(name, cfg)
    rss_built = peak_rss_mb()
    images, targets = batch_data(batch, cfg["size"], seed=batch)
    for _ in range(2):
        model.train_on_batch(images, targets, return_dict=True)
    print("RESULT " + json.dumps({"batch": batch, "rss_mb": peak_rss_mb(), "rss_built_mb": rss_built}))


def run_children(name, batches, quick):
    """One subprocess per batch size, one after the other (all at once in quick mode, where
    only whether the script works matters)."""
    procs = []
    for batch in batches:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", f"{name}:{batch}"] + \
            (["--quick"] if quick else [])
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        if not quick:
            procs[-1].wait()
    results = []
    for batch, proc in zip(batches, procs):
        out, err = proc.communicate()
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not lines:
            raise RuntimeError(f"child {name}:{batch} failed:\n{err[-3000:]}")
        results.append(json.loads(lines[-1][len("RESULT "):]))
    return results


def run_config(name, cfg, repeats, steps, quick, ratios_only=False, batch=1):
    model = compiled(name, cfg)
    images, targets = batch_data(batch, cfg["size"])

    def step():
        return model.train_on_batch(images, targets, return_dict=True)

    floors = {k: C.make_floor(model, cfg["num_rois"] * batch, backward=True,
                              optimizer=make_optimizer(name, cfg),
                              with_rpn=k != "floor", sequential=k == SEQUENTIAL)
              for k in ("floor", RPN, SEQUENTIAL)}
    fns = {"step": step, **{k: (lambda f=f: f(images)) for k, f in floors.items()}}
    first = {k: C.first_call(fn) for k, fn in fns.items()}
    logs = step()
    finite = all(np.isfinite(v) for v in logs.values())
    times = C.interleaved(fns, repeats, warmup=1)
    med = {k: C.median(v) for k, v in times.items()}
    cpu = {k: C.median(v) for k, v in times.cpu.items()}
    rows = [[k, f"{1000 * med[k]:.1f}", C.spread([1000 * t for t in times[k]]),
             f"{med[k] / med['floor']:.3f}", f"{cpu[k] / cpu['floor']:.3f}", f"{first[k]:.2f}"]
            for k in fns]
    print(f"\n## {name}: {cfg['size'][0]}x{cfg['size'][1]}, {cfg['num_rois']} RoIs per image, batch {batch}, "
          f"median of {len(times['floor'])} interleaved runs (losses finite: {finite})")
    print(C.table(rows, ["what", "median ms", "min-max ms", "/ floor", "CPU time / floor", "first call s"]),
          flush=True)
    rpn = med[RPN]
    print(f"step / (floor + RPN head) {med['step'] / rpn:.3f} (CPU time "
          f"{cpu['step'] / cpu[RPN]:.3f}): what is not dense compute; the RPN head "
          f"alone adds {rpn / med['floor'] - 1:.3f} of the floor")
    print(f"step / (floor + RPN head, sequential) {med['step'] / med[SEQUENTIAL]:.3f} (CPU time "
          f"{cpu['step'] / cpu[SEQUENTIAL]:.3f}): the same, its fc gradient after the trunk")
    result = {"ratio": med["step"] / med["floor"], "cpu_ratio": cpu["step"] / cpu["floor"], "first": first["step"],
              "rpn_ratio": med["step"] / rpn, "sequential_ratio": med["step"] / med[SEQUENTIAL],
              "images_per_s": {batch: batch / med["step"]}, "rss": {}, "batch": batch}
    if ratios_only or batch != 1:   # the throughput table below covers batch 1, 2 and 4
        return result

    # Throughput: batch 1, 2, 4 interleaved, each traced first.
    data = {b: batch_data(b, cfg["size"], seed=b) for b in (1, 2, 4)}
    for b in (2, 4):
        first[f"batch {b}"] = C.first_call(lambda b=b: model.train_on_batch(*data[b], return_dict=True))
    tput = C.interleaved({b: (lambda b=b: model.train_on_batch(*data[b], return_dict=True)) for b in (1, 2, 4)},
                         steps, warmup=0)
    tmed = {b: C.median(v) for b, v in tput.items()}
    # Memory: one fresh process per batch size, so that each peak is its own.
    subs = {s["batch"]: s for s in run_children(name, (1,) if quick else (1, 2), quick)}
    trows = [[b, f"{1000 * tmed[b]:.1f}", f"{b / tmed[b]:.2f}", f"{tmed[1] * b / tmed[b]:.2f}",
              f"{first.get(f'batch {b}', first['step']):.1f}",
              f"{subs[b]['rss_mb']:.0f}" if b in subs else "-",
              f"{subs[b]['rss_built_mb']:.0f}" if b in subs else "-"] for b in (1, 2, 4)]
    print(f"\nthroughput: median of {len(tput[1])} interleaved steps per batch size; peak RSS: a "
          f"fresh process per batch size, build + 2 steps" + (" (quick: concurrently)" if quick else ""))
    print(C.table(trows, ["batch", "median ms / step", "images/s", "speed-up vs batch 1", "first step s",
                          "peak RSS MB", "RSS after build MB"]))
    result["images_per_s"] = {b: b / tmed[b] for b in (1, 2, 4)}
    result["rss"] = {b: s["rss_mb"] for b, s in subs.items()}
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="vgg16,small", help="comma-separated: vgg16, small")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs for the ratio (>= 5)")
    parser.add_argument("--throughput-repeats", type=int, default=1,
                        help="timed rounds of batch 1, 2, 4 steps for images/s (small: at least 10)")
    parser.add_argument("--ratios-only", action="store_true",
                        help="skip the subprocesses (images/s at batch 2, 4 and peak memory)")
    parser.add_argument("--batch", type=int, default=1,
                        help="batch size of the ratios (the goals are read at 1; the main job trains "
                             "at 4); other than 1, the ratios only")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: a shrunken vgg16 (128x160) and small, few repeats")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, batch = args.child.split(":")
        child(name, int(batch), args.quick)
        return
    print(C.machine_info())
    configs = training_configs(args.quick)
    results = {}
    names = args.configs.split(",")
    if args.quick:   # a smoke run: the vgg16 code path on tiny sizes is enough
        names, args.repeats, args.throughput_repeats = names[:1], 3, 1
    for name in names:
        small = name == "small" and not args.quick
        results[name] = run_config(name, configs[name], max(args.repeats, 20) if small else args.repeats,
                                   max(args.throughput_repeats, 10) if small else args.throughput_repeats,
                                   args.quick, args.ratios_only, args.batch)
    parts = []
    for name, r in results.items():
        goal = " (goal <= 1.25)" if name == "vgg16" and not args.quick and r["batch"] == 1 else ""
        at = f" at batch {r['batch']}" if r["batch"] != 1 else ""
        parts.append(f"{name}{' [quick]' if args.quick else ''}{at}: step/floor {r['ratio']:.2f}{goal} "
                     f"(CPU time {r['cpu_ratio']:.2f}), step/(floor + RPN head) {r['rpn_ratio']:.2f} "
                     f"(sequential {r['sequential_ratio']:.2f}), "
                     f"first call {r['first']:.1f} s, images/s b1/b2/b4 "
                     + "/".join(f"{r['images_per_s'].get(b, float('nan')):.2f}" for b in (1, 2, 4))
                     + ", peak RSS b1/b2 " + "/".join(f"{r['rss'].get(b, float('nan')):.0f}" for b in (1, 2))
                     + " MB")
    print("\nSUMMARY training: " + "; ".join(parts))


if __name__ == "__main__":
    main()
