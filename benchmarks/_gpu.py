"""Shared parts of the GPU scripts (gpu_check.py, gpu_vs_torchvision.py): the table header
(GPU, date, versions), timing of a frcnn_lib vgg16 train step and inference under one
precision policy and one XLA setting, and the table.

Importing this module imports neither TensorFlow nor PyTorch: the torchvision half of
gpu_vs_torchvision.py runs in an environment without TensorFlow.

Settings compared (the paper's, Ren et al. 2015 / frcnn_lib.model.DEFAULTS): VGG-16 to
conv5_3 (stride 16), anchors 128/256/512 x ratios 0.5/1/2 on that one map, RPN 3x3 conv of
512 channels, 12000 -> 2000 proposals (NMS 0.7) in training and 6000 -> 300 in inference,
256 anchors (half positive at most) and 128 RoIs (a quarter foreground at most) sampled per
image, RoI pooling 7x7, fc6/fc7 of 4096 with dropout 0.5, 20 classes + background, SGD
momentum 0.9 (the library's fused update, as ``frcnn train`` builds it) with weight decay 5e-4; images 600x1000 padded to 608x1024.
"""
import datetime
import json
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

NUM_CLASSES = 20
BOXES = [[60.0, 80.0, 300.0, 400.0], [400.0, 100.0, 700.0, 500.0], [650.0, 250.0, 950.0, 560.0]]

# --smoke: the same code paths on tiny sizes, so that a CPU can run them in a minute.
SMOKE = dict(size=(128, 160), batch=2, steps=2, warmup=1,
             frcnn=dict(roi_head_units=256, rpn_channels=64, rpn_pre_nms_top_n_train=600,
                        rpn_post_nms_top_n_train=100, rpn_pre_nms_top_n_test=300,
                        rpn_post_nms_top_n_test=50, roi_batch_size=32))
FULL = dict(size=(600, 1000), batch=2, steps=10, warmup=3, frcnn=dict())


def boxes_for(size):
    """The three ground-truth boxes scaled to an image of ``size = (h, w)``."""
    h, w = size
    return [[x1 * w / 1000, y1 * h / 600, x2 * w / 1000, y2 * h / 600] for x1, y1, x2, y2 in BOXES]


def median(values):
    return statistics.median(values)


def tf_versions():
    import keras
    import tensorflow as tf

    info = tf.sysconfig.get_build_info()
    gpus = tf.config.list_physical_devices("GPU")
    names = []
    for gpu in gpus:
        try:
            names.append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
        except Exception:  # noqa: BLE001 -- the name is informative only
            names.append(gpu.name)
    return {"device": ", ".join(names) if names else f"no GPU: CPU ({cpu_name()})",
            "versions": f"TensorFlow {tf.__version__}, Keras {keras.__version__}, CUDA "
                        f"{info.get('cuda_version', '-')}, cuDNN {info.get('cudnn_version', '-')}"}


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def header(device, versions, smoke):
    mode = "SMOKE RUN (tiny sizes, not a measurement)" if smoke else "full run"
    return (f"date {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC | device: {device} | "
            f"{versions} | Python {platform.python_version()} | {mode}")


def table(rows, headers):
    cols = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in cols[1:]])


def short_error(err):
    text = f"{type(err).__name__}: {err}".replace("\n", " ")
    return text[:160] + ("..." if len(text) > 160 else "")


def frcnn_rates(precision, xla, cfg):
    """images/s of a frcnn_lib vgg16 train step (``train_on_batch``) and of inference
    (``predict_on_batch``) at ``cfg["size"]``, under the Keras dtype policy ``precision``
    (``float32``, ``mixed_float16``, ``mixed_bfloat16``) and ``jit_compile=xla``.

    Returns a dict: train / infer images/s (median of ``cfg["steps"]`` calls after
    ``cfg["warmup"]``), first-call seconds, and the final loss (finite check)."""
    import keras
    import numpy as np

    from frcnn_lib import FasterRCNN
    from frcnn_lib.training.optimizers import FusedSGD

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(precision)
    try:
        keras.utils.set_random_seed(0)
        model = FasterRCNN(NUM_CLASSES, backbone="vgg16", image_min_side=cfg["size"][0],
                           image_max_side=cfg["size"][1], **cfg["frcnn"])
        model.build()  # weights exist before any step is traced (XLA cannot create them)
        model.compile(optimizer=FusedSGD(1e-3, momentum=0.9), jit_compile=xla)
        b, (h, w) = cfg["batch"], cfg["size"]
        rng = np.random.default_rng(0)
        images = rng.uniform(0, 255, (b, h, w, 3)).astype(np.float32)
        targets = {"boxes": np.array([boxes_for(cfg["size"])] * b, np.float32),
                   "labels": np.array([[1, 5, 12]] * b, np.int32)}
        out = {}
        for kind, call in (("train", lambda: model.train_on_batch(images, targets, return_dict=True)),
                           ("infer", lambda: model.predict_on_batch(images))):
            t = time.perf_counter()
            result = call()
            out[f"{kind}_first_s"] = time.perf_counter() - t
            for _ in range(cfg["warmup"] - 1):
                call()
            times = []
            for _ in range(cfg["steps"]):
                t = time.perf_counter()
                result = call()  # both return host values: the step has finished
                times.append(time.perf_counter() - t)
            out[f"{kind}_images_per_s"] = b / median(times)
            if kind == "train":
                out["loss"] = float(result["loss"])
        out["jit_compile"] = bool(model.jit_compile)
        return out
    finally:
        keras.mixed_precision.set_global_policy("float32")


def frcnn_rows(precisions, xla_settings, cfg, print_progress=True):
    """One result dict per (precision, XLA) for frcnn_lib; failures become rows too."""
    rows = []
    for precision in precisions:
        for xla in xla_settings:
            row = {"library": "frcnn_lib (Keras/TF)", "precision": precision, "compiler": "XLA" if xla else "none"}
            try:
                row.update(frcnn_rates(precision, xla, cfg))
            except Exception as err:  # noqa: BLE001 -- reported in the table
                row["error"] = short_error(err)
            rows.append(row)
            if print_progress:
                print("ROW " + json.dumps(row), flush=True)
    return rows


def rate_table(rows):
    headers = ["library", "precision", "compiler", "train images/s", "inference images/s",
               "first train step s", "first inference s", "note"]
    out = []
    for r in rows:
        if "error" in r:
            out.append([r["library"], r["precision"], r["compiler"], "-", "-", "-", "-", "FAILED: " + r["error"]])
            continue
        note = []
        if "loss" in r and not (r["loss"] == r["loss"] and abs(r["loss"]) < float("inf")):
            note.append("loss not finite!")
        out.append([r["library"], r["precision"], r["compiler"], f"{r['train_images_per_s']:.2f}",
                    f"{r['infer_images_per_s']:.2f}", f"{r['train_first_s']:.1f}",
                    f"{r['infer_first_s']:.1f}", "; ".join(note + r.get("notes", []))])
    return table(out, headers)
