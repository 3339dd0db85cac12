"""Training and evaluation runs: what ``frcnn train``, ``frcnn evaluate`` and ``frcnn demo`` do.

A run folder (``out``) receives::

    config.json            the model config and training settings of the run
    history.csv            per-epoch losses (CSVLogger) and val_mAP
    best.keras, best.json  the model with the highest val_mAP so far (controls.py)
    tensorboard/           TensorBoard logs (losses, val_mAP), if tensorboard is installed
    checkpoints/           last.keras + state.json, written atomically (see checkpoints.py)
    model.keras            the final model

Plain functions over plain data: a preset dict and overrides in, a ``keras.Model`` and a
history out.
"""
import json
import math
import os
import sys
import time

import keras
import numpy as np

from frcnn_lib.training import checkpoints
from frcnn_lib.training.controls import EarlyStopOnMetric, KeepBest, TrainingControls, metric_history
from frcnn_lib.runtime import progress
from frcnn_lib.runtime.errors import FrcnnError
from frcnn_lib.evaluation import MeanAveragePrecision, evaluate_voc
from frcnn_lib.training.optimizers import FusedAdam, FusedSGD
from frcnn_lib.training.schedules import LinearWarmup


def make_optimizer(train, steps_per_epoch):
    """A Keras optimizer from the ``train`` settings of a preset (``adam`` or ``sgd``), with a
    ``cosine`` or ``step`` learning-rate schedule over the whole run, after a linear warmup
    of ``warmup_steps`` from ``warmup_factor * learning_rate`` if given.  Keras' update
    rules, each variable's update one fused kernel (``frcnn_lib.training.optimizers``)."""
    lr = float(train["learning_rate"])
    total = max(1, int(train["epochs"]) * int(steps_per_epoch))
    if train.get("schedule") == "cosine":
        schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=total, alpha=0.01)
    elif train.get("schedule") == "step":
        bounds = [int(e * steps_per_epoch) for e in train.get("step_epochs", ())]
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
            bounds, [lr * 0.1 ** i for i in range(len(bounds) + 1)]) if bounds else lr
    else:
        schedule = lr
    if train.get("warmup_steps"):
        schedule = LinearWarmup(schedule, train["warmup_steps"], train.get("warmup_factor", 0.001))
    name = train.get("optimizer", "adam")
    if name == "adam":
        return FusedAdam(schedule, clipnorm=train.get("clipnorm", 10.0))
    if name == "sgd":
        return FusedSGD(schedule, momentum=float(train.get("momentum", 0.9)),
                        clipnorm=train.get("clipnorm", 10.0))
    raise FrcnnError(f"optimizer={name!r}: expected 'adam' or 'sgd'")


def training_dataset(data, model, batch_size, seed=0, skip_batches=0, train=None):
    """The repeated, shuffled, flipped training ``tf.data.Dataset`` for ``model``'s image
    sizes, from its ``skip_batches``-th batch on (the stream is the same for a seed), with
    the scale jitter and photometric augmentation of the ``train`` settings (controls.py)."""
    from frcnn_lib.datasets.pipeline import make_dataset

    s = model.settings
    controls = TrainingControls.from_train(train)
    return make_dataset(data, batch_size, training=True, min_side=s["image_min_side"],
                        max_side=s["image_max_side"], shuffle=True, flip=True, seed=seed, repeat=True,
                        skip_batches=skip_batches, scale_jitter=controls.scale_jitter,
                        photometric=controls.photometric)


def resume_phases(resume_state, epochs, steps):
    """``[(initial_epoch, epochs, steps_per_epoch, batches to skip)]``: the ``model.fit`` calls
    of a run, one per continuous stretch.  A resume in the middle of epoch ``e`` first
    finishes that epoch's remaining steps, then goes on with whole epochs."""
    if not resume_state:
        return [(0, epochs, steps, 0)]
    epoch, step = int(resume_state["epoch"]), int(resume_state["step"])
    epoch_step = int(resume_state.get("epoch_step", 0))
    if step != epoch * steps + epoch_step or not 0 <= epoch_step < steps:
        raise FrcnnError(f"--resume: the checkpoint is at step {step} ({epoch} epochs + "
                         f"{epoch_step} steps) but this run has {steps} steps an epoch; resume "
                         f"with the run's own --batch-size and data")
    phases = []
    if epoch_step:
        phases.append((epoch, epoch + 1, steps - epoch_step, step))
        epoch, step = epoch + 1, step + steps - epoch_step
    if epoch < epochs:
        phases.append((epoch, epochs, steps, step))
    return phases


def fit(model, train_data, out, epochs, batch_size, train=None, val_data=None, resume_state=None,
        steps_per_epoch=None, verbose=1, extra_callbacks=(), checkpoint_every_steps=None,
        checkpoint_every_minutes=None, strategy=None, run_config=None):
    """Train ``model`` (compiled here unless it already is) and write the run folder.

    Args:
      model: a ``FasterRCNN``.  train_data / val_data: ``DetectionData``.
      out: the run folder.  epochs: the last epoch (``resume_state`` gives the first).
      train: the preset's training settings (optimizer, learning rate, schedule) and
        controls (``presets.TRAIN_CONTROLS``: keep_best, early_stopping_patience,
        scale_jitter, photometric; see ``controls.TrainingControls``).
      verbose: as ``keras.Model.fit``; 1 draws the live bar only on a terminal (see progress.py).
      checkpoint_every_steps / checkpoint_every_minutes: also checkpoint within epochs.
      resume_state: ``{"epoch", "step", "epoch_step"}`` of a checkpoint: training goes on
        from that exact step, with the data stream an uninterrupted run would have read.
      strategy: a ``tf.distribute`` strategy whose scope built ``model`` (and where it is
        compiled); across machines each worker reads its own shard
        (``frcnn_lib.training.distribute.training_input``).  Default: one device.
      run_config: more entries for ``config.json`` (``frcnn train`` records its command
        line there, which ``--resume`` reads); ``data`` / ``val_data`` given here replace the
        default summaries (name, image count, classes).

    With validation data, each epoch ends with val_mAP on it; ``keep_best`` then keeps the
    best model in ``out/best.keras`` (a resumed run knows the best so far), and
    ``early_stopping_patience`` ends the run after that many epochs without a gain.  Which
    model to deploy: ``best.keras``.  ``model.keras`` is the last epoch's model -- after an
    early stop, ``patience`` epochs past the best.

    Returns the ``keras.callbacks.History``, with ``stop_reason``: None, or the line (also
    printed on stderr) saying why early stopping ended the run.  Raises FrcnnError if the
    loss becomes non-finite (the last good checkpoint stays as it was).
    """
    controls = TrainingControls.from_train(train)
    has_validation = val_data is not None and len(val_data) > 0
    keep_best = controls.keeps_best(has_validation)       # FrcnnError if one lacks val data
    os.makedirs(out, exist_ok=True)
    steps = steps_per_epoch or max(1, math.ceil(len(train_data) / batch_size))
    # An uncompiled Keras 3 model has no ``optimizer`` attribute at all.
    if getattr(model, "optimizer", None) is None or not model.compiled:
        model.compile(optimizer=make_optimizer(train or {"learning_rate": 1e-3, "epochs": epochs},
                                               steps))
    initial_epoch = resume_state["epoch"] if resume_state else 0
    if resume_state:
        _trim_history(os.path.join(out, "history.csv"), initial_epoch)
    phases = resume_phases(resume_state, epochs, steps)
    if strategy is not None:
        from frcnn_lib.training import distribute
        if resume_state and int(resume_state.get("epoch_step", 0)):
            raise FrcnnError("--resume within an epoch with --strategy: not supported (each "
                             "worker reads its own shard); resume from a checkpoint at an epoch end")
        distribute.prepare_fit(model, strategy)
    stopper = checkpoints.StopOnNonFiniteLoss()
    callbacks = [stopper]
    if has_validation:
        callbacks.append(MeanAveragePrecision(val_data, class_names=train_data.class_names, name="val_mAP"))
    # Order matters: val_mAP first, then the best model and the checkpoint of the epoch, and
    # only then may early stopping set stop_training (AtomicCheckpoint skips once it is set).
    if keep_best:
        callbacks.append(KeepBest(out, resume=resume_state is not None))
    callbacks.append(checkpoints.AtomicCheckpoint(os.path.join(out, "checkpoints"), steps,
                                                  checkpoint_every_steps, checkpoint_every_minutes))
    early_stop = None
    if controls.early_stopping_patience is not None:
        early_stop = EarlyStopOnMetric(controls.early_stopping_patience, "val_mAP",
                                       metric_history(os.path.join(out, "history.csv"), "val_mAP",
                                                      initial_epoch) if resume_state else ())
        callbacks.append(early_stop)
    callbacks += [
        keras.callbacks.CSVLogger(os.path.join(out, "history.csv"), append=resume_state is not None),
        *extra_callbacks,
    ]
    if _tensorboard_available():
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(out, "tensorboard"), write_graph=False))
    config = {"model": model.get_config(),
              "train": None if train is None else {**train, **controls.settings()},
              "batch_size": batch_size, "epochs": epochs,
              "data": data_summary(train_data), "val_data": data_summary(val_data), **(run_config or {})}
    write_text(os.path.join(out, "config.json"), json.dumps(config, indent=2, default=str))
    # "Epoch k/N" with N the run's last epoch, also in the short first phase of a resume.
    progbar = RunProgbar(epochs)
    try:
        # FasterRCNN.fit turns an unreadable image (read on the host by the pipeline) or a
        # rejected batch into a one-line FrcnnError, the pipeline already freed.
        history = None
        for first, last, phase_steps, skip in phases:
            seed = int(model.settings["seed"])
            if strategy is None:
                dataset = training_dataset(train_data, model, batch_size, seed=seed, skip_batches=skip,
                                           train=train)
            else:  # from an epoch end: a fresh stream, seeded by the epoch
                dataset = distribute.training_input(strategy, train_data, model, batch_size,
                                                    seed + first, controls.scale_jitter,
                                                    controls.photometric)
            part = model.fit(dataset, epochs=last, initial_epoch=first, steps_per_epoch=phase_steps,
                             callbacks=[*callbacks, progbar],
                             verbose=progress.fit_verbosity(verbose),  # no escape codes in pipes
                             shuffle=False)  # the dataset shuffles itself
            if history is not None:
                for key, values in part.history.items():
                    history.history.setdefault(key, []).extend(values)
                history.epoch += part.epoch
            else:
                history = part
            if stopper.failure or model.stop_training:   # NaN, early stop or a callback's stop
                break
    except FrcnnError as err:
        failure = f"{err} (found while training; earlier checkpoints are intact)"
    else:
        failure = None
    if failure:
        raise FrcnnError(failure) from None
    if stopper.failure:
        last = os.path.join(out, "checkpoints", "last.keras")
        kept = f"the last good checkpoint {last} is intact" if os.path.exists(last) else \
            "no epoch had completed, so there is no checkpoint"
        raise FrcnnError(f"training stopped: {stopper.failure}; {kept}. Lower the learning rate "
                         f"or check the data for broken boxes.")
    checkpoints.atomic_write(os.path.join(out, "model.keras"), model.save)
    if history is not None:
        history.stop_reason = early_stop.reason if early_stop is not None else None
    if early_stop is not None and early_stop.reason:
        print(early_stop.reason, file=sys.stderr, flush=True)
    return history


class RunProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, its "Epoch k/N" counting to the run's ``epochs`` whatever the
    ``model.fit`` call (a mid-epoch resume first fits one epoch, then the rest)."""

    def __init__(self, epochs):
        super().__init__()
        self.run_epochs = int(epochs)

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.run_epochs


def data_summary(data):
    """What ``config.json`` records of a dataset: ``{"name", "images", "classes"}`` (``None``
    for no dataset)."""
    if data is None:
        return None
    return {"name": data.name, "images": len(data), "classes": list(data.class_names)}


def _trim_history(path, epochs):
    """Keep the header and the rows of the first ``epochs`` epochs of ``history.csv``: rows
    of epochs that did not end in a checkpoint (a NaN stop, a kill) are trained again."""
    if not os.path.isfile(path):
        return
    with open(path) as f:
        lines = f.read().splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:]
                        if line.split(",", 1)[0].strip().isdigit() and int(line.split(",", 1)[0]) < epochs]
    if kept != lines:
        write_text(path, "".join(kept))


def _tensorboard_available():
    """TensorBoard is optional (not a dependency of TensorFlow 2.21): without it,
    ``keras.callbacks.TensorBoard`` fails at the first logged scalar, so leave it out."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def detect_dataset(model, data, batch_size=8, progress=True):
    """``model.detect`` over every image of ``data``: a list of per-image dicts."""
    from frcnn_lib.runtime.progress import progress_bar

    detections = []
    for start in progress_bar(range(0, len(data), batch_size), "detect", enabled=progress):
        images = [data.read_image(i) for i in range(start, min(start + batch_size, len(data)))]
        detections.extend(model.detect(images, batch_size=batch_size))
    return detections


def evaluate(model, data, use_07_metric=True, iou_threshold=0.5, batch_size=8, progress=True):
    """VOC mAP of ``model`` on ``data``: ``(metrics dict, detections, seconds per image)``."""
    start = time.perf_counter()
    detections = detect_dataset(model, data, batch_size, progress)
    seconds = (time.perf_counter() - start) / max(1, len(data))
    metrics = evaluate_voc(detections, data.ground_truths(), data.num_classes, iou_threshold, use_07_metric)
    return metrics, detections, seconds


def class_ap_table(metrics, class_names):
    """``[(class name, AP)]`` in label order."""
    return [(name, float(metrics["AP"].get(k, float("nan")))) for k, name in enumerate(class_names, 1)]


def write_json(path, payload):
    def default(value):
        if isinstance(value, (np.floating, np.integer)):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
        return str(value)
    write_text(path, json.dumps(payload, indent=2, default=default))


def write_text(path, text):
    """Write ``text`` to ``path`` atomically (see ``checkpoints.atomic_write``)."""
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
    checkpoints.atomic_write(path, write)
