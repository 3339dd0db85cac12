"""Where the course keeps the detector it trains once and reuses.

Notebook 09 trains the `shapes_cpu` preset and saves it with `model.save(course_model_path(FAST))`;
notebooks 06, 08, 10, 11 and 12 load that file and train only when it is missing (and say so).
The path is resolved from the notebook's working directory up to the repository root (the first
folder above that holds both `pyproject.toml` and `notebooks/`), so it is the same file whether a
notebook runs from `notebooks/`, from the root, or under `make course`; outside a checkout (Colab)
it is `runs/course/` under the working directory.

Fast mode (CI) writes a separate file, so that an undertrained CI model is never taken for the
full-mode one.

Where a notebook gets the model (`course_model`), in order:

1. the local file `course_model_path(fast)`, when notebook 09 ran in this checkout or runtime;
2. the pinned download: the release asset recorded in `course_model.json` (next to this module;
   written by `notebooks/_tools/publish_course_model.py`), fetched by `keras.utils.get_file` with
   its sha256 into Keras' cache (`~/.keras/frcnn_course/`, or `$KERAS_HOME`) and never fetched
   again while the cached file matches. Fast mode downloads the same asset: the full model beats
   any fast stand-in;
3. when the download is unavailable (offline, HTTP error, sha256 mismatch): a stand-in, the
   `shapes_cpu` preset trained here for `STAND_IN_STEPS` steps (a few seconds in fast mode), with
   one printed line that says so and why. The stand-in is never saved, so it cannot be mistaken
   for the course model later.

Environment overrides (tests, mirrors): `FRCNN_COURSE_MODEL_URL` and `FRCNN_COURSE_MODEL_SHA256`
replace the pinned URL and sha256 (set both for another file); `FRCNN_COURSE_MODEL_URL=off`
skips the download. The download gives up after `DOWNLOAD_TIMEOUT_S` seconds without an answer,
so a notebook offline falls back within seconds.

Shapes: the model takes images `(B, 160, 160, 3)` float32 in 0..255 (the `shapes_cpu` preset).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

COURSE_DIR = Path("runs") / "course"
FULL_MODEL = "model.keras"
FAST_MODEL = "model_fast.keras"


def repository_root(start: str | Path | None = None) -> Path | None:
    """The checkout that holds `start` (default: the working directory), or None outside one."""
    start = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            return folder
    return None


def course_model_path(fast: bool = False, start: str | Path | None = None) -> Path:
    """Absolute path of the course's trained model: `<repo>/runs/course/model.keras`.

    fast: the fast-mode (CI) model, `model_fast.keras`, instead.
    start: folder to resolve from (default: the working directory).
    """
    root = repository_root(start)
    base = root if root is not None else Path(start if start is not None else Path.cwd()).resolve()
    return base / COURSE_DIR / (FAST_MODEL if fast else FULL_MODEL)


LEARNER_DIR = "learner"


def learner_parts_dir(start: str | Path | None = None) -> Path:
    """Folder where the course keeps the learner's promoted functions: `<repo>/runs/course/learner/`.

    `frcnn_lib.course.exercises.adopt` writes a passing exercise there (one `<part>.py` each), and
    notebook 09 promotes what it finds into its detector (`frcnn_lib.course.exercises.load_learner_parts`).
    """
    return course_model_path(False, start).parent / LEARNER_DIR


# --- the pinned download -------------------------------------------------------------------

RECORD_FILE = Path(__file__).with_name("course_model.json")   # written by publish_course_model.py
URL_ENV, SHA256_ENV = "FRCNN_COURSE_MODEL_URL", "FRCNN_COURSE_MODEL_SHA256"
CACHE_SUBDIR = "frcnn_course"           # under Keras' cache folder (~/.keras or $KERAS_HOME)
DOWNLOAD_TIMEOUT_S = 10                 # per connection attempt and per read: offline fails fast

# The stand-in when there is no model to load or download: the shapes_cpu preset, this many steps
# of 4 images. The stand-in's time below is estimated at 0.19 s a step: notebook 09's 8000 steps
# on a loaded 2-core CPU (1519 s, validation included, 2026-12-06); the same VM idle took 733 s
# that evening, so the estimate errs long, as it should for a slower Colab CPU.
STAND_IN_STEPS = 300
STAND_IN_STEPS_FAST = 10               # run eagerly: no graph to trace
SECONDS_PER_STEP_2_CORES = 0.19
TRACE_SECONDS_2_CORES = 20


def course_model_record() -> dict:
    """The pinned release asset: `{"url", "sha256", "size", "file", "repo", "ref"}`, with the
    environment overrides applied (`url` None when `FRCNN_COURSE_MODEL_URL=off`)."""
    record = json.loads(RECORD_FILE.read_text())
    url = os.environ.get(URL_ENV)
    if url:
        record["url"] = None if url.strip().lower() == "off" else url
    sha = os.environ.get(SHA256_ENV)
    if sha:
        record["sha256"] = sha.strip().lower()
    return record


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class DownloadUnavailable(Exception):
    """The pinned model could not be downloaded; the message says why, in one line."""


def _cache_dir(cache_dir: str | Path | None) -> Path:
    """`cache_dir`, else Keras' cache folder: `$KERAS_HOME`, else `~/.keras` (as get_file's)."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def download_course_model(cache_dir: str | Path | None = None, timeout: float | None = None) -> Path:
    """The pinned course model in Keras' cache: downloaded once, checked by sha256.

    Returns the cached file's path; a file already cached with the pinned sha256 is returned
    without any network request. Raises `DownloadUnavailable` (one line: offline, HTTP status,
    timeout, sha256 mismatch) otherwise; a file whose sha256 does not match is deleted.
    cache_dir: Keras' cache folder (default `~/.keras` or `$KERAS_HOME`); the file goes to its
    `frcnn_course/` subfolder.
    timeout: seconds without an answer before giving up (default `DOWNLOAD_TIMEOUT_S`).
    """
    import keras

    timeout = DOWNLOAD_TIMEOUT_S if timeout is None else timeout
    record = course_model_record()
    url, sha = record.get("url"), record.get("sha256")
    if not url:
        raise DownloadUnavailable(f"download switched off ({URL_ENV}=off)")
    if not sha:
        raise DownloadUnavailable(f"no sha256 pinned for {url} (set {SHA256_ENV})")
    folder = _cache_dir(cache_dir) / CACHE_SUBDIR
    target = folder / f"course_model-{sha[:12]}.keras"      # one file per pinned version
    if target.is_file() and sha256_of(target) == sha:
        return target
    try:
        # A short probe first: urlretrieve (inside get_file) has no timeout of its own.
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            pass
    except urllib.error.HTTPError as err:
        raise DownloadUnavailable(f"{url} answered HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadUnavailable(f"cannot reach {url} ({reason})") from None
    folder.mkdir(parents=True, exist_ok=True)   # get_file falls back to /tmp for a missing folder
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)       # for get_file's connection: a stalled read fails too
    chatty = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()   # no progress bar: course_model prints one line
    try:
        path = keras.utils.get_file(target.name, origin=url, file_hash=sha, hash_algorithm="sha256",
                                    cache_dir=str(folder.parent), cache_subdir=CACHE_SUBDIR)
    except Exception as err:   # get_file raises Exception / ValueError with the reason in the text
        target.unlink(missing_ok=True)       # never keep a partial or mismatched file
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "hash" in text.lower() or "corrupted" in text.lower():
            text = f"the file from {url} does not have the pinned sha256 {sha[:12]}..."
        raise DownloadUnavailable(text) from None
    finally:
        socket.setdefaulttimeout(previous)
        if chatty:
            keras.config.enable_interactive_logging()
    path = Path(path)
    if sha256_of(path) != sha:               # get_file checked it; never load an unchecked file
        path.unlink(missing_ok=True)
        raise DownloadUnavailable(f"the file from {url} does not have the pinned sha256 {sha[:12]}...")
    return path


def stand_in_minutes(steps: int = STAND_IN_STEPS) -> float:
    """Estimated minutes to train the stand-in for `steps` steps on a 2-core CPU."""
    return (TRACE_SECONDS_2_CORES + steps * SECONDS_PER_STEP_2_CORES) / 60


def train_stand_in(fast: bool = False, steps: int | None = None, seed: int = 0):
    """The `shapes_cpu` preset trained for `steps` steps (default `STAND_IN_STEPS`, or
    `STAND_IN_STEPS_FAST` eagerly in fast mode) on the shapes data: a weak but working detector."""
    import keras

    from frcnn_lib.datasets import shapes
    from frcnn_lib.model import FasterRCNN
    from frcnn_lib.training.presets import get_preset
    from frcnn_lib.training.runs import training_dataset

    steps = steps if steps is not None else (STAND_IN_STEPS_FAST if fast else STAND_IN_STEPS)
    data = shapes.load("train", num_images=40 if fast else 4 * steps)
    model = FasterRCNN(data.num_classes, **get_preset("shapes_cpu")["model"])
    model.compile(optimizer=keras.optimizers.Adam(1e-3, clipnorm=10.0), run_eagerly=fast)
    model.fit(training_dataset(data, model, 4, seed=seed), epochs=1, steps_per_epoch=steps,
              verbose=0, shuffle=False)
    return model


def course_model(fast: bool = False, train_stand_in=train_stand_in, start: str | Path | None = None,
                 cache_dir: str | Path | None = None, log=print):
    """The course's trained detector for a notebook: `(model, origin_line)`.

    The local file `course_model_path(fast)` if it exists; else the pinned download; else a
    stand-in from `train_stand_in(fast=fast)`, never saved. Prints `origin_line` (one line: where
    the model came from, or why the download is unavailable and what is trained instead).
    The model is loaded uncompiled (compile it to train it).
    """
    from frcnn_lib.training.checkpoints import load_model

    local = course_model_path(fast, start)
    if local.is_file():
        model = load_model(local, compile=False)
        line = f"loaded the course's model from {_shown(local)} (trained by notebook 09)"
    else:
        try:
            began = time.perf_counter()
            path = download_course_model(cache_dir)
            model = load_model(path, compile=False)
            line = (f"loaded the course's model from {course_model_record()['url']} (sha256 "
                    f"{sha256_of(path)[:12]}..., {path.stat().st_size / 1e6:.1f} MB, cached in "
                    f"{path.parent}; {time.perf_counter() - began:.0f} s)")
        except DownloadUnavailable as why:
            steps = STAND_IN_STEPS_FAST if fast else STAND_IN_STEPS
            took = "a few seconds" if fast else f"about {stand_in_minutes(steps):.0f} min"
            line = (f"{_shown(local)} is missing and the course's model cannot be downloaded ({why}): "
                    f"training a {steps}-step stand-in ({took} on a 2-core CPU; its detections are "
                    f"weaker than the course model's)")
            log(line)
            return train_stand_in(fast=fast), line
    log(line)
    return model, line


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is below it, else absolute."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)
