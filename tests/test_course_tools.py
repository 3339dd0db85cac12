"""notebooks/_tools/run_course.py: the output cleaning applied before full-mode outputs are committed."""
import importlib.util
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("run_course", ROOT / "notebooks" / "_tools" / "run_course.py")
run_course = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_course)


def _notebook(outputs):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x = 1")
    cell.outputs = outputs
    cell.metadata["execution"] = {"iopub.status.busy": "2026-12-01T10:00:00Z"}
    nb.cells = [cell]
    return nb


def test_tensorflow_log_lines_are_dropped_and_warnings_kept():
    stderr = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
              "I0000 00:00:1796149464.935710   11814 port.cc:153] oneDNN custom operations are on.\n"
              "E0000 00:00:1796149474.571512   11814 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n"
              "2026-12-01 10:00:00.123456: I tensorflow/core/platform/cpu_feature_guard.cc:210] This TensorFlow binary\n"
              "UserWarning: the learner should see this\n")
    nb = _notebook([nbformat.v4.new_output("stream", name="stderr", text=stderr),
                    nbformat.v4.new_output("stream", name="stderr", text="I0000 00:00:1.5  1 a.cc:1] only a log\n")])
    assert run_course.clean_notebook(nb) == 5
    outputs = nb.cells[0].outputs
    assert len(outputs) == 1   # the stream that held only log lines is gone
    assert outputs[0].text == "UserWarning: the learner should see this\n"
    assert "execution" not in nb.cells[0].metadata


def test_machine_paths_are_replaced_and_progress_collapsed():
    tmp = tempfile.gettempdir()
    text = (f"model written to {tmp}/frcnn_project_t7y89186/run_cli/model.keras\n"
            f"cache {Path.home()}/.keras/models/vgg16.h5\n"
            f"repo {ROOT}/runs/course/model.keras\n"
            "tensorboard/train/events.out.tfevents.1796167441.vm-7.6653.0.v2 7,106 bytes\n"
            "step 1/3\rstep 2/3\rstep 3/3\n")
    nb = _notebook([nbformat.v4.new_output("stream", name="stdout", text=text),
                    nbformat.v4.new_output("execute_result", data={"text/plain": f"PosixPath('{ROOT}/x')"},
                                           execution_count=1)])
    run_course.clean_notebook(nb)
    stream, result = nb.cells[0].outputs
    assert stream.text == ("model written to <tmp>/frcnn_project_/run_cli/model.keras\n"
                           "cache ~/.keras/models/vgg16.h5\n"
                           "repo <repo>/runs/course/model.keras\n"
                           "tensorboard/train/events.out.tfevents.<time>.<host>.<pid>.v2 7,106 bytes\n"
                           "step 3/3\n")
    assert result.data["text/plain"] == "PosixPath('<repo>/x')"


def test_course_notebooks_are_found_in_order():
    names = [p.name for p in run_course.course_notebooks()]
    assert names == sorted(names) and names[0].startswith("01_") and len(names) >= 11
    assert [p.name[:2] for p in run_course.course_notebooks(["03", "10"])] == ["03", "10"]


def test_promote_reference_answers_fills_the_learner_parts_that_notebook_09_promotes(tmp_path, monkeypatch, capsys):
    # make course runs `run_course.py --promote-reference-answers`: before notebook 09, the
    # reference answers go to runs/course/learner/, as if a learner had solved 03-08.
    from frcnn_lib.course.exercises import CHECKS_BY_PART, load_learner_parts
    monkeypatch.setattr(run_course, "ROOT", tmp_path)
    written = run_course.promote_reference_answers()
    assert sorted(written) == sorted(CHECKS_BY_PART)
    folder = tmp_path / "runs" / "course" / "learner"
    assert sorted(p.stem for p in folder.glob("*.py")) == sorted(CHECKS_BY_PART)
    found = load_learner_parts(folder)
    assert sorted(found) == sorted(CHECKS_BY_PART)           # each one checked again, and passes
    assert "frcnn_lib   (" not in capsys.readouterr().out
