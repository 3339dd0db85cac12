"""The course's first code cell: ONE source, copied into every notebook.

On Colab the library is not installed yet, so the install logic has to live in the cell itself;
to keep it in one place, the cell's text is `SETUP_CELL` below and this script writes it into the
first code cell of every `notebooks/NN_*.ipynb`:

    python notebooks/_tools/setup_cell.py          # after changing COURSE_REPO / COURSE_REF here
    python notebooks/_tools/setup_cell.py --check  # exit 1 if a notebook's cell differs (a test runs this)

To publish a new version of the course: set COURSE_REF to the new tag and run this script; train
the course model (`make course`, full mode) and pin it with
`python notebooks/_tools/publish_course_model.py --dry-run` (writes
frcnn_lib/course/course_model.json: the release asset's URL under COURSE_REF and its sha256);
commit; tag the commit (`git tag v0.3.0`) and push the tag; create the release
(`gh release create v0.3.0`) and upload the model to it
(`python notebooks/_tools/publish_course_model.py`, which runs `gh release upload`). Notebooks
06, 08, 10, 11 and 12 download that asset on Colab and Binder (docs/course.md). The cell installs the library only (no JupyterLab or ipywidgets:
Colab brings its own Jupyter and widgets), pinned to COURSE_REF, and prints what it installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

COURSE_REPO = "https://github.com/frcnn-course/frcnn"
COURSE_REF = "v0.3.0"   # a tag or a commit of COURSE_REPO; the notebooks' library version

SETUP_CELL = f'''# Setup. On Colab: install frcnn_lib (the library only), pinned; locally `make setup` already did.
# Written by notebooks/_tools/setup_cell.py: change COURSE_REPO / COURSE_REF there, not here.
import os, subprocess, sys
COURSE_REPO, COURSE_REF = "{COURSE_REPO}", "{COURSE_REF}"

def install_course_library(repo=COURSE_REPO, ref=COURSE_REF, run=subprocess.run):
    """pip-install frcnn_lib from `repo` at `ref` (a tag or commit) and print what was installed."""
    run([sys.executable, "-m", "pip", "install", "-q", f"frcnn_lib @ git+{{repo}}@{{ref}}"], check=True)
    out = run([sys.executable, "-c", "import frcnn_lib; print(frcnn_lib.__version__)"],
              check=True, capture_output=True, text=True).stdout.strip()
    print(f"installed frcnn_lib {{out}} from {{repo}}@{{ref}}")

if "google.colab" in sys.modules:
    install_course_library()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")   # before TensorFlow is imported: no C++ log lines
# Fast mode: set True for a quick run (less data, fewer training steps: minutes instead of up to half
# an hour on a CPU, but weaker models and smaller samples; each notebook's first cell gives both times).
FAST = False
FAST = FAST or os.environ.get("FRCNN_FAST", "0") == "1"   # FRCNN_FAST=1 turns it on too (CI, make test)'''

NOTEBOOKS = Path(__file__).resolve().parents[1]


def setup_cell_index(nb) -> int:
    """Index of the notebook's setup cell: the first code cell."""
    return next(i for i, cell in enumerate(nb.cells) if cell.cell_type == "code")


def sync(check: bool = False) -> list[str]:
    """Write SETUP_CELL into every notebook (or, with check, only list those that differ)."""
    differ = []
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        cell = nb.cells[setup_cell_index(nb)]
        if cell.source != SETUP_CELL:
            differ.append(path.name)
            if not check:
                cell.source = SETUP_CELL
                nbformat.write(nb, path)
    return differ


if __name__ == "__main__":
    check = "--check" in sys.argv[1:]
    names = sync(check)
    print(("differ: " if check else "updated: ") + (", ".join(names) or "none"))
    sys.exit(1 if check and names else 0)
