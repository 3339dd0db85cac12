"""Checkpoints that survive crashes: written atomically, resumable, never saved from NaNs.

A run folder holds ``checkpoints/last.keras`` (weights, optimizer state, config) and
``checkpoints/state.json`` (``{"epoch": e, "step": s, "epoch_step": j}``: ``e`` epochs
completed, ``s`` optimizer steps in all, ``j`` of them into epoch ``e``).  A checkpoint is
written at the end of each epoch and, if asked, every N steps and/or M minutes within one
(``j > 0``), so that a kill loses at most that interval; resuming continues from the exact
step with the same data order (``datasets/resume.py``).  Each is
written to a temporary file in the same folder, flushed to disk, then renamed over the old
one (``os.replace`` is atomic on POSIX and Windows), so a kill at any instant leaves the
previous complete checkpoint or the new one, never a torn file.  The state is also stored
inside ``last.keras`` (member ``frcnn_state.json``) and that copy is the one resuming
trusts, so a kill between the two renames cannot pair new weights with an old epoch.
Temporary files left by a kill are removed when training starts again.

:class:`CheckpointOnSignal` turns SIGINT (Ctrl-C) and SIGTERM (``kill``, a scheduler's
pre-emption) into a checkpoint at the end of the step in progress, then raises
:class:`TrainingInterrupted`; ``frcnn train`` exits 130 / 143 with one line, and
``--resume`` continues from that step.
"""
import glob
import json
import math
import os
import signal
import tempfile
import threading
import time
import zipfile

import keras
import numpy as np

from frcnn_lib.runtime.errors import FrcnnError


def atomic_write(path, write):
    """Call ``write(tmp_path)`` then rename ``tmp_path`` over ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX, suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give it the permissions of an ordinary new file.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


TMP_PREFIX = ".tmp-"
STATE_MEMBER = "frcnn_state.json"


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder):
    """Delete the temporary files that a killed :func:`atomic_write` left in ``folder``."""
    for path in glob.glob(os.path.join(glob.escape(folder), TMP_PREFIX + "*")):
        try:
            os.remove(path)
        except OSError:
            pass


def _finite_weights(model):
    return all(np.all(np.isfinite(w)) for w in model.get_weights())


class AtomicCheckpoint(keras.callbacks.Callback):
    """Save ``last.keras`` and ``state.json`` at the end of each epoch, and every
    ``every_steps`` optimizer steps and/or ``every_minutes`` minutes within one, whenever
    the loss and weights are finite.

    ``steps_per_epoch`` (needed for the in-epoch checkpoints) gives ``epoch_step``.
    """

    def __init__(self, folder, steps_per_epoch=None, every_steps=None, every_minutes=None):
        super().__init__()
        self.folder = folder
        self.model_path = os.path.join(folder, "last.keras")
        self.state_path = os.path.join(folder, "state.json")
        if (every_steps or every_minutes) and not steps_per_epoch:
            raise FrcnnError("AtomicCheckpoint: every_steps / every_minutes need steps_per_epoch")
        self.steps_per_epoch = steps_per_epoch
        self.every_steps = every_steps
        self.every_seconds = None if every_minutes is None else 60.0 * float(every_minutes)
        self._last_save = time.monotonic()

    def on_train_begin(self, logs=None):
        remove_stale_temporaries(self.folder)
        self._last_save = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if not (self.every_steps or self.every_seconds):
            return
        step = int(self.model.optimizer.iterations.numpy())
        due = (self.every_steps and step % self.every_steps == 0) or \
            (self.every_seconds and time.monotonic() - self._last_save >= self.every_seconds)
        epoch, epoch_step = divmod(step, self.steps_per_epoch)
        if due and epoch_step:           # at an epoch's last step, on_epoch_end saves
            self._save(epoch, step, epoch_step, (logs or {}).get("loss", 0.0))

    def on_epoch_end(self, epoch, logs=None):
        self._save(epoch + 1, int(self.model.optimizer.iterations.numpy()), 0,
                   (logs or {}).get("loss", 0.0))

    def _save(self, epoch, step, epoch_step, loss):
        """Write the checkpoint; returns its state, or ``None`` if it was not written
        (training stopping, or a non-finite loss or weight)."""
        if self.model.stop_training or not math.isfinite(float(loss)) or not _finite_weights(self.model):
            return None
        state = {"epoch": epoch, "step": step, "epoch_step": epoch_step}
        self._last_save = time.monotonic()

        def write_model(tmp):
            self.model.save(tmp)
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(STATE_MEMBER, json.dumps(state))
        atomic_write(self.model_path, write_model)

        def write_state(tmp):
            with open(tmp, "w") as f:
                json.dump(state, f)
        atomic_write(self.state_path, write_state)
        return state


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by a signal after :class:`CheckpointOnSignal` saved a checkpoint.

    Attributes: ``signum`` (``signal.SIGINT`` or ``signal.SIGTERM``), ``state`` (the
    ``{"epoch", "step", "epoch_step"}`` saved, or ``None`` when no checkpoint could be written:
    non-finite weights), ``folder`` (the checkpoint folder).  A ``KeyboardInterrupt``, so that
    code that stops on Ctrl-C stops on it too.
    """

    def __init__(self, signum, state, folder):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.state, self.folder = int(signum), state, folder

    @property
    def exit_code(self):
        """The shell's convention: ``128 + signal number`` (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


class CheckpointOnSignal(keras.callbacks.Callback):
    """On SIGINT or SIGTERM during ``fit``: finish the step in progress, write the resumable
    checkpoint (``last.keras`` + ``state.json``, as :class:`AtomicCheckpoint`) and raise
    :class:`TrainingInterrupted`.  A signal at an epoch's last step waits for the epoch's
    end, so that its history row and end-of-epoch checkpoint (callbacks placed before this
    one) are written first.  A second signal stops at once (``KeyboardInterrupt``, no
    checkpoint).  The handlers are installed from ``on_train_begin`` to ``on_train_end``,
    in the main thread only (Python's rule for signal handlers).

    ``steps_per_epoch``: the optimizer steps of one epoch (gives ``epoch_step``).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, folder, steps_per_epoch):
        super().__init__()
        self.folder = folder
        self.steps_per_epoch = int(steps_per_epoch)
        self.received = None
        self._previous = {}
        self._writer = AtomicCheckpoint(folder)

    def _handle(self, signum, frame):
        if self.received is not None:       # the second signal: stop now
            self._restore()
            raise KeyboardInterrupt
        self.received = signum              # acted on at the end of the step in progress

    def on_train_begin(self, logs=None):
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def on_train_end(self, logs=None):
        self._restore()

    def _restore(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_batch_end(self, batch, logs=None):
        if self.received is None:
            return
        step = int(self.model.optimizer.iterations.numpy())
        epoch, epoch_step = divmod(step, self.steps_per_epoch)
        if epoch_step == 0:                 # the epoch's last step: on_epoch_end saves
            return
        self._writer.set_model(self.model)
        saved = self._writer._save(epoch, step, epoch_step, (logs or {}).get("loss", 0.0))
        self._stop(saved)

    def on_epoch_end(self, epoch, logs=None):
        if self.received is not None:       # AtomicCheckpoint (earlier in the list) has saved
            step = int(self.model.optimizer.iterations.numpy())
            saved = os.path.isfile(os.path.join(self.folder, "state.json")) and \
                _read_json(os.path.join(self.folder, "state.json")).get("step") == step
            self._stop({"epoch": epoch + 1, "step": step, "epoch_step": 0} if saved else None)

    def _stop(self, state):
        signum = self.received
        self._restore()
        raise TrainingInterrupted(signum, state, self.folder)


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop training at the first batch whose loss is NaN or infinite, and remember where."""

    def __init__(self):
        super().__init__()
        self.failure = None

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss) and self.failure is None:
            self.failure = (f"the training loss became {loss} at step "
                            f"{int(self.model.optimizer.iterations.numpy())} (batch {batch})")
            self.model.stop_training = True


def load_checkpoint(folder):
    """``(model, state)`` from a run's checkpoint folder, loaded in Keras' safe mode."""
    model_path = os.path.join(folder, "last.keras")
    state_path = os.path.join(folder, "state.json")
    if not (os.path.isfile(model_path) and os.path.isfile(state_path)):
        raise FrcnnError(f"{folder}: no checkpoint to resume from (expected last.keras and "
                         f"state.json there; they are written at the end of each epoch)")
    try:
        with zipfile.ZipFile(model_path) as archive:
            inside = STATE_MEMBER in archive.namelist()
            text = archive.read(STATE_MEMBER) if inside else None
        where = f"{model_path}:{STATE_MEMBER}" if inside else state_path
        if not inside:  # written by an older version
            with open(state_path, "rb") as f:
                text = f.read()
        state = json.loads(text)
        epoch, step = int(state["epoch"]), int(state["step"])
        epoch_step = int(state.get("epoch_step", 0))    # absent in end-of-epoch-only versions
    except zipfile.BadZipFile as err:
        raise FrcnnError(f"{model_path}: not a .keras archive ({err})") from err
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise FrcnnError(f"{where}: unreadable checkpoint state ({err})") from err
    model = load_model(model_path)
    optimizer = getattr(model, "optimizer", None)
    restored = int(optimizer.iterations.numpy()) if optimizer is not None else None
    if restored != step:
        raise FrcnnError(f"{model_path}: the optimizer state was not restored (iterations "
                         f"{restored}, expected {step}); cannot resume this run exactly")
    return model, {"epoch": epoch, "step": step, "epoch_step": epoch_step}


def load_model(path, compile=True):
    """``keras.models.load_model`` in safe mode, with a FrcnnError naming the file on failure."""
    import frcnn_lib.model  # noqa: F401  (registers FasterRCNN with Keras' serialisation)
    from frcnn_lib.training import optimizers, schedules  # noqa: F401  (and the optimizers)

    if not os.path.isfile(path):
        raise FrcnnError(f"{path}: no such model file (expected a .keras file written by "
                         f"FasterRCNN.save or 'frcnn train')")
    _check_model_archive(path)
    try:
        return keras.models.load_model(path, compile=compile, safe_mode=True)
    except Exception as err:
        # Keras says "File not found" for any file it cannot open as a zip; the checks above
        # have named those cases already, so never repeat its wording.
        detail = str(err).replace("File not found: ", "")
        raise FrcnnError(f"{path}: could not load the model ({type(err).__name__}: {detail})") from None


def _check_model_archive(path):
    """FrcnnError saying what is wrong with ``path`` if it is not a readable archive of a
    FasterRCNN: not a zip, a truncated zip, a damaged member, no or bad ``config.json``, or
    another model class."""
    expected = "expected a .keras file written by FasterRCNN.save or 'frcnn train'"
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(4)
        if head.startswith(b"PK"):
            raise FrcnnError(f"{path}: truncated or damaged .keras file (it starts as a zip "
                             f"archive, but its end is missing: a copy or download cut short?)")
        what = "empty" if not head else "not a zip archive"
        raise FrcnnError(f"{path}: not a .keras model file ({what}); {expected}")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
            if damaged is not None:
                raise FrcnnError(f"{path}: damaged .keras file (member {damaged} fails its checksum)")
            if "config.json" not in archive.namelist():
                raise FrcnnError(f"{path}: a zip archive but not a Keras model (no config.json "
                                 f"inside); {expected}")
            config = json.loads(archive.read("config.json"))
    except FrcnnError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise FrcnnError(f"{path}: damaged .keras file ({err})") from None
    except ValueError as err:  # json.JSONDecodeError, UnicodeDecodeError
        raise FrcnnError(f"{path}: damaged .keras file (config.json is not valid JSON: {err})") from None
    name = config.get("class_name") if isinstance(config, dict) else None
    if name != "FasterRCNN":
        lambda_note = (" with a Lambda layer (Python code, refused by safe mode)"
                       if '"Lambda"' in json.dumps(config) else "")
        raise FrcnnError(f"{path}: not a frcnn model: it holds a Keras {name or 'object'!s}"
                         f"{lambda_note}; {expected}")
