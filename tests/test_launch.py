"""Launch paths of the course: Binder's requirements and the notebooks' Colab setup cell."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_setup_cell_tool():
    spec = importlib.util.spec_from_file_location("setup_cell", ROOT / "notebooks" / "_tools" / "setup_cell.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


setup_cell = _load_setup_cell_tool()


def test_binder_requirements_install_from_the_repository_root():
    # repo2docker runs `pip install -r binder/requirements.txt` with the repository root as working directory.
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "-q", "-r", "binder/requirements.txt"],
        cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_binder_installs_the_notebook_extras_under_the_constraints():
    lines = [line.split("#")[0].strip() for line in (ROOT / "binder/requirements.txt").read_text().splitlines()]
    lines = [line for line in lines if line]
    assert "-e .[notebooks]" in lines
    assert "-c ../constraints.txt" in lines   # pip reads -c relative to the requirements file
    assert (ROOT / "binder" / "../constraints.txt").resolve().is_file()


def test_every_notebook_starts_with_the_one_setup_cell():
    assert setup_cell.sync(check=True) == []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        assert nb.cells[setup_cell.setup_cell_index(nb)].source == setup_cell.SETUP_CELL, path.name


def _cell_namespace():
    """Run the setup cell as a notebook kernel would, outside Colab: defines, installs nothing."""
    namespace = {}
    assert "google.colab" not in sys.modules
    exec(compile(setup_cell.SETUP_CELL, "setup_cell", "exec"), namespace)
    return namespace


def test_setup_cell_installs_only_the_library_pinned_and_says_so(capsys):
    ns = _cell_namespace()
    assert ns["COURSE_REF"] == setup_cell.COURSE_REF and ns["COURSE_REPO"] == setup_cell.COURSE_REPO
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 0, stdout="9.9.9\n", stderr="")

    ns["install_course_library"](run=fake_run)
    install = calls[0]
    assert install[:4] == [sys.executable, "-m", "pip", "install"]
    spec = install[-1]
    assert spec == f"frcnn_lib @ git+{setup_cell.COURSE_REPO}@{setup_cell.COURSE_REF}"
    assert "[" not in spec   # no extras: Colab has its own Jupyter and ipywidgets
    out = capsys.readouterr().out
    assert out.strip() == f"installed frcnn_lib 9.9.9 from {setup_cell.COURSE_REPO}@{setup_cell.COURSE_REF}"


def test_setup_cell_installs_the_local_checkout_at_a_commit(tmp_path, capsys):
    """The cell's own function, against this checkout: pip clones it at HEAD and builds frcnn_lib."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.fail("the launch test needs the repository's git history: " + head.stderr)
    target = tmp_path / "site"
    seen = []

    def into_target(command, **kwargs):   # the cell's commands, kept away from this venv
        seen.append(command)
        if command[2:4] == ["pip", "install"]:
            command = command[:4] + ["--no-deps", "--target", str(target)] + command[4:]
        else:
            command = [command[0], "-c", "import sys; sys.path.insert(0, %r); import frcnn_lib; "
                       "assert frcnn_lib.__file__.startswith(%r), frcnn_lib.__file__; "
                       "print(frcnn_lib.__version__)" % (str(target), str(target))]
        return subprocess.run(command, **kwargs)

    ns = _cell_namespace()
    ns["install_course_library"](repo=f"file://{ROOT}", ref=head.stdout.strip(), run=into_target)
    assert (target / "frcnn_lib" / "model.py").is_file()
    import frcnn_lib
    assert capsys.readouterr().out.strip() == (
        f"installed frcnn_lib {frcnn_lib.__version__} from file://{ROOT}@{head.stdout.strip()}")


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "notebooks" / "_tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_colab_layout_refuses_a_folder_inside_the_checkout():
    # The layout itself (wheel on PYTHONPATH, its pinned record, no runs/) is checked by the
    # script on every `make notebooks`, which runs 06, 08, 10, 11 and 12 in it.
    colab = _load_tool("colab_layout")
    with pytest.raises(SystemExit, match="outside the checkout"):
        colab.prepare(ROOT / "notebooks" / "_scratch" / "colab", [])
