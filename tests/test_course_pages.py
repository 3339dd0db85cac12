"""The shape of the course's exercise pages (README, "How to work through the course").

Every notebook 01-12 has at least one exercise; an exercise is a stub cell (tag ``exercise``:
``def my_x(...)`` raising ``NotImplementedError``) followed by the cell that adopts it
(``x = adopt(my_x, check_x, ...)``, tag ``check``) with a check of ``frcnn_lib.course.exercises``;
no cell holds a solution; and no code cell before an exercise defines a function of the same
name or its worked ``_np`` twin.
"""
import re
from pathlib import Path

import nbformat
import pytest

import frcnn_lib.course.exercises as exercises

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
_STUB = re.compile(r"^def (my_(\w+))\(", re.M)
_ADOPT = re.compile(r"^(\w+) = adopt\((my_\w+), (check_\w+)[,)]", re.M)


def test_there_are_twelve_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(1, 13)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_each_exercise_is_a_stub_then_its_adopt_cell_and_no_answer_is_on_the_page(path):
    cells = nbformat.read(path, as_version=4).cells
    code = [c for c in cells if c.cell_type == "code"]
    tags = [set(c.metadata.get("tags", [])) for c in code]
    assert not any(t & {"solution", "solution-check"} for t in tags), "a solution cell is on the page"
    stubs = [i for i, t in enumerate(tags) if "exercise" in t]
    assert stubs, "every notebook has at least one exercise"
    for i in stubs:
        names = _STUB.findall(code[i].source)
        assert len(names) == 1, code[i].source
        fn, stem = names[0]
        assert 'raise NotImplementedError("not implemented yet")' in code[i].source
        adopt = _ADOPT.search(code[i + 1].source)
        assert "check" in tags[i + 1] and adopt and adopt.group(2) == fn, code[i + 1].source
        assert callable(getattr(exercises, adopt.group(3), None)), adopt.group(3)
        # Nothing above the exercise writes the same function (or its worked numpy twin).
        for earlier in code[:i]:
            defined = set(re.findall(r"^def (\w+)\(", earlier.source, re.M))
            assert not defined & {fn, stem, f"{stem}_np"}, (fn, earlier.source[:200])
