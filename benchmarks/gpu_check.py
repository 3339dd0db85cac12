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

Prints one table headed by the GPU's name, the date and the versions, and a last line
starting ``SUMMARY``.  Exit status 1 if the training check failed.

Run on a GPU machine:  ``python benchmarks/gpu_check.py`` (about 5-10 minutes: six vgg16
models are built and compiled; ``--precisions float32,mixed_float16`` to shorten).
Dry run on a CPU:      ``python benchmarks/gpu_check.py --smoke`` (tiny sizes, ~2 min; the
numbers mean nothing, it checks that every code path runs).
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

    from frcnn_lib import FasterRCNN, datasets, training
    from frcnn_lib.presets import get_preset

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="shapes_cpu training steps (default 300)")
    parser.add_argument("--precisions", default="float32,mixed_float16,mixed_bfloat16")
    parser.add_argument("--xla", default="on,off", help="on, off or both (default on,off)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per measurement")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on any machine (CPU dry run)")
    args = parser.parse_args()
    cfg = dict(G.SMOKE if args.smoke else G.FULL)
    if args.repeats:
        cfg["steps"] = args.repeats
    steps = min(args.steps, 20) if args.smoke else args.steps

    info = G.tf_versions()
    print(G.header(info["device"], info["versions"], args.smoke), flush=True)
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

    xla = [{"on": True, "off": False}[x] for x in args.xla.split(",")]
    rows = G.frcnn_rows(args.precisions.split(","), xla, cfg)
    h, w = cfg["size"]
    print(f"\n## {G.header(info['device'], info['versions'], args.smoke)}")
    print(f"vgg16, paper settings, {h}x{w}, batch {cfg['batch']}, median of {cfg['steps']} calls "
          f"after {cfg['warmup']} warm-up (train_on_batch / predict_on_batch)")
    print(G.rate_table(rows))
    print(check_line)
    best = max((r for r in rows if "error" not in r), key=lambda r: r["train_images_per_s"], default=None)
    summary = "SUMMARY gpu_check: training check " + ("PASS" if check["passed"] else "FAIL")
    if best:
        summary += (f"; fastest training {best['train_images_per_s']:.2f} images/s "
                    f"({best['precision']}, {best['compiler']})")
    failed = [f"{r['precision']}/{r['compiler']}" for r in rows if "error" in r]
    if failed:
        summary += f"; failed: {', '.join(failed)}"
    print(summary + (" [smoke]" if args.smoke else ""))
    return 0 if check["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
