"""GPU check anyone can run: does frcnn_lib train on this GPU with Keras' defaults, and how fast?

1. **Default compile trains.**  The ``shapes_cpu`` preset (the main job's model and data)
   built and compiled exactly as ``frcnn train`` does (``training.make_optimizer``,
   ``model.compile(optimizer=...)``: ``jit_compile="auto"``, which Keras resolves to XLA on
   a GPU), ``model.fit`` for ``--steps`` steps (default 300) of the real training pipeline.
   Checked: the resolved ``jit_compile``, every loss finite, and the mean loss of the last
   10 % of the steps below the first 10 % (``PASS`` / ``FAIL``).
2. **Speed.**  ``vgg16`` with the paper's settings at 600x1000 (batch 2, padded to
   608x1024 by the model's stride rule): images/s of ``train_on_batch`` and of
   ``predict_on_batch``, for each precision policy (``float32``, ``mixed_float16``,
   ``mixed_bfloat16``) with ``jit_compile`` True (XLA) and False; medians of
   ``--repeats`` calls after warm-up; first calls (tracing + XLA compilation) apart.
   A combination that fails is a row saying so; the script goes on.
3. **Exact NMS with TF32 on.**  TensorFlow runs float32 matmuls in TensorFloat-32 on Ampere
   and Hopper GPUs by default (a 10-bit mantissa); an NMS that moved coordinates through a
   matmul would round them (about 0.4 px at 800 px) and stop being greedy NMS.  With
   ``tf.config.experimental.enable_tensor_float_32_execution(True)``, the tiled
   ``padded_nms`` (eager on the GPU, and compiled with XLA), class-agnostic and class-wise,
   must return exactly the indices of a plain numpy greedy NMS on random photo-scale cases
   (18 cases of N = 1000; 3 of N = 300 with ``--smoke``).  On a CPU TF32 changes nothing.

Prints one table headed by the GPU's name, the date and the versions, and a last line
starting ``SUMMARY``.  Exit status 1 if the training check or the NMS check failed.

Run on a GPU machine:  ``python benchmarks/gpu_check.py`` (about 5-10 minutes: six vgg16
models are built and compiled; ``--precisions float32,mixed_float16`` to shorten).
Dry run on a CPU:      ``python benchmarks/gpu_check.py --smoke`` (tiny sizes, ~2 min; the
numbers mean nothing, it checks that every code path runs).
Part 3 alone:          ``python benchmarks/gpu_check.py --nms-only`` (a minute on a GPU).
"""
import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _gpu as G  # noqa: E402


def training_check(steps, smoke):
    """``fit`` of the shapes_cpu preset with Keras' default compile; returns a dict."""
    import keras

    from frcnn_lib import FasterRCNN, datasets
    from frcnn_lib.training import runs as training
    from frcnn_lib.training.presets import get_preset

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    preset = get_preset("shapes_cpu")
    batch = preset["train"]["batch_size"]
    data = datasets.load("shapes", num_images=max(steps * batch // 4, 8) if smoke else 2000)
    model = FasterRCNN(data.num_classes, **preset["model"])
    model.compile(optimizer=training.make_optimizer(dict(preset["train"], epochs=1), steps))
    requested = model.jit_compile  # "auto" resolved by Keras at compile time
    dataset = training.training_dataset(data, model, batch)
    losses = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: losses.append(float(logs["loss"])))
    t = time.perf_counter()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[record])
    seconds = time.perf_counter() - t
    k = max(1, steps // 10)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    finite = all(math.isfinite(v) for v in losses)
    return {"steps": len(losses), "jit_compile": requested, "first": first, "last": last,
            "finite": finite, "passed": finite and len(losses) == steps and last < first,
            "seconds": seconds, "images_per_s": steps * batch / seconds}


def _greedy_nms(boxes, scores, iou_threshold, max_output_size, labels=None):
    """Plain greedy NMS in numpy (descending score, ties to the lower index), float32 IoU one
    rounded operation at a time as ``frcnn_lib.boxes.iou`` states it; ``labels``: class-wise."""
    import numpy as np

    b = boxes.astype(np.float32)
    zero = np.float32(0)
    area = np.maximum(b[:, 2] - b[:, 0], zero) * np.maximum(b[:, 3] - b[:, 1], zero)
    iw = np.maximum(np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]), zero)
    ih = np.maximum(np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]), zero)
    inter = iw * ih
    union = area[:, None] + area[None, :] - inter
    over = np.where(union > 0, inter / np.where(union > 0, union, np.float32(1)), zero) > np.float32(iou_threshold)
    if labels is not None:
        over &= labels[:, None] == labels[None, :]
    gone = np.zeros(len(scores), bool)
    keep = []
    for i in np.lexsort((np.arange(len(scores)), -scores.astype(np.float64))):
        if not gone[i]:
            keep.append(int(i))
            if len(keep) == max_output_size:
                break
            gone |= over[i]
    return keep


def nms_tf32_check(smoke):
    """Tiled NMS == greedy NMS with TF32 forced on (part 3 of the module docstring)."""
    import numpy as np
    import tensorflow as tf

    from frcnn_lib.nms import padded_nms

    cases, n, d = (3, 300, 100) if smoke else (18, 1000, 300)
    before = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(True)
    try:
        rng = np.random.default_rng(27)
        compiled = tf.function(lambda b, s, l: padded_nms(b, s, 0.5, d, labels=l), jit_compile=True)
        checked = mismatches = 0
        for _ in range(cases):
            centres = rng.uniform(0, 800, (n // 8, 2))
            xy = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 12, (n, 2))
            wh = rng.uniform(20, 200, (n, 2))
            boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1).astype(np.float32)
            scores = rng.random(n).astype(np.float32)
            labels = rng.integers(1, 21, n).astype(np.int32)
            runs = {"plain": (padded_nms(boxes[None], scores[None], 0.5, d), None),
                    "class-wise": (padded_nms(boxes[None], scores[None], 0.5, d, labels=labels[None]), labels),
                    "class-wise XLA": (compiled(boxes[None], scores[None], labels[None]), labels)}
            for (indices, num), lab in runs.values():
                checked += 1
                mismatches += indices[0, :int(num[0])].numpy().tolist() != _greedy_nms(boxes, scores, 0.5, d, lab)
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(before)
    return {"checked": checked, "mismatches": mismatches, "passed": mismatches == 0, "n": n}


def _nms_line(smoke):
    """``(result, one line)`` of :func:`nms_tf32_check`; a crash is a FAIL line."""
    try:
        check = nms_tf32_check(smoke)
    except Exception as err:  # noqa: BLE001 -- reported like the training check
        return {"passed": False}, f"tiled NMS with TF32 on: FAILED to run: {G.short_error(err)}"
    return check, (f"tiled NMS with TF32 on == greedy NMS: {check['checked'] - check['mismatches']}"
                   f"/{check['checked']} runs (N = {check['n']}; plain, class-wise, class-wise under "
                   f"XLA): {'PASS' if check['passed'] else 'FAIL'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="shapes_cpu training steps (default 300)")
    parser.add_argument("--precisions", default="float32,mixed_float16,mixed_bfloat16")
    parser.add_argument("--xla", default="on,off", help="on, off or both (default on,off)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per measurement")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on any machine (CPU dry run)")
    parser.add_argument("--nms-only", action="store_true", help="only part 3, the NMS check with TF32 on")
    args = parser.parse_args()
    cfg = dict(G.SMOKE if args.smoke else G.FULL)
    if args.repeats:
        cfg["steps"] = args.repeats
    steps = min(args.steps, 20) if args.smoke else args.steps

    info = G.tf_versions()
    print(G.header(info["device"], info["versions"], args.smoke), flush=True)
    if args.nms_only:
        nms_check, nms_line = _nms_line(args.smoke)
        print(nms_line)
        print("SUMMARY gpu_check: NMS with TF32 " + ("PASS" if nms_check["passed"] else "FAIL")
              + (" [smoke]" if args.smoke else ""))
        return 0 if nms_check["passed"] else 1
    try:
        check = training_check(steps, args.smoke)
    except Exception as err:  # noqa: BLE001 -- reported, then the speed part still runs
        check = {"error": G.short_error(err), "passed": False}
    if "error" in check:
        check_line = f"shapes_cpu with Keras' default compile: FAILED to train: {check['error']}"
    else:
        check_line = (f"shapes_cpu with Keras' default compile (jit_compile resolved to "
                      f"{check['jit_compile']}): {check['steps']} steps in {check['seconds']:.0f} s "
                      f"({check['images_per_s']:.1f} images/s incl. tracing), loss {check['first']:.3f} "
                      f"-> {check['last']:.3f} (mean of first / last 10 %), finite {check['finite']}: "
                      f"{'PASS' if check['passed'] else 'FAIL'}")
    print(check_line, flush=True)
    nms_check, nms_line = _nms_line(args.smoke)
    print(nms_line, flush=True)

    xla = [{"on": True, "off": False}[x] for x in args.xla.split(",")]
    rows = G.frcnn_rows(args.precisions.split(","), xla, cfg)
    h, w = cfg["size"]
    print(f"\n## {G.header(info['device'], info['versions'], args.smoke)}")
    print(f"vgg16, paper settings, {h}x{w}, batch {cfg['batch']}, median of {cfg['steps']} calls "
          f"after {cfg['warmup']} warm-up (train_on_batch / predict_on_batch)")
    print(G.rate_table(rows))
    print(check_line)
    print(nms_line)
    best = max((r for r in rows if "error" not in r), key=lambda r: r["train_images_per_s"], default=None)
    summary = "SUMMARY gpu_check: training check " + ("PASS" if check["passed"] else "FAIL")
    summary += "; NMS with TF32 " + ("PASS" if nms_check["passed"] else "FAIL")
    if best:
        summary += (f"; fastest training {best['train_images_per_s']:.2f} images/s "
                    f"({best['precision']}, {best['compiler']})")
    failed = [f"{r['precision']}/{r['compiler']}" for r in rows if "error" in r]
    if failed:
        summary += f"; failed: {', '.join(failed)}"
    print(summary + (" [smoke]" if args.smoke else ""))
    return 0 if check["passed"] and nms_check["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
