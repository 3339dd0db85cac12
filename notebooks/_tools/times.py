"""How long each course notebook takes: ONE table, written onto every notebook's first cell.

Each notebook's title cell (its first cell, markdown) carries one line between the markers
`<!-- times -->` and `<!-- /times -->`, written from `TIMES` below; docs/course.md's times table
(between `<!-- times-table -->` and `<!-- /times-table -->`) comes from the same numbers.
After a new measurement, edit `TIMES` (and `MEASURED`), then run

    python notebooks/_tools/times.py          # rewrite the first cells and docs/course.md's table
    python notebooks/_tools/times.py --check  # exit 1 if a notebook or docs/course.md disagrees (a test runs this)

Full mode: the wall time `notebooks/_tools/run_course.py` (`make course`) prints per notebook.
Fast mode: the notebook alone under `FRCNN_FAST=1 pytest --nbval-lax` (Python's and TensorFlow's
start included). Both on the 2-core CPU named in `MEASURED`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[1]
COURSE_PAGE = NOTEBOOKS.parent / "docs" / "course.md"

MEASURED = "2026-12-06, a 2-core AMD EPYC CPU, no GPU"

# notebook number -> (full mode s, fast mode s, what takes most of the full-mode time, or "" when
# nothing stands out: the short notebooks spend much of their time starting Python and TensorFlow)
TIMES: dict[str, tuple[int, int, str]] = {
    "01": (11, 11, ""),
    "02": (11, 15, ""),
    "03": (9, 12, ""),
    "04": (9, 12, ""),
    "05": (154, 25, "training an RPN on the `small` backbone, 1500 steps"),
    "06": (11, 13, ""),
    "07": (7, 9, ""),
    "08": (60, 15, "training the detection head alone on frozen proposals"),
    "09": (1000, 43, "training `shapes_cpu` for 16 epochs × 500 steps (733 s), then your detector "
                     "and the library's for 1000 steps each"),
    "10": (47, 42, "evaluating the course's model, which it loads"),
    "11": (76, 49, "fine-tuning the course's model, in Python and with the command line"),
    "12": (227, 18, "training a custom residual backbone, 8 epochs on 1000 images"),
}

START, END = "<!-- times -->", "<!-- /times -->"
TABLE_START, TABLE_END = "<!-- times-table -->", "<!-- /times-table -->"


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min {rest:02d} s" if seconds < 600 else f"about {round(seconds / 60)} min"


def statement(number: str) -> str:
    """The one line a notebook's first cell says about its time."""
    full, fast, what = TIMES[number]
    most = f" (most of it {what})" if what else ""
    return (f"{START}**Time:** {_duration(full)} in full mode{most}, {_duration(fast)} in "
            f"fast mode, measured {MEASURED}. Fast mode (`FAST = True` in the setup cell, or "
            f"`FRCNN_FAST=1`) uses less data and fewer training steps: quicker, with weaker models.{END}")


def table() -> str:
    """docs/course.md's table of the same numbers."""
    rows = ["| # | full mode | fast mode | most of the full-mode time |", "|---|---|---|---|"]
    rows += [f"| {n} | {full} s | {fast} s | {what or '-'} |" for n, (full, fast, what) in TIMES.items()]
    return f"{TABLE_START}\n" + "\n".join(rows) + f"\n{TABLE_END}"


def _with_statement(source: str, number: str) -> str:
    line = statement(number)
    if START in source:
        return re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: line, source, flags=re.S)
    # First time: after the title and the Colab badge (the first blank line after the badge).
    head, sep, rest = source.partition("\n\n")
    badge, sep2, rest2 = rest.partition("\n\n")
    if "colab-badge" in badge:
        return f"{head}\n\n{badge}\n\n{line}\n\n{rest2}".rstrip("\n")
    return f"{head}\n\n{line}\n\n{rest}".rstrip("\n")


def sync(check: bool = False) -> list[str]:
    """Write the times (or, with check, only list the files that differ)."""
    differ = []
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    missing = sorted(set(TIMES) - {p.name[:2] for p in paths}) + sorted({p.name[:2] for p in paths} - set(TIMES))
    if missing:
        raise SystemExit(f"times.py: TIMES and notebooks/ disagree on notebooks {missing}")
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        cell = nb.cells[0]
        if cell.cell_type != "markdown":
            raise SystemExit(f"{path.name}: the first cell must be the markdown title cell")
        new = _with_statement(cell.source, path.name[:2])
        if new != cell.source:
            differ.append(path.name)
            if not check:
                cell.source = new
                nbformat.write(nb, path)
    page = COURSE_PAGE.read_text()
    if TABLE_START not in page or TABLE_END not in page:
        raise SystemExit(f"{COURSE_PAGE}: no {TABLE_START} ... {TABLE_END} markers")
    new_page = re.sub(re.escape(TABLE_START) + r".*?" + re.escape(TABLE_END), lambda _: table(), page, flags=re.S)
    if new_page != page:
        differ.append("docs/course.md")
        if not check:
            COURSE_PAGE.write_text(new_page)
    return differ


if __name__ == "__main__":
    check = "--check" in sys.argv[1:]
    names = sync(check)
    print(("differ: " if check else "updated: ") + (", ".join(names) or "none"))
    sys.exit(1 if check and names else 0)
