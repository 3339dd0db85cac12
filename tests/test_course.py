"""frcnn_lib.course: one path for the model notebook 09 saves and 10-12 load."""
from pathlib import Path

from frcnn_lib.course import course_model_path, repository_root

ROOT = Path(__file__).resolve().parents[1]


def _checkout(tmp_path):
    (tmp_path / "repo" / "notebooks" / "sub").mkdir(parents=True)
    (tmp_path / "repo" / "pyproject.toml").write_text("[project]\n")
    return tmp_path / "repo"


def test_same_file_from_the_root_and_from_the_notebooks_folder(tmp_path):
    repo = _checkout(tmp_path)
    expected = repo.resolve() / "runs" / "course" / "model.keras"
    assert course_model_path(start=repo) == expected
    assert course_model_path(start=repo / "notebooks") == expected
    assert course_model_path(start=repo / "notebooks" / "sub") == expected


def test_fast_mode_has_its_own_file(tmp_path):
    repo = _checkout(tmp_path)
    assert course_model_path(fast=True, start=repo / "notebooks") == repo.resolve() / "runs/course/model_fast.keras"
    assert course_model_path(fast=True, start=repo) != course_model_path(fast=False, start=repo)


def test_outside_a_checkout_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("")   # a pyproject alone is not the course's checkout
    assert repository_root(tmp_path) is None
    monkeypatch.chdir(tmp_path)
    assert course_model_path() == tmp_path.resolve() / "runs" / "course" / "model.keras"


def test_this_checkout():
    assert repository_root(ROOT / "notebooks") == ROOT
    assert course_model_path(start=ROOT / "notebooks") == ROOT / "runs" / "course" / "model.keras"
