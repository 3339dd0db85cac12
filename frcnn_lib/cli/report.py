"""The main job (``make demo`` / ``frcnn demo``): train on shapes, evaluate, write a report.

Writes into the run folder, besides what ``training.fit`` writes: ``metrics.json``,
``loss_curves.png``, ``detections.png`` (held-out test images, detections solid, ground
truth dashed) and ``report.md`` that ties them together.
"""
import dataclasses
import os
import platform
import time

import keras
import numpy as np

from frcnn_lib.training import runs as training
from frcnn_lib.datasets.classes import data_classes
from frcnn_lib.datasets import shapes
from frcnn_lib.evaluation import evaluate_voc
from frcnn_lib.model import FasterRCNN
from frcnn_lib.training.precision import policy_scope, precision_of
from frcnn_lib.training.presets import SHAPES_PRESETS, get_preset
from frcnn_lib.runtime.errors import FrcnnError
from frcnn_lib.runtime.progress import stage
from frcnn_lib.evaluation.visualize import detection_grid, plot_history


class StepTimes(keras.callbacks.Callback):
    """The wall time of every training step (``on_train_batch_begin`` to ``_end``), in seconds.

    The first step includes tracing the step function; ``median`` is the typical step."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)

    @property
    def median(self):
        return float(np.median(self.seconds)) if self.seconds else float("nan")


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """What one run of the main job varies; ``None`` keeps the preset's value.

    ``preset``: a preset of ``training/presets.py`` on the shapes data (:data:`SHAPES_PRESETS`):
    ``shapes_224``, the main job's recipe, or ``shapes_cpu``, the course's detector.

    ``seed`` seeds the weights' initialisation, the data order and the target sampling: one
    seed, one run (the shapes images themselves are the canonical ones whatever the seed).
    ``precision``: a dtype policy of ``frcnn_lib.training.precision`` for the model (None:
    float32, or whatever global policy the caller set).
    ``model_overrides`` / ``train_overrides``: keys of the preset's ``model`` dict (FasterRCNN
    arguments) and ``train`` dict to replace (``benchmarks/bench_demo.py --set`` tries the
    recipe's levers this way); recorded in ``metrics.json``."""
    out: str = "runs/demo"
    preset: str = "shapes_224"
    epochs: int | None = None
    train_images: int | None = None
    test_images: int | None = None
    seed: int = 0
    precision: str | None = None
    model_overrides: dict = dataclasses.field(default_factory=dict)
    train_overrides: dict = dataclasses.field(default_factory=dict)


def run_demo(settings=DemoSettings(), verbose=1, announce=print, extra_callbacks=()):
    """Train ``settings.preset`` and report VOC mAP@0.5 on the held-out test split.

    ``settings``: a :class:`DemoSettings`.  ``announce`` prints the one-line result (the
    command line passes its stdout writer; progress goes to ``print``).  ``extra_callbacks``
    go to ``training.fit`` (``benchmarks/bench_demo.py`` passes one that evaluates the test
    split during training).  Returns the metrics written to ``OUT/metrics.json``."""
    out, seed, precision = settings.out, int(settings.seed), settings.precision
    if settings.preset not in SHAPES_PRESETS:
        raise FrcnnError(f"preset {settings.preset!r}: the demo trains on the shapes data; "
                         f"expected one of {', '.join(SHAPES_PRESETS)}")
    preset = get_preset(settings.preset)
    preset["model"].update(settings.model_overrides)
    train = {**preset["train"], **settings.train_overrides}
    for key in ("epochs", "train_images", "test_images"):
        if getattr(settings, key) is not None:
            train[key] = getattr(settings, key)
    t0 = time.perf_counter()
    stage("generating the shapes data (train, val, test)", verbose > 0)
    train_data = shapes.load("train", num_images=train["train_images"])
    val_data = shapes.load("val", num_images=train["val_images"])
    test_data = shapes.load("test", num_images=train["test_images"])
    keras.utils.set_random_seed(seed)
    with policy_scope(precision):
        model = FasterRCNN(train_data.num_classes, **data_classes(train_data),
                           **{**preset["model"], "seed": seed})
    t1 = time.perf_counter()
    stage(f"training {train['epochs']} epochs on {len(train_data)} images "
          f"(val_mAP on {len(val_data)} after each)", verbose > 0)
    step_times = StepTimes()
    history = training.fit(model, train_data, out, train["epochs"], train["batch_size"], train,
                           val_data=val_data, verbose=verbose,
                           extra_callbacks=(step_times, *extra_callbacks))
    t2 = time.perf_counter()
    stage(f"evaluating on {len(test_data)} held-out test images", verbose > 0)
    voc07, detections, sec_per_image = training.evaluate(model, test_data, use_07_metric=True,
                                                         progress=verbose > 0)
    voc2010 = evaluate_voc(detections, test_data.ground_truths(), test_data.num_classes, 0.5, False)
    t3 = time.perf_counter()

    stage("writing the report", verbose > 0)
    plot_history(history.history, os.path.join(out, "loss_curves.png"))
    shown = list(range(min(12, len(test_data))))
    detection_grid([test_data.read_image(i) for i in shown], [detections[i] for i in shown],
                   [test_data.ground_truths()[i] for i in shown], test_data.class_names,
                   os.path.join(out, "detections.png"))
    metrics = {
        "mAP_voc07": voc07["mAP"], "mAP_voc2010": voc2010["mAP"],
        "AP_voc07": dict(training.class_ap_table(voc07, test_data.class_names)),
        "seconds": {"data": t1 - t0, "train": t2 - t1, "evaluate": t3 - t2, "total": t3 - t0},
        "steps": len(step_times.seconds), "median_step_seconds": step_times.median,
        "eval_seconds_per_image": sec_per_image,
        "preset": settings.preset, "backbone": preset["model"]["backbone"],
        "image_side": int(preset["model"]["image_min_side"]),
        "epochs": train["epochs"], "seed": seed,
        "train_images": len(train_data), "test_images": len(test_data),
        "overrides": {"model": dict(settings.model_overrides), "train": dict(settings.train_overrides)},
        "precision": precision_of(model),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}",
    }
    training.write_json(os.path.join(out, "metrics.json"), metrics)
    _write_markdown(os.path.join(out, "report.md"), metrics, history.history)
    announce(f"mAP@0.5 VOC07 = {voc07['mAP']:.3f}, VOC2010+ = {voc2010['mAP']:.3f}; "
             f"training {t2 - t1:.0f} s ({len(step_times.seconds)} steps, median "
             f"{1000 * step_times.median:.0f} ms a step), total {t3 - t0:.0f} s; "
             f"report: {os.path.join(out, 'report.md')}")
    return metrics


def _write_markdown(path, metrics, history):
    rows = "\n".join(f"| {name} | {ap:.3f} |" for name, ap in metrics["AP_voc07"].items())
    s = metrics["seconds"]
    last = {k: v[-1] for k, v in history.items()}
    losses = ", ".join(f"{k} {v:.3f}" for k, v in last.items() if not k.startswith("val_"))
    changed = ", ".join(f"{k}={v!r}" for part in ("model", "train")
                        for k, v in metrics["overrides"][part].items())
    text = f"""# frcnn demo: Faster R-CNN on the shapes data

Trained the `{metrics['preset']}` preset{f" with {changed}" if changed else ""} (`{metrics['backbone']}` backbone, {metrics['image_side']} px images, {metrics['precision']}) for {metrics['epochs']} epochs on
{metrics['train_images']} generated images; evaluated on {metrics['test_images']} held-out test images.

| metric | value |
|---|---|
| mAP@0.5, VOC07 11-point | **{metrics['mAP_voc07']:.3f}** |
| mAP@0.5, VOC2010+ area | {metrics['mAP_voc2010']:.3f} |
| training time | {s['train']:.0f} s ({metrics['steps']} steps, median {1000 * metrics['median_step_seconds']:.0f} ms a step) |
| total time (data, training, evaluation) | {s['total']:.0f} s |
| detection time per test image | {1000 * metrics['eval_seconds_per_image']:.1f} ms |

Machine: {metrics['machine']}.  Final epoch losses: {losses}.

## AP per class (VOC07, IoU 0.5)

| class | AP |
|---|---|
{rows}

## Loss curves

![loss curves](loss_curves.png)

## Detections on held-out images

Solid boxes: detections with score >= 0.5 (class, score).  Dashed white: ground truth.

![detections](detections.png)
"""
    training.write_text(path, text)
