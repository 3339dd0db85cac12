"""Shared pieces of the reliability tests (test_cli, test_training_faults, test_bad_input).

* ``TINY_SET``: ``--set`` overrides that make the ``shapes_cpu`` detector tiny (seconds per
  epoch on 2 CPU cores); ``train_args`` builds a whole ``frcnn train`` command line.
* ``run_frcnn``: the ``frcnn`` console script (or ``python -m frcnn_lib.cli``) in a
  subprocess with a timeout.
* ``error_lines``: stderr without TensorFlow's C++ log (both its formats), which
  ``python -m frcnn_lib.cli`` and in-process TensorFlow print at import whatever
  ``TF_CPP_MIN_LOG_LEVEL`` says (the ``frcnn`` console script filters it itself).
* ``trained_run``: one tiny run folder trained in-process by ``frcnn train``, shared by the
  test modules of a session (training it costs a graph trace, ~20 s on a busy CPU).
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

TINY = {
    "rpn_channels": 16, "roi_head_units": 16, "rpn_pre_nms_top_n_train": 200,
    "rpn_post_nms_top_n_train": 50, "rpn_pre_nms_top_n_test": 200,
    "rpn_post_nms_top_n_test": 20, "roi_batch_size": 16,
}
TINY_SET = [arg for key, value in TINY.items() for arg in ("--set", f"{key}={value}")]

# TensorFlow's native logging, printed by C++, not by frcnn: the absl format of TF >= 2.17
# ("I0000 00:00:1796149246.689115    8919 port.cc:153] ..."), the older format of TF 2.16
# ("2026-12-01 08:15:38.510523: E external/local_xla/.../cuda_fft.cc:479] ..."), absl's
# preamble and the CPU feature note's second line.
_TF_NOISE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s|"
                       r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] |"
                       r"WARNING: All log messages before absl|To enable the following instructions:)")


def read_state(out):
    """``OUT/checkpoints/state.json`` of a run folder, or None while it is missing or half written."""
    try:
        return json.loads((Path(out) / "checkpoints" / "state.json").read_text())
    except (OSError, ValueError):
        return None


def train_args(out, epochs=1, images=8, batch_size=4, *extra):
    return ["train", "--out", str(out), "--epochs", str(epochs), "--train-images", str(images),
            "--batch-size", str(batch_size), "--quiet", *TINY_SET, *extra]


def frcnn_command():
    """The installed ``frcnn`` console script of this interpreter, else ``python -m``."""
    script = os.path.join(os.path.dirname(sys.executable), "frcnn")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "frcnn_lib.cli"]


def subprocess_env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1",
               CUDA_VISIBLE_DEVICES="-1")
    return env


def start_frcnn(args, cwd=None, module=False):
    """``Popen`` of ``frcnn ARGS`` (``python -m frcnn_lib.cli ARGS`` if ``module``)."""
    command = [sys.executable, "-m", "frcnn_lib.cli"] if module else frcnn_command()
    return subprocess.Popen(command + [str(a) for a in args], cwd=cwd, env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process, timeout=180):
    """``(returncode, stdout, stderr)`` of a started process; kills it on timeout."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"timed out after {timeout} s; stderr: {err[-2000:]}") from None
    return process.returncode, out, err


def run_frcnn(args, timeout=180, cwd=None, module=False):
    return finish(start_frcnn(args, cwd, module), timeout)


def error_lines(stderr):
    """Lines of ``stderr`` that frcnn (or Python) printed, TensorFlow's C++ log left out."""
    return [line for line in stderr.splitlines() if line.strip() and not _TF_NOISE.match(line)]


_RUNS = {}


def trained_run(tmp_path_factory):
    """A run folder written by in-process ``frcnn train`` for 1 epoch on 8 shapes images
    (batch 4, so 2 steps).  Computed once per session; copy it before changing it."""
    if "run" not in _RUNS:
        from frcnn_lib.cli import main

        out = tmp_path_factory.mktemp("shared_run") / "run"
        code = main(train_args(out))
        assert code == 0, "the shared tiny training run failed"
        _RUNS["run"] = out
    return _RUNS["run"]


def copy_run(run, destination):
    shutil.copytree(run, destination)
    return destination
