"""The ``frcnn`` command line: help, the four commands on a tiny run, and misuse.

Most commands run in-process through ``frcnn_lib.cli.main`` (TensorFlow is imported once);
two run the installed console script in subprocesses, started together so that their
TensorFlow imports overlap.  Misuse must end with exit status 2 and exactly one line on
stderr, ``frcnn: error: ...`` naming the offending thing, never a traceback.
"""
import argparse
import json
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from frcnn_lib import cli
from frcnn_lib.datasets import shapes
from helpers.reliability import (copy_run, error_lines, finish, start_frcnn, train_args,
                                 trained_run)

COMMANDS = ("train", "evaluate", "predict", "export", "anchors", "demo")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    """The console script twice, in parallel: ``frcnn --help`` and a misuse."""
    folder = tmp_path_factory.mktemp("console")
    missing = folder / "missing.keras"
    processes = {"help": start_frcnn(["--help"]),
                 "misuse": start_frcnn(["evaluate", "--model", missing, "--data", "shapes:test"])}
    return {name: finish(p) for name, p in processes.items()}, missing


def _subparsers():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


def _options(parser):
    return [s for a in parser._actions for s in a.option_strings] + \
        [a.dest for a in parser._actions if not a.option_strings and a.dest != "command"]


def one_error_line(capsys, code, *names):
    """Assert exit status 2 and one ``frcnn: error:`` line on stderr naming ``names``."""
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, captured.err
    assert len(lines) == 1, f"expected one line on stderr, got:\n{captured.err}"
    assert lines[0].startswith("frcnn: error: "), lines[0]
    assert "Traceback" not in captured.err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


def call(argv):
    """``main(argv)``'s exit status, also when argparse exits."""
    try:
        return cli.main([str(a) for a in argv])
    except SystemExit as stop:
        return stop.code


# ----------------------------------------------------------------------------- help
def test_console_script_help_exits_0_and_lists_every_command(console):
    results, _ = console
    code, out, err = results["help"]
    assert code == 0, err
    for command in COMMANDS:
        assert command in out
    assert error_lines(err) == []


def test_console_script_misuse_exits_2_with_one_line(console):
    results, missing = console
    code, out, err = results["misuse"]
    assert code == 2
    assert "Traceback" not in err
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("frcnn: error: --model"), err
    assert str(missing) in lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_each_subcommand_help_mentions_every_option(command, capsys):
    parser, subparsers = _subparsers()
    assert call([command, "--help"]) == 0
    text = capsys.readouterr().out
    options = _options(subparsers[command])
    assert options, command
    for option in options:
        assert option.upper() in text or option in text, f"{command} --help misses {option}"
    for action in subparsers[command]._actions:  # every option is explained
        assert action.help, f"{command}: {action.option_strings or action.dest} has no help"


def test_top_level_help_mentions_every_command(capsys):
    assert call(["--help"]) == 0
    text = capsys.readouterr().out
    for command in COMMANDS:
        assert command in text


# ----------------------------------------------------------------------------- commands
def test_train_writes_the_run_folder(run):
    for name in ("model.keras", "config.json", "history.csv", "checkpoints/last.keras",
                 "checkpoints/state.json"):
        assert (run / name).is_file(), name
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state == {"epoch": 1, "step": 2, "epoch_step": 0}   # 8 images / batch 4 = 2 steps
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["rpn_channels"] == 16 and config["epochs"] == 1
    rows = (run / "history.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,") and "loss" in rows[0] and len(rows) == 2
    assert zipfile.is_zipfile(run / "model.keras")
    assert not [p for p in run.rglob(".tmp-*")], "temporary files left behind"
    # Ordinary permissions, not mkstemp's 0600.
    assert (run / "model.keras").stat().st_mode & 0o044 == 0o044 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_evaluate_prints_map_json_and_writes_it(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(shapes.DEFAULT_NUM_IMAGES, "test", 6)
    out = tmp_path / "metrics" / "map.json"
    code = call(["evaluate", "--model", run / "model.keras", "--data", "shapes:test",
                 "--out", out, "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    printed = json.loads(captured.out[captured.out.index("{"):captured.out.rindex("}") + 1])
    assert 0.0 <= printed["mAP"] <= 1.0
    assert set(printed["AP"]) == set(shapes.CLASS_NAMES)
    assert json.loads(out.read_text()) == printed


def test_predict_writes_detections_and_one_png_per_image(run, tmp_path, capsys):
    data = shapes.load("test", num_images=2)
    paths = []
    for i in range(2):
        folder = tmp_path / f"in{i}"
        folder.mkdir()
        path = folder / "same_name.png"    # equal stems must not overwrite each other
        Image.fromarray(data.read_image(i)).save(path)
        paths.append(path)
    gray = tmp_path / "gray.jpg"
    Image.fromarray(data.read_image(0)[..., 0]).save(gray)
    paths.append(gray)
    out = tmp_path / "pred"
    code = call(["predict", "--model", run / "model.keras", *paths, "--out", out,
                 "--score-threshold", "0.0", "--quiet"])
    assert code == 0, capsys.readouterr().err
    detections = json.loads((out / "detections.json").read_text())
    assert [d["image"] for d in detections] == [str(p) for p in paths]
    for d in detections:
        assert len(d["boxes"]) == len(d["scores"]) == len(d["model_labels"]) == len(d["category_ids"])
        assert d["names"] == [shapes.CLASS_NAMES[k - 1] for k in d["model_labels"]]
        assert all(0 <= v <= 160 for box in d["boxes"] for v in box)
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 3, pngs
    for png in out.glob("*.png"):
        assert Image.open(png).size[0] > 0


def test_export_writes_a_saved_model_that_loads_and_serves(run, tmp_path, capsys):
    import tensorflow as tf

    out = tmp_path / "exported"
    code = call(["export", "--model", run / "model.keras", "--out", out])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    # A progress line before the long trace (on stderr); the result line on stdout.
    assert any(line.startswith("exporting ") for line in captured.err.splitlines()), captured.err
    assert captured.out.startswith("SavedModel written to "), captured.out
    assert (out / "saved_model.pb").is_file()
    loaded = tf.saved_model.load(str(out))
    image = shapes.load("test", num_images=1).read_image(0)
    result = loaded.serve(tf.constant(image[None].astype(np.float32)))
    assert set(result) >= {"boxes", "scores", "labels", "num_detections"}
    assert result["boxes"].shape[0] == 1 and result["boxes"].shape[-1] == 4


# ----------------------------------------------------------------------------- misuse
@pytest.fixture()
def regular_file(tmp_path):
    """A regular file: paths below it cannot be created, not even by root."""
    path = tmp_path / "file.txt"
    path.write_text("not a folder")
    return path


def test_unknown_dataset_spec(tmp_path, capsys):
    code = call(train_args(tmp_path / "run", 1, 8, 4, "--data", "bogus:thing"))
    one_error_line(capsys, code, "bogus:thing")


def test_missing_model_file(tmp_path, capsys):
    missing = tmp_path / "nope.keras"
    for argv in (["evaluate", "--model", missing, "--data", "shapes:test"],
                 ["predict", "--model", missing, "x.png", "--out", tmp_path / "p"],
                 ["export", "--model", missing, "--out", tmp_path / "e"]):
        one_error_line(capsys, call(argv), "--model", missing)


def test_model_file_that_is_not_a_keras_archive(tmp_path, capsys):
    fake = tmp_path / "fake.keras"
    fake.write_text("hello")
    code = call(["evaluate", "--model", fake, "--data", "shapes:test"])
    one_error_line(capsys, code, fake)


def test_output_folder_not_writable(run, regular_file, tmp_path, capsys):
    below = regular_file / "out"
    one_error_line(capsys, call(train_args(below)), below)
    one_error_line(capsys, call(["predict", "--model", run / "model.keras", run / "config.json",
                                 "--out", below]), below)
    one_error_line(capsys, call(["evaluate", "--model", run / "model.keras", "--data",
                                 "shapes:test", "--out", below / "m.json"]), below)
    one_error_line(capsys, call(["export", "--model", run / "model.keras", "--out", below]),
                   below)
    one_error_line(capsys, call(["export", "--model", run / "model.keras", "--out",
                                 regular_file]), regular_file)


def test_output_under_proc_is_refused(tmp_path, capsys):
    target = "/proc/frcnn-test-out"
    one_error_line(capsys, call(train_args(target)), target)


@pytest.mark.parametrize("setting, named", [
    ("no_such_key=1", "no_such_key"),
    ("rpn_chanels=16", "rpn_channels"),        # typo: suggests the right key
    ("rpn_channels", "rpn_channels"),          # no '='
    ("=16", "=16"),                            # no key
    ("rpn_channels=abc", "rpn_channels"),      # not a number
    ("rpn_channels=2.5", "rpn_channels"),      # not a whole number
    ("anchor_scales=[16, \"x\"]", "anchor_scales"),
    ("rpn_nms_iou=NaN", "rpn_nms_iou"),        # JSON accepts NaN; frcnn does not
    ("roi_pooling=bilinear", "roi_pooling"),   # rejected by the model itself
    ("rpn_nms_iou=1.5", "rpn_nms_iou"),        # IoUs, thresholds, fractions: in [0, 1]
    ("detections_score_threshold=-0.1", "detections_score_threshold"),
    ("backbone_frozen_stages=\"two\"", "backbone_frozen_stages"),   # None by default: an int
    ("backbone_frozen_stages=true", "backbone_frozen_stages"),
    ("backbone_frozen_batchnorm=1", "backbone_frozen_batchnorm"),
])
def test_bad_set_override(setting, named, tmp_path, capsys):
    code = call(train_args(tmp_path / "run", 1, 8, 4, "--set", setting))
    one_error_line(capsys, code, "--set", named)
    assert not (tmp_path / "run" / "model.keras").exists()


def test_set_accepts_the_kinds_of_settings_whose_default_is_none():
    from frcnn_lib.cli.common import check_overrides
    from frcnn_lib.model import DEFAULTS
    good = {"backbone_frozen_stages": 2, "backbone_frozen_batchnorm": False, "backbone_weights": "w.h5"}
    assert check_overrides(dict(good), DEFAULTS) == good
    assert check_overrides({"backbone_frozen_stages": None}, DEFAULTS) == {"backbone_frozen_stages": None}


@pytest.mark.parametrize("argv, named", [
    (["train", "--out", "X", "--epochs", "0"], "--epochs"),
    (["train", "--out", "X", "--batch-size", "two"], "--batch-size"),
    (["train", "--out", "X", "--learning-rate", "-1"], "--learning-rate"),
    (["evaluate", "--model", "m.keras"], "--data"),
    (["frobnicate"], "frobnicate"),
])
def test_bad_arguments_give_one_line_too(argv, named, capsys):
    one_error_line(capsys, call(argv), named)


def test_predict_nonexistent_image(run, tmp_path, capsys):
    missing = tmp_path / "no_such_image.jpg"
    code = call(["predict", "--model", run / "model.keras", missing, "--out", tmp_path / "p"])
    one_error_line(capsys, code, missing)
    assert not (tmp_path / "p" / "detections.json").exists()


def test_predict_unreadable_image(run, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    code = call(["predict", "--model", run / "model.keras", broken, "--out", tmp_path / "p",
                 "--quiet"])
    one_error_line(capsys, code, broken)


def test_export_to_a_non_empty_folder(run, tmp_path, capsys):
    out = tmp_path / "exported"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    code = call(["export", "--model", run / "model.keras", "--out", out])
    one_error_line(capsys, code, out)
    assert (out / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_resume_without_checkpoint(tmp_path, capsys):
    code = call(train_args(tmp_path / "fresh", 2, 8, 4, "--resume"))
    one_error_line(capsys, code, "--resume", "last.keras")


def test_resume_refuses_a_different_model_setting(run, tmp_path, capsys):
    copy = copy_run(run, tmp_path / "run")
    before = (copy / "checkpoints" / "last.keras").read_bytes()
    argv = train_args(copy, 1, 8, 4, "--resume", "--set", "rpn_channels=32")
    one_error_line(capsys, call(argv), "--set rpn_channels=32 contradicts", "config.json",
                   "(rpn_channels=16)")
    assert (copy / "checkpoints" / "last.keras").read_bytes() == before


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-0.1", "1.5", "abc"])
@pytest.mark.parametrize("command, option", [("predict", "--score-threshold"), ("evaluate", "--iou")])
def test_thresholds_must_be_finite_numbers_in_0_1(command, option, value, tmp_path, capsys):
    rest = {"predict": ["--model", "m.keras", "x.png", "--out", tmp_path / "p"],
            "evaluate": ["--model", "m.keras", "--data", "shapes:test"]}[command]
    line = one_error_line(capsys, call([command, *rest, f"{option}={value}"]), option, "[0, 1]")
    assert value in line


def test_thresholds_at_the_ends_of_0_1_are_accepted():
    parser = cli.build_parser()
    for value in ("0", "1", "0.5", "1e-3"):
        args = parser.parse_args(["predict", "--model", "m", "x", "--out", "o", "--score-threshold", value])
        assert args.score_threshold == float(value)


def _keras_file_without_frcnn(path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.save(path)
    return path


@pytest.mark.parametrize("case, words", [
    ("truncated", ["truncated", "cut short"]),
    ("random", ["not a zip archive"]),
    ("empty", ["empty"]),
    ("zip-without-config", ["not a Keras model", "no config.json"]),
    ("bad-config", ["config.json is not valid JSON"]),
    ("other-model", ["not a frcnn model", "Sequential"]),
])
def test_model_file_errors_say_what_is_wrong_with_the_file(run, case, words, tmp_path, capsys):
    path = tmp_path / f"{case}.keras"
    good = (run / "model.keras").read_bytes()
    if case == "truncated":
        path.write_bytes(good[:len(good) * 6 // 10])
    elif case == "random":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "zip-without-config":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "hello")
    elif case == "bad-config":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("config.json", "{not json")
    else:
        _keras_file_without_frcnn(path)
    for argv in (["evaluate", "--model", path, "--data", "shapes:test"],
                 ["export", "--model", path, "--out", tmp_path / "e"]):
        line = one_error_line(capsys, call(argv), path, *words)
        assert "File not found" not in line and "could not load" not in line, line
