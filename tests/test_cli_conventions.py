"""Command-line conventions engineers expect (issue 28, goal 1), through the real ``frcnn``:

* results on stdout, progress and logs on stderr (``frcnn evaluate ... | python -m json.tool``
  works without ``--quiet``);
* ``frcnn --version``, answered without importing TensorFlow;
* ``frcnn predict`` on folders and glob patterns, rounded floats, image sizes, COCO results;
* a failed command leaves no empty folder it created (and keeps one that existed);
* an offline pretrained preset names the missing weight files and where they go.

Most commands run in-process through ``frcnn_lib.cli.main`` on the session's tiny run.
"""
import json
import os
import subprocess
import sys
import urllib.error

import pytest
from PIL import Image

import frcnn_lib
from frcnn_lib import cli
from frcnn_lib.backbones import IMAGENET_FILES, VGG16_FULL_FILE
from frcnn_lib.datasets import shapes
from helpers.reliability import error_lines, run_frcnn, subprocess_env, trained_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


def call(argv):
    try:
        return cli.main([str(a) for a in argv])
    except SystemExit as stop:
        return stop.code


def one_error_line(capsys, code, *names):
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("frcnn: error: "), captured.err
    assert "Traceback" not in captured.err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder with 3 images of different sizes (and a text file), one more below it."""
    folder = tmp_path_factory.mktemp("images")
    data = shapes.load("test", num_images=3)
    sizes = {}
    for i, name in enumerate(("b.png", "a.jpg", "c.PNG")):
        image = data.read_image(i)[: 100 + 10 * i, : 120 + 5 * i]
        Image.fromarray(image).save(folder / name)
        sizes[name] = (image.shape[1], image.shape[0])
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub").mkdir()
    Image.fromarray(data.read_image(0)).save(folder / "sub" / "d.png")
    return folder, sizes


# ------------------------------------------------------------------ stdout and stderr
def test_evaluate_without_quiet_prints_only_json_on_stdout(run, capsys, monkeypatch):
    monkeypatch.setitem(shapes.DEFAULT_NUM_IMAGES, "test", 4)
    code = call(["evaluate", "--model", run / "model.keras", "--data", "shapes:test"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    metrics = json.loads(captured.out)            # what `| python -m json.tool` needs
    assert set(metrics) == {"mAP", "AP"}
    assert "detect" in captured.err and "done in" in captured.err   # progress on stderr


# ``frcnn`` on 4 test images (the default 200 take long on a busy CPU).
_FRCNN_4_TEST_IMAGES = ("import sys; from frcnn_lib.datasets import shapes; "
                        "shapes.DEFAULT_NUM_IMAGES['test'] = 4; from frcnn_lib.cli import main; "
                        "sys.exit(main(sys.argv[1:]))")


def test_evaluate_output_pipes_into_json_tool(run, tmp_path):
    """A real pipe, without --quiet: ``frcnn evaluate ... | python -m json.tool``."""
    env = subprocess_env()
    command = f"'{sys.executable}' -c \"{_FRCNN_4_TEST_IMAGES}\" evaluate --model " \
              f"'{run / 'model.keras'}' --data shapes:test " \
              f"| '{sys.executable}' -m json.tool > '{tmp_path / 'metrics.json'}'"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], env=env, text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert 0.0 <= json.loads((tmp_path / "metrics.json").read_text())["mAP"] <= 1.0
    assert "done in" in done.stderr


def test_predict_prints_its_summary_on_stdout_and_progress_on_stderr(run, images, tmp_path, capsys):
    folder, _ = images
    code = call(["predict", "--model", run / "model.keras", folder, "--out", tmp_path / "p"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.splitlines() == [line for line in captured.out.splitlines()
                                         if "detections in 3 images" in line]
    assert "predict" in captured.err


# ------------------------------------------------------------------ --version
def test_version_prints_frcnn_and_the_version(capsys):
    assert call(["--version"]) == 0
    assert capsys.readouterr().out == f"frcnn {frcnn_lib.__version__}\n"


def test_console_version_imports_no_tensorflow():
    code = ("import sys, _frcnn_console\n"
            "sys.argv = ['frcnn', '--version']\n"
            "try:\n    _frcnn_console.main()\nexcept SystemExit as stop:\n    assert stop.code in (0, None)\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), text=True,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"frcnn {frcnn_lib.__version__}\n"
    code, out, err = run_frcnn(["--version"], timeout=60)   # the installed script
    assert code == 0 and out == f"frcnn {frcnn_lib.__version__}\n" and error_lines(err) == []


# ------------------------------------------------------------------ predict: inputs and outputs
def test_predict_takes_a_folder_and_a_glob_sorted(run, images, tmp_path, capsys):
    folder, sizes = images
    out = tmp_path / "p"
    code = call(["predict", "--model", run / "model.keras", folder, str(folder / "sub" / "*.png"),
                 "--out", out, "--score-threshold", "0.0", "--quiet"])
    assert code == 0, capsys.readouterr().err
    detections = json.loads((out / "detections.json").read_text())
    names = [os.path.relpath(d["image"], folder) for d in detections]
    assert names == ["a.jpg", "b.png", "c.PNG", os.path.join("sub", "d.png")]   # no notes.txt
    assert [d["image_id"] for d in detections] == [0, 1, 2, 3]
    for d in detections[:3]:
        assert (d["width"], d["height"]) == sizes[os.path.basename(d["image"])]
    assert (detections[3]["width"], detections[3]["height"]) == Image.open(folder / "sub" / "d.png").size
    assert len(list(out.glob("*.png"))) == 4


def test_predict_rounds_boxes_to_2_and_scores_to_4_decimals(run, images, tmp_path, capsys):
    folder, _ = images
    out = tmp_path / "p"
    code = call(["predict", "--model", run / "model.keras", folder / "a.jpg", "--out", out,
                 "--score-threshold", "0.0", "--quiet"])
    assert code == 0, capsys.readouterr().err
    text = (out / "detections.json").read_text()
    [d] = json.loads(text)
    assert d["boxes"] and d["scores"]
    for v in (v for box in d["boxes"] for v in box):
        assert v == round(v, 2) and len(repr(v).split(".")[-1]) <= 2, v
    for s in d["scores"]:
        assert s == round(s, 4) and len(repr(s).split(".")[-1]) <= 4, s


def test_predict_writes_coco_results(run, images, tmp_path, capsys):
    folder, _ = images
    out, coco = tmp_path / "p", tmp_path / "results" / "coco.json"
    code = call(["predict", "--model", run / "model.keras", str(folder / "*.png"), str(folder / "*.jpg"),
                 "--out", out, "--coco-results", coco, "--score-threshold", "0.0", "--quiet"])
    assert code == 0, capsys.readouterr().err
    detections = json.loads((out / "detections.json").read_text())
    assert [os.path.basename(d["image"]) for d in detections] == ["b.png", "a.jpg"]  # per pattern
    results = json.loads(coco.read_text())
    assert len(results) == sum(len(d["boxes"]) for d in detections) > 0
    expected = [{"image_id": d["image_id"], "category_id": c,
                 "bbox": [b[0], b[1], round(b[2] - b[0], 2), round(b[3] - b[1], 2)], "score": s}
                for d in detections for b, s, c in zip(d["boxes"], d["scores"], d["category_ids"])]
    assert results == expected
    assert {r["image_id"] for r in results} <= {0, 1}
    assert all(1 <= r["category_id"] <= len(shapes.CLASS_NAMES) for r in results)
    assert all(w >= 0 and h >= 0 for r in results for w, h in [r["bbox"][2:]])


@pytest.mark.parametrize("kind", ["pattern", "folder"])
def test_predict_input_that_matches_nothing_is_one_line(kind, run, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    argument = str(empty / "*.jpg") if kind == "pattern" else str(empty)
    out = tmp_path / "never"
    code = call(["predict", "--model", run / "model.keras", argument, "--out", out])
    line = one_error_line(capsys, code, argument)
    assert ("matches no image file" if kind == "pattern" else "holds no image files") in line
    assert not out.exists()


# ------------------------------------------------------------------ no empty run folder
def test_failed_train_removes_the_run_folder_it_created(tmp_path, capsys):
    out = tmp_path / "new" / "run"
    code = call(["train", "--out", out, "--data", f"voc:{tmp_path / 'no_such_voc'}:train", "--quiet"])
    one_error_line(capsys, code, "no_such_voc")
    assert not out.exists() and not (tmp_path / "new").exists()


def test_failed_train_keeps_a_folder_that_existed(tmp_path, capsys):
    out = tmp_path / "existing"
    out.mkdir()
    code = call(["train", "--out", out, "--data", f"voc:{tmp_path / 'no_such_voc'}:train", "--quiet"])
    one_error_line(capsys, code, "no_such_voc")
    assert out.is_dir()


def test_failed_evaluate_removes_the_folder_of_its_out_file(run, tmp_path, capsys):
    out = tmp_path / "metrics" / "map.json"
    code = call(["evaluate", "--model", run / "model.keras", "--data",
                 f"voc:{tmp_path / 'no_such_voc'}:test", "--out", out, "--quiet"])
    one_error_line(capsys, code, "no_such_voc")
    assert not (tmp_path / "metrics").exists()


# ------------------------------------------------------------------ offline pretrained preset
@pytest.mark.parametrize("preset, backbone", [("voc_vgg16", "vgg16"), ("coco_resnet50", "resnet50")])
def test_offline_pretrained_preset_names_the_missing_weights(preset, backbone, tmp_path, capsys,
                                                             monkeypatch):
    # As offline whatever the machine: an empty Keras cache and a download that fails.
    import keras.src.backend.config as keras_config
    import keras.src.utils.file_utils as file_utils

    keras_home = tmp_path / "keras_home"
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(keras_home))
    attempts = []

    def offline(url, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution (test: offline)")
    monkeypatch.setattr(file_utils, "urlretrieve", offline)

    out = tmp_path / "run"
    code = call(["train", "--preset", preset, "--data", "shapes", "--train-images", 2,
                 "--out", out, "--quiet"])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    # Keras' own "Downloading data from URL" progress line comes first; then one error line.
    lines = [x for x in captured.err.splitlines() if x.strip() and not x.startswith("Downloading data from")]
    assert len(lines) == 1 and lines[0].startswith("frcnn: error: "), captured.err
    line = lines[0]
    for name in (f"--preset {preset}", "weights are missing",
                 os.path.join(str(keras_home), "models", IMAGENET_FILES[backbone])):
        assert name in line, (name, line)
    assert captured.out == ""
    assert attempts, "the download was not attempted"
    assert "rejected" not in line
    if backbone == "vgg16":
        assert os.path.join(str(keras_home), "models", VGG16_FULL_FILE) in line
    assert not out.exists()
