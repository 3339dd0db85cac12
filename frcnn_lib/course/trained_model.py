"""Where the course keeps the detector it trains once and reuses.

Notebook 09 trains the `shapes_cpu` preset and saves it with `model.save(course_model_path(FAST))`;
notebooks 06, 08, 10, 11 and 12 load that file and train only when it is missing (and say so).
The path is resolved from the notebook's working directory up to the repository root (the first
folder above that holds both `pyproject.toml` and `notebooks/`), so it is the same file whether a
notebook runs from `notebooks/`, from the root, or under `make course`; outside a checkout (Colab)
it is `runs/course/` under the working directory.

Fast mode (CI) writes a separate file, so that an undertrained CI model is never taken for the
full-mode one.
"""

from __future__ import annotations

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
