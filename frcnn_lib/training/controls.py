"""Training controls: keep the best model by validation mAP, stop when it stalls, augment.

The settings live in a preset's ``train`` dict (defaults: ``presets.TRAIN_CONTROLS``) and
are read once into a frozen :class:`TrainingControls`.  ``runs.fit`` adds to the run folder::

    best.keras   the model (weights, optimizer, config) of the epoch with the highest
                 val_mAP so far; its state is also inside, as member ``frcnn_best.json``
    best.json    {"epoch": e, "step": s, "val_mAP": m}: e epochs completed, s optimizer steps

Both are written atomically (``checkpoints.atomic_write``), model first; a resumed run trusts
the state inside ``best.keras``, so a kill between the two renames cannot pair a model with
another epoch's mAP.

Why not ``keras.callbacks.ModelCheckpoint(save_best_only=True)`` and ``EarlyStopping``
(both read ``val_mAP`` from the logs when given ``mode="max"``; see evaluation/callback.py):

- ``ModelCheckpoint`` saves with ``model.save(filepath)`` straight onto the target, so a kill
  while saving leaves a torn ``best.keras``; and it writes no epoch, step or value beside it.
  (Its ``initial_value_threshold`` would carry the best value across a resume.)
- ``EarlyStopping`` resets ``wait`` and ``best`` in ``on_train_begin``.  ``fit`` calls
  ``model.fit`` once per stretch of a run (a resume within an epoch is two calls) and a
  resumed run is a new process, so its count would restart at every resume; carrying it over
  means writing to attributes Keras sets itself.  It also prints its notice on stdout, where
  the command line keeps results only.

:class:`EarlyStopOnMetric` instead replays the run's own ``history.csv`` (trimmed to the
resumed epoch by ``fit``), so a resumed run stops at the epoch an uninterrupted one would.
"""
import dataclasses
import json
import math
import os
import zipfile

import keras

from frcnn_lib.datasets.pipeline import check_augmentation
from frcnn_lib.runtime.errors import FrcnnError
from frcnn_lib.training import checkpoints
from frcnn_lib.training.presets import TRAIN_CONTROLS

BEST_MODEL = "best.keras"
BEST_STATE = "best.json"
BEST_MEMBER = "frcnn_best.json"


@dataclasses.dataclass(frozen=True)
class TrainingControls:
    """The training controls of a ``train`` dict, checked.

    Attributes:
      keep_best: ``None`` keeps ``best.keras`` whenever there is validation data, ``True``
        requires validation data, ``False`` never keeps it.
      early_stopping_patience: ``None`` (off) or ``p >= 1``: stop after ``p`` validations in
        a row without a val_mAP gain (a gain is any increase: min_delta 0).
      scale_jitter: ``None`` or ``(low, high)`` (``pipeline.jitter_scale``).
      photometric: strength ``0..1`` of ``pipeline.photometric_jitter`` (0 = off).
    """
    keep_best: bool | None = TRAIN_CONTROLS["keep_best"]
    early_stopping_patience: int | None = TRAIN_CONTROLS["early_stopping_patience"]
    scale_jitter: tuple | None = TRAIN_CONTROLS["scale_jitter"]
    photometric: float = TRAIN_CONTROLS["photometric"]

    def __post_init__(self):
        if self.keep_best not in (None, True, False):
            raise FrcnnError(f"keep_best: expected true, false or null (on with validation "
                             f"data), got {self.keep_best!r}")
        patience = self.early_stopping_patience
        if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int)
                                     or patience < 1):
            raise FrcnnError(f"early_stopping_patience: expected null (off) or an int >= 1, "
                             f"got {patience!r}")
        jitter, strength = check_augmentation(self.scale_jitter, self.photometric)
        object.__setattr__(self, "scale_jitter", jitter)
        object.__setattr__(self, "photometric", strength)

    @classmethod
    def from_train(cls, train):
        """The controls of a preset's ``train`` dict (or None); absent keys take the defaults."""
        train = train or {}
        return cls(**{key: train.get(key, default) for key, default in TRAIN_CONTROLS.items()})

    def settings(self):
        """The controls as a JSON-ready dict (what ``config.json`` records)."""
        out = dataclasses.asdict(self)
        out["scale_jitter"] = None if self.scale_jitter is None else list(self.scale_jitter)
        return out

    def keeps_best(self, has_validation):
        """Whether to keep ``best.keras``.  FrcnnError if ``keep_best`` or early stopping is
        asked for without validation data (both watch val_mAP)."""
        if not has_validation:
            for key, on in (("keep_best", self.keep_best),
                            ("early_stopping_patience", self.early_stopping_patience is not None)):
                if on:
                    raise FrcnnError(f"{key}: needs validation data (the val_mAP it watches); "
                                     f"give validation data or turn {key} off")
            return False
        return self.keep_best is not False


def read_best(out):
    """``{"epoch", "step", "val_mAP"}`` of ``out/best.keras`` (the copy inside the archive,
    else ``best.json``), or None if there is none."""
    model_path = os.path.join(out, BEST_MODEL)
    if not os.path.isfile(model_path):
        return None
    try:
        with zipfile.ZipFile(model_path) as archive:
            if BEST_MEMBER in archive.namelist():
                text, where = archive.read(BEST_MEMBER), f"{model_path}:{BEST_MEMBER}"
            else:
                where = os.path.join(out, BEST_STATE)
                with open(where, "rb") as f:
                    text = f.read()
        state = json.loads(text)
        return {"epoch": int(state["epoch"]), "step": int(state["step"]),
                "val_mAP": float(state["val_mAP"])}
    except zipfile.BadZipFile as err:
        raise FrcnnError(f"{model_path}: not a .keras archive ({err})") from err
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise FrcnnError(f"{where}: unreadable best-model state ({err})") from err


class KeepBest(keras.callbacks.Callback):
    """Write ``out/best.keras`` and ``out/best.json`` at each epoch end whose ``monitor``
    (default ``val_mAP``, put in the logs by ``MeanAveragePrecision``, which must come
    earlier in the callback list) is above the best so far.

    Args:
      out: the run folder.
      resume: if True the best so far is read from the folder (:func:`read_best`), so a
        resumed run replaces it only with a better model; if False a ``best.*`` left by an
        earlier run in the folder is removed.

    A non-finite value or non-finite weights never count.  ``self.saved`` lists the epochs
    (1-based) written by this callback.
    """

    def __init__(self, out, resume=False, monitor="val_mAP"):
        super().__init__()
        self.model_path = os.path.join(out, BEST_MODEL)
        self.state_path = os.path.join(out, BEST_STATE)
        self.monitor = monitor
        self.saved = []
        if resume:
            state = read_best(out)
            self.best = None if state is None else state["val_mAP"]
        else:
            self.best = None
            for path in (self.model_path, self.state_path):
                if os.path.exists(path):
                    os.remove(path)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        value = float(value)
        if self.best is not None and not value > self.best:
            return
        if not checkpoints._finite_weights(self.model):
            return
        state = {"epoch": epoch + 1, "step": int(self.model.optimizer.iterations.numpy()),
                 "val_mAP": value}

        def write_model(tmp):
            self.model.save(tmp)
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(BEST_MEMBER, json.dumps(state))
        checkpoints.atomic_write(self.model_path, write_model)

        def write_state(tmp):
            with open(tmp, "w") as f:
                json.dump(state, f)
        checkpoints.atomic_write(self.state_path, write_state)
        self.best = value
        self.saved.append(epoch + 1)


class EarlyStopOnMetric(keras.callbacks.Callback):
    """Stop training after ``patience`` validations in a row without a gain of ``monitor``
    (higher is better; any increase is a gain).

    Args:
      patience: int >= 1 (1: stop at the first validation without a gain).
      monitor: the logs key (``val_mAP``); epochs without it are not validations.
      history: ``[(epoch, value)]`` of the run's earlier validations (``epoch`` 1-based),
        replayed first so that a resumed run counts on.  NaN counts as no gain.

    Put it after ``AtomicCheckpoint`` (which skips saving once ``stop_training`` is set), so
    the stopping epoch is checkpointed.  After a stop, ``stopped_epoch`` (1-based),
    ``best``, ``best_epoch`` and ``reason`` (one line) say why.
    """

    def __init__(self, patience, monitor="val_mAP", history=()):
        super().__init__()
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise FrcnnError(f"early_stopping_patience: expected an int >= 1, got {patience!r}")
        self.patience = patience
        self.monitor = monitor
        self.best = None
        self.best_epoch = None
        self.wait = 0
        self.stopped_epoch = None
        self.reason = None
        for epoch, value in history:
            self._update(epoch, value)

    def _update(self, epoch, value):
        value = float(value)
        if math.isfinite(value) and (self.best is None or value > self.best):
            self.best, self.best_epoch, self.wait = value, epoch, 0
        else:
            self.wait += 1

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        self._update(epoch + 1, value)
        if self.wait >= self.patience:
            self.stopped_epoch = epoch + 1
            best = "none" if self.best is None else f"{self.best:.4f} after epoch {self.best_epoch}"
            self.reason = (f"early stopping: no {self.monitor} gain in the last {self.wait} "
                           f"validations (patience {self.patience}; best {best}); stopped "
                           f"after epoch {epoch + 1}")
            self.model.stop_training = True


def metric_history(path, monitor="val_mAP", epochs=None):
    """``[(epoch, value)]`` (``epoch`` 1-based) of ``monitor`` in a ``history.csv`` written by
    ``keras.callbacks.CSVLogger``, for its first ``epochs`` epochs (all if None).  Rows
    without a value (``NA`` or empty: not a validation) are left out; no file gives ``[]``."""
    import csv

    if not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        try:
            epoch = int(row["epoch"]) + 1
        except (KeyError, TypeError, ValueError):
            continue
        text = (row.get(monitor) or "").strip()
        if (epochs is not None and epoch > epochs) or text in ("", "NA"):
            continue
        try:
            out.append((epoch, float(text)))
        except ValueError:
            raise FrcnnError(f"{path}: epoch {epoch - 1}: {monitor} {text!r} is not a number") from None
    return out
