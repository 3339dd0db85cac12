"""``frcnn train`` interrupted and resumed through the real command line: SIGINT and SIGTERM
in mid-epoch write a checkpoint and exit 130 / 143 with one line; ``frcnn train --out OUT
--resume`` alone reads the run's settings from OUT/config.json and ends with the weights of
an uninterrupted run; an option that contradicts the recorded run is refused, naming both
values; config.json records the data specs and image counts.

Both signalled runs start as subprocesses when the module's fixture starts, in parallel
(TensorFlow's start-up dominates), and are signalled right after an in-epoch checkpoint at
step 18 (``--checkpoint-every-steps 18``, 2 steps into epoch 2), so that the signal lands in
the middle of epoch 2; the next periodic checkpoint would be the epoch end at 32, so a state
between 19 and 31 can only come from the signal.
"""
import json
import signal
import time

import keras
import numpy as np
import pytest

from helpers.reliability import TINY_SET, error_lines, finish, read_state, start_frcnn
from test_cli import call, one_error_line
from test_training_faults import WEIGHT_TOLERANCE

# 32 images in batches of 2: 16 steps an epoch, 3 epochs; a periodic checkpoint at step 18.
IMAGES, BATCH, EPOCHS, EVERY = 32, 2, 3, 18
STEPS = IMAGES // BATCH


def args(out, *extra):
    return ["train", "--out", str(out), "--epochs", str(EPOCHS), "--train-images", str(IMAGES),
            "--batch-size", str(BATCH), "--checkpoint-every-steps", str(EVERY), "--quiet",
            *TINY_SET, *extra]


@pytest.fixture(scope="module")
def signalled(tmp_path_factory):
    """``{signal: (returncode, stdout, stderr, out folder)}``: each run signalled once,
    in mid-epoch 2."""
    root = tmp_path_factory.mktemp("signalled")
    runs = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        out = root / signal.Signals(signum).name
        runs[signum] = (out, start_frcnn(args(out)))
    pending = dict(runs)
    deadline = time.monotonic() + 240
    while pending and time.monotonic() < deadline:
        for signum, (out, process) in list(pending.items()):
            state = read_state(out)
            if process.poll() is not None:
                del pending[signum]
            elif state and state["step"] >= EVERY:        # in mid-epoch 2
                process.send_signal(signum)
                del pending[signum]
        time.sleep(0.02)
    return {signum: (*finish(process, timeout=120), out) for signum, (out, process) in runs.items()}


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_in_mid_epoch_writes_a_checkpoint_and_exits_with_one_line(signalled, signum, code):
    returncode, stdout, stderr, out = signalled[signum]
    lines = error_lines(stderr)
    assert returncode == code, stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"frcnn: interrupted by {signal.Signals(signum).name}: "), lines
    state = read_state(out)
    assert state["epoch"] == 1 and EVERY <= state["step"] < 2 * STEPS, state   # in mid-epoch 2
    assert state["step"] == STEPS + state["epoch_step"]
    assert f"checkpoint at step {state['step']} ({state['epoch_step']} steps into epoch 2)" in lines[0]
    assert f"frcnn train --out {out} --resume" in lines[0]
    assert stdout == "" and not (out / "model.keras").exists()
    # The checkpoint holds that step's optimizer state (what --resume needs).
    saved = keras.models.load_model(out / "checkpoints" / "last.keras", safe_mode=True)
    assert int(saved.optimizer.iterations.numpy()) == state["step"]


def test_resume_alone_continues_the_run_as_if_never_interrupted(signalled, tmp_path, capsys):
    _, _, _, out = signalled[signal.SIGINT]
    interrupted = read_state(out)
    header = (out / "history.csv").read_text().splitlines()[0]
    code = call(["train", "--out", out, "--resume"])          # no other option
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    assert (f"resuming from epoch 1 (step {interrupted['step']}, {interrupted['epoch_step']} steps "
            f"into epoch 2)") in captured.err
    # Keras' epoch lines count to the run's total, also in the first (one-epoch) fit.
    assert "Epoch 2/3" in captured.err and "Epoch 3/3" in captured.err
    assert "Epoch 2/2" not in captured.err
    assert read_state(out) == {"epoch": EPOCHS, "step": EPOCHS * STEPS, "epoch_step": 0}
    history = (out / "history.csv").read_text().splitlines()
    assert history[0] == header and [int(r.split(",")[0]) for r in history[1:]] == [0, 1, 2]
    assert all(len(r.split(",")) == len(header.split(",")) for r in history[1:])

    reference = tmp_path / "uninterrupted"
    assert call(args(reference)) == 0
    resumed = keras.models.load_model(out / "model.keras", safe_mode=True)
    straight = keras.models.load_model(reference / "model.keras", safe_mode=True)
    assert int(resumed.optimizer.iterations.numpy()) == int(straight.optimizer.iterations.numpy()) \
        == EPOCHS * STEPS
    differences = [float(np.max(np.abs(a - b))) for a, b in zip(resumed.get_weights(), straight.get_weights())]
    assert max(differences) < WEIGHT_TOLERANCE, differences
    # The two run folders record the same run (the resumed one as it was started).
    a, b = (json.loads((p / "config.json").read_text()) for p in (out, reference))
    assert a["command"] == b["command"] and a["train"] == b["train"] and a["data"] == b["data"]


# ----------------------------------------------------------------------------- config.json
@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    from helpers.reliability import copy_run, trained_run
    return copy_run(trained_run(tmp_path_factory), tmp_path_factory.mktemp("recorded") / "run")


@pytest.mark.parametrize("option, value, shown", [
    ("--learning-rate", "0.5", "learning_rate 0.001"), ("--batch-size", "2", "batch_size 4"),
    ("--data", "shapes:val", "data shapes"), ("--val-data", "shapes:val", "val_data null"),
    ("--preset", "voc_vgg16", "preset shapes_cpu"), ("--train-images", "9", "train_images 8"),
    ("--set", "rpn_channels=32", "rpn_channels=16")])
def test_an_option_that_contradicts_the_recorded_run_is_refused_naming_both(recorded, option, value,
                                                                             shown, capsys):
    before = (recorded / "checkpoints" / "last.keras").read_bytes()
    line = one_error_line(capsys, call(["train", "--out", recorded, "--resume", option, value]),
                          f"{option} {value} contradicts", f"{recorded / 'config.json'} ({shown})")
    assert "Traceback" not in line
    assert (recorded / "checkpoints" / "last.keras").read_bytes() == before


def test_options_equal_to_the_recorded_run_are_accepted(recorded, capsys):
    # The run is complete (1 of 1 epochs): resuming with its own options trains nothing more.
    code = call(["train", "--out", recorded, "--resume", "--epochs", "1", "--batch-size", "4",
                 "--data", "shapes", "--set", "rpn_channels=16", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert read_state(recorded) == {"epoch": 1, "step": 2, "epoch_step": 0}


def test_resume_without_a_command_record_says_so(recorded, tmp_path, capsys):
    import shutil
    copy = shutil.copytree(recorded, tmp_path / "old")
    config = json.loads((copy / "config.json").read_text())
    del config["command"]
    (copy / "config.json").write_text(json.dumps(config))
    one_error_line(capsys, call(["train", "--out", copy, "--resume"]), "config.json", "'command'")


def test_config_json_records_the_data_spec_and_image_counts(recorded):
    config = json.loads((recorded / "config.json").read_text())
    assert config["data"] == {"spec": "shapes", "name": config["data"]["name"], "images": 8,
                              "classes": config["model"]["class_names"]}
    assert config["val_data"] is None
    assert config["command"]["data"] == "shapes" and config["command"]["train_images"] == 8
    assert config["command"]["epochs"] == 1 and config["command"]["batch_size"] == 4
    # No shapes-generation counts that are not this run's (the preset's 2000 / 100 / 300).
    assert not {"train_images", "val_images", "test_images"} & set(config["train"])


# ----------------------------------------------------------------------------- controls
def test_training_control_flags_reach_the_train_settings_and_are_recorded(tmp_path, capsys, monkeypatch):
    from frcnn_lib.datasets import shapes
    monkeypatch.setitem(shapes.DEFAULT_NUM_IMAGES, "val", 2)
    out = tmp_path / "run"
    code = call(["train", "--out", out, "--epochs", "1", "--train-images", "4", "--batch-size", "4",
                 "--val-data", "shapes:val", "--quiet", *TINY_SET, "--early-stopping", "2",
                 "--no-keep-best", "--scale-jitter", "0.8,1.25", "--photometric", "0.5"])
    assert code == 0, capsys.readouterr().err[-3000:]
    config = json.loads((out / "config.json").read_text())
    expected = {"early_stopping_patience": 2, "keep_best": False, "scale_jitter": [0.8, 1.25],
                "photometric": 0.5}
    assert {k: config["train"][k] for k in expected} == expected
    assert {k: config["command"][k] for k in ("early_stopping", "keep_best", "scale_jitter", "photometric")} \
        == {"early_stopping": 2, "keep_best": False, "scale_jitter": [0.8, 1.25], "photometric": 0.5}
    assert config["val_data"]["spec"] == "shapes:val" and config["val_data"]["images"] == 2
    # --resume keeps them; a contradicting one is refused.
    one_error_line(capsys, call(["train", "--out", out, "--resume", "--photometric", "0.2"]),
                   "--photometric 0.2 contradicts", "(photometric 0.5)")


@pytest.mark.parametrize("option, value", [("--scale-jitter", "2,1"), ("--scale-jitter", "0.8"),
                                           ("--photometric", "1.5"), ("--early-stopping", "0")])
def test_bad_control_values_give_one_line(option, value, tmp_path, capsys):
    one_error_line(capsys, call(["train", "--out", tmp_path / "r", option, value]), option)
    assert not (tmp_path / "r").exists()


def test_settings_compare_as_values_so_integer_overrides_resume():
    """``--set anchor_scales=[32, 64]`` is stored by the model as floats: a resume must not
    take ``[32, 64]`` for a contradiction of ``[32.0, 64.0]`` (test_pretrained resumes such a
    run through the real command line)."""
    from frcnn_lib.cli.train import _same_setting

    assert _same_setting([32, 64], [32.0, 64.0]) and _same_setting((0.5, 1), [0.5, 1.0])
    assert _same_setting(16, 16.0) and _same_setting("roi_align", "roi_align")
    assert not _same_setting([32, 64], [32.0, 65.0]) and not _same_setting([32], [32, 64])
    assert not _same_setting(True, 1) and not _same_setting("1", 1) and not _same_setting(None, 0)


def test_frcnn_train_keeps_the_best_and_stops_early(tmp_path, capsys, monkeypatch):
    """Through the command line: with --val-data the best model is kept by default, and
    --early-stopping 1 ends the run once val_mAP stops rising.  A learning rate of 1e-12 leaves
    the float32 weights as they are, so val_mAP is the same after each epoch: the run stops
    after epoch 2 of 3, and best.keras / best.json are epoch 1's."""
    from frcnn_lib.datasets import shapes
    monkeypatch.setitem(shapes.DEFAULT_NUM_IMAGES, "val", 2)
    out = tmp_path / "run"
    code = call(["train", "--out", out, "--epochs", "3", "--train-images", "4", "--batch-size", "4",
                 "--val-data", "shapes:val", "--quiet", *TINY_SET, "--early-stopping", "1",
                 "--learning-rate", "1e-12"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    assert "stopped after epoch 2" in captured.err
    best = json.loads((out / "best.json").read_text())
    assert best["epoch"] == 1 and best["step"] == 1
    assert (out / "best.keras").is_file() and (out / "model.keras").is_file()
    rows = (out / "history.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and "val_mAP" in rows[0]           # header + epochs 1 and 2
    # Fewer epochs than the run records contradict it; more extend it (next test).
    one_error_line(capsys, call(["train", "--out", out, "--resume", "--epochs", "2"]),
                   "--epochs 2 contradicts", "(epochs 3)")


def test_more_epochs_on_resume_extend_the_run(recorded, tmp_path, capsys):
    """``--resume --epochs N`` with N above the recorded epochs trains on to N (torchvision's
    reference scripts extend a run the same way) and records N for the next resume."""
    from helpers.reliability import copy_run
    run = copy_run(recorded, tmp_path / "run")
    assert call(["train", "--out", run, "--resume", "--epochs", "2", "--quiet"]) == 0
    assert "extending the run from 1 to 2 epochs" in capsys.readouterr().err
    assert read_state(run) == {"epoch": 2, "step": 4, "epoch_step": 0}
    assert json.loads((run / "config.json").read_text())["command"]["epochs"] == 2
