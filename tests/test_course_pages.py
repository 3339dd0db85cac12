"""The shape of the course's exercise pages (README, "How to work through the course").

Every notebook 01-12 has at least one exercise; an exercise is a stub cell (tag ``exercise``:
``def my_x(...)`` raising ``NotImplementedError``) followed by the cell that adopts it
(``x = adopt(my_x, check_x, ...)``, tag ``check``) with a check of ``frcnn_lib.course.exercises``;
no cell holds a solution; and no code cell before an exercise defines a function of the same
name or its worked ``_np`` twin. Each notebook's first cell states its full- and fast-mode time from
the one table of ``notebooks/_tools/times.py``, and the setup cell's ``FAST`` is a learner's switch
that ``FRCNN_FAST=1`` still turns on.
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


def _load_times_tool():
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "notebooks" / "_tools" / "times.py"
    spec = importlib.util.spec_from_file_location("course_times", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_notebook_states_its_full_and_fast_time_from_the_one_table():
    times = _load_times_tool()
    assert times.sync(check=True) == []          # notebooks and docs/course.md agree with TIMES
    assert sorted(times.TIMES) == [p.name[:2] for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        first = nbformat.read(path, as_version=4).cells[0]
        full, fast, _ = times.TIMES[path.name[:2]]
        line = re.search(r"<!-- times -->(.*?)<!-- /times -->", first.source, re.S).group(1)
        assert first.cell_type == "markdown" and "2-core" in line and "FAST = True" in line
        assert times._duration(full) + " in full mode" in line and f"{fast} s in fast mode" in line
    assert "| 09 | " in (Path(times.COURSE_PAGE).read_text())


def test_the_times_check_fails_when_a_number_changes(monkeypatch):
    times = _load_times_tool()
    full, fast, what = times.TIMES["05"]
    monkeypatch.setitem(times.TIMES, "05", (full + 1, fast, what))
    assert times.sync(check=True) == ["05_rpn_head_and_smooth_l1.ipynb", "docs/course.md"]


def test_fast_mode_is_a_switch_in_the_setup_cell_and_the_environment_still_turns_it_on(monkeypatch):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "setup_cell", Path(__file__).resolve().parents[1] / "notebooks" / "_tools" / "setup_cell.py")
    setup_cell = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup_cell)
    assert "\nFAST = False\n" in setup_cell.SETUP_CELL     # what a learner edits
    for env, edit, expected in [("0", False, False), ("1", False, True), ("0", True, True)]:
        monkeypatch.setenv("FRCNN_FAST", env)
        source = setup_cell.SETUP_CELL.replace("\nFAST = False\n", "\nFAST = True\n") if edit else setup_cell.SETUP_CELL
        namespace = {}
        exec(compile(source, "setup_cell", "exec"), namespace)
        assert namespace["FAST"] is expected, (env, edit)
