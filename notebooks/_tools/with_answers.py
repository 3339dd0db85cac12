"""A copy of a notebook whose exercise cells hold the reference answers (for tests and checks).

    python notebooks/_tools/with_answers.py notebooks/04_iou_and_rpn_targets.ipynb /tmp/04.ipynb

Each code cell tagged ``exercise`` that defines ``def my_<name>(`` becomes
``from reference_answers import ANSWERS; my_<name> = ANSWERS["my_<name>"]``, with
``notebooks/_tools`` put on ``sys.path``; everything else is unchanged.  Executing the copy
shows the notebook as a learner who solved every exercise sees it.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

TOOLS = Path(__file__).resolve().parent
_DEF = re.compile(r"^def (my_\w+)\(", re.M)


def fill_answers(nb):
    """Replace the exercise cells of ``nb`` in place; returns the names filled."""
    sys.path.insert(0, str(TOOLS))
    from reference_answers import ANSWERS
    filled = []
    for cell in nb.cells:
        if cell.cell_type != "code" or "exercise" not in cell.get("metadata", {}).get("tags", []):
            continue
        names = [n for n in _DEF.findall(cell.source) if n in ANSWERS]
        if not names:
            continue
        lines = [f"import sys; sys.path.insert(0, {str(TOOLS)!r})",
                 "from reference_answers import ANSWERS"]
        lines += [f"{n} = ANSWERS[{n!r}]" for n in names]
        cell.source = "\n".join(lines)
        filled += names
    return filled


def main(argv=None):
    src, dst = (argv or sys.argv[1:])[:2]
    nb = nbformat.read(src, as_version=4)
    filled = fill_answers(nb)
    nbformat.write(nb, dst)
    print(f"{dst}: answers for {', '.join(filled) or 'no exercise'}")


if __name__ == "__main__":
    main()
