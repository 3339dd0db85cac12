"""First contact: ``frcnn`` starts without TensorFlow, stays quiet, and says clearly what is wrong.

* ``frcnn --help`` and argument errors never import TensorFlow (``-X importtime`` lists
  every module a process imports); ``import frcnn_lib`` still registers ``FasterRCNN``.
* TensorFlow's native log (both formats) is off stderr by default, back with ``--verbose``,
  and real errors stay visible.
* A Keras backend other than TensorFlow is a one-line ``FrcnnError`` naming KERAS_BACKEND.
* Progress written to a pipe has no escape codes; on a terminal it is Keras' live bar.
"""
import json
import os
import pty
import re
import subprocess
import sys
import time

import pytest

from frcnn_lib.runtime import quiet
from helpers.reliability import _TF_NOISE, error_lines

SCRIPT = os.path.join(os.path.dirname(sys.executable), "frcnn")


def clean_env(**extra):
    """The user's environment as a newcomer has it: no log level set, TensorFlow backend."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "FRCNN_VERBOSE", "KERAS_BACKEND", "KERAS_HOME")}
    env.update(CUDA_VISIBLE_DEVICES="-1", PYTHONUNBUFFERED="1", **extra)
    return env


def run(command, env=None, timeout=300, **kwargs):
    return subprocess.run([str(c) for c in command], env=env or clean_env(), capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def imported_modules(stderr):
    """Top-level names of the modules ``python -X importtime`` reports as imported."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


# ----------------------------------------------------------------------------- start-up
@pytest.mark.parametrize("argv, code", [
    (["--help"], 0),
    (["train", "--help"], 0),
    (["train", "--out", "x", "--epochs", "0"], 2),                   # argparse error
    (["evaluate", "--model", "no/such.keras", "--data", "shapes:test"], 2),   # frcnn's own check
    (["frobnicate"], 2),
])
def test_console_script_answers_without_importing_tensorflow(argv, code):
    assert os.path.exists(SCRIPT), "the frcnn console script is not installed"
    result = run([sys.executable, "-X", "importtime", SCRIPT, *argv])
    assert result.returncode == code, result.stderr[-2000:]
    modules = imported_modules(result.stderr)
    assert "argparse" in modules                                    # the parser did load
    heavy = modules & {"tensorflow", "keras"}
    assert not heavy, sorted(heavy)
    if code == 2:
        lines = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
        assert len(lines) == 1 and lines[0].startswith("frcnn: error: "), lines


def test_help_wall_time_is_printed():
    start = time.perf_counter()
    result = run([SCRIPT, "--help"])
    wall = time.perf_counter() - start
    assert result.returncode == 0 and "usage: frcnn" in result.stdout
    assert result.stderr == ""
    print(f"\nfrcnn --help: {wall:.2f} s wall")


def test_import_frcnn_lib_registers_the_model_eagerly_and_the_console_defers_it():
    eager = ("import sys, keras, frcnn_lib\n"
             "assert 'tensorflow' in sys.modules\n"
             "assert keras.saving.get_registered_object('frcnn>FasterRCNN') is frcnn_lib.FasterRCNN\n")
    deferred = ("import sys, _frcnn_console, frcnn_lib\n"
                "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
                "cls = frcnn_lib.FasterRCNN\n"        # PEP 562: loads and registers the model now
                "import keras\n"
                "assert keras.saving.get_registered_object('frcnn>FasterRCNN') is cls\n")
    for code in (eager, deferred):
        result = run([sys.executable, "-c", code])
        assert result.returncode == 0, result.stderr[-3000:]


def test_import_frcnn_lib_is_as_quiet_as_the_cli():
    # A newcomer's environment (no TF_CPP_MIN_LOG_LEVEL): `import frcnn_lib`, then a first
    # TensorFlow op, print nothing on stderr (TensorFlow alone prints 5-6 native lines here).
    code = ("import os, frcnn_lib, tensorflow as tf\n"
            "tf.reduce_sum(tf.ones([3])).numpy()\n"
            "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])\n")
    result = run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == "", result.stderr
    assert result.stdout.split() == ["3"]
    # The user's own level wins: kept as set (at 2 TensorFlow still prints its errors, e.g.
    # a failed cuInit at the first op), and the start-up lines that obey no level are gone.
    result = run([sys.executable, "-c", code], env=clean_env(TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0 and result.stdout.split() == ["2"], result.stderr[-3000:]
    startup = re.compile(r"^([IW]\d{4} |WARNING: All log messages before absl)")
    assert not [line for line in result.stderr.splitlines() if startup.match(line)], result.stderr
    # Asking for TensorFlow's log brings it back.
    for env in (clean_env(FRCNN_VERBOSE="1"), clean_env(TF_CPP_MIN_LOG_LEVEL="0")):
        loud = run([sys.executable, "-c", "import frcnn_lib"], env=env)
        assert loud.returncode == 0, loud.stderr[-3000:]
        assert [line for line in loud.stderr.splitlines() if _TF_NOISE.match(line)], loud.stderr


PRESET_OPTIMIZERS = {
    "shapes_cpu": dict(optimizer="adam", learning_rate=1e-3, schedule="cosine", epochs=2),
    "coco_resnet50": dict(optimizer="sgd", learning_rate=1e-3, momentum=0.9, schedule="step",
                          step_epochs=(1,), epochs=2, warmup_steps=2, warmup_factor=0.1),
}


def test_import_frcnn_lib_is_enough_to_load_a_model_trained_with_the_presets_optimizer(tmp_path):
    """``frcnn train`` compiles with ``training.make_optimizer``: a fused optimizer, perhaps a
    warmup schedule. A fresh process that imports only keras and frcnn_lib (the README's
    load snippet) must rebuild them: a model trained in one session, loaded in the next."""
    from frcnn_lib.training.runs import make_optimizer
    from helpers.synthetic import make_batch, tiny_model
    want = {}
    for name, train in PRESET_OPTIMIZERS.items():
        model = tiny_model()
        model.compile(optimizer=make_optimizer(train, steps_per_epoch=2))
        model.train_on_batch(*make_batch())
        model.save(tmp_path / f"{name}.keras")
        want[name] = [type(model.optimizer).__name__, "1", type(model.optimizer._learning_rate).__name__]
    assert [w[0] for w in want.values()] == ["FusedAdam", "FusedSGD"]
    code = ("import keras, frcnn_lib\n"
            f"for name in {list(want)!r}:\n"
            f"    model = keras.models.load_model({str(tmp_path)!r} + f'/{{name}}.keras')\n"
            "    print(name, type(model.optimizer).__name__, int(model.optimizer.iterations),\n"
            "          type(model.optimizer._learning_rate).__name__)\n")
    result = run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr[-3000:]
    got = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.split()[:1]
           and line.split()[0] in want}
    assert got == want, result.stdout


# ----------------------------------------------------------------------------- quiet
OLD_FORMAT = ("2026-12-01 08:15:38.510523: E external/local_xla/xla/stream_executor/cuda/"
              "cuda_fft.cc:479] Unable to register cuFFT factory: Attempting to register factory "
              "for plugin cuFFT when one has already been registered")
NEW_FORMAT = ("E0000 00:00:1796149253.320857    8919 cuda_platform.cc:52] failed call to cuInit: "
              "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)")
NATIVE = [OLD_FORMAT, NEW_FORMAT,
          "2026-12-01 18:22:27.805306: I tensorflow/core/util/port.cc:113] oneDNN custom operations are on.",
          "I0000 00:00:1796149246.689457    8919 cudart_stub.cc:31] Could not find cuda drivers on your machine",
          "W0000 00:00:1796149246.689457    8919 op_level_cost_estimator.cc:699] Error in PredictCost() for the op",
          "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
          "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
          "with the appropriate compiler flags."]
REAL = ["frcnn: error: --model m.keras: does not exist; expected a file",
        "Traceback (most recent call last):",
        '  File "/x/y.py", line 3, in <module>',
        "tensorflow.python.framework.errors_impl.ResourceExhaustedError: OOM when allocating tensor",
        "WARNING:absl:You are saving your model as an HDF5 file",
        "/x/keras/src/layers/layer.py:421: UserWarning: `build()` was called on layer",
        "E0000 is not a log line without its time and file"]


@pytest.mark.parametrize("line", NATIVE)
def test_native_log_lines_of_both_formats_are_recognised(line):
    assert quiet.NATIVE_LOG.match(line)
    assert _TF_NOISE.match(line)                     # the tests' own, separately written pattern


@pytest.mark.parametrize("line", REAL)
def test_real_messages_are_not_taken_for_native_log(line):
    assert not quiet.NATIVE_LOG.match(line)


def test_filter_drops_native_lines_written_to_fd2_and_keeps_the_rest():
    code = ("import os, sys, _frcnn_console\n"      # frcnn_lib without TensorFlow
            "from frcnn_lib.runtime.quiet import native_log_filtered\n"
            "with native_log_filtered():\n"
            f"    os.write(2, {(OLD_FORMAT + chr(10) + 'real native error' + chr(10)).encode()!r})\n"
            f"    os.write(2, {(NEW_FORMAT + chr(10)).encode()!r})\n"
            "    sys.stderr.write('python warning\\n')\n"
            "print('stdout untouched')\n")
    result = run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["real native error", "python warning"]
    assert result.stdout == "stdout untouched\n"


def test_verbose_flag_and_variable(monkeypatch):
    assert quiet.verbose_requested(True)
    monkeypatch.delenv("FRCNN_VERBOSE", raising=False)
    assert not quiet.verbose_requested(False)
    for value, expected in (("1", True), ("yes", True), ("0", False), ("", False)):
        monkeypatch.setenv("FRCNN_VERBOSE", value)
        assert quiet.verbose_requested(False) is expected, value


def test_tensorflow_log_hidden_by_default_shown_with_verbose_real_error_kept(tmp_path):
    """A command that imports TensorFlow and then fails on the user's file."""
    fake = tmp_path / "fake.keras"
    fake.write_text("not a keras archive")
    argv = [SCRIPT, "evaluate", "--model", fake, "--data", "shapes:test"]
    quiet_run, verbose_run = run(argv), run(argv + ["--verbose"])
    for result in (quiet_run, verbose_run):
        assert result.returncode == 2, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
    lines = quiet_run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("frcnn: error: ") and str(fake) in lines[0], lines
    native = [line for line in verbose_run.stderr.splitlines() if _TF_NOISE.match(line)]
    assert native, verbose_run.stderr                 # TensorFlow's own lines are back
    assert error_lines(verbose_run.stderr) == lines   # and the real error is the same


# ----------------------------------------------------------------------------- backend
def test_jax_backend_is_a_clear_error_at_import():
    result = run([sys.executable, "-c", "import frcnn_lib"], env=clean_env(KERAS_BACKEND="jax"))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("frcnn_lib.runtime.errors.FrcnnError: Keras backend 'jax' (from KERAS_BACKEND)"), last
    assert "KERAS_BACKEND=tensorflow" in last
    assert "No module named 'jax'" not in result.stderr   # not Keras' own failure


def test_backend_from_keras_json_is_named(tmp_path):
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "torch", "floatx": "float32"}))
    result = run([sys.executable, "-c", "import frcnn_lib"], env=clean_env(KERAS_HOME=str(tmp_path)))
    last = result.stderr.strip().splitlines()[-1]
    assert "Keras backend 'torch'" in last and str(tmp_path / "keras.json") in last, last
    assert "KERAS_BACKEND=tensorflow" in last


def test_console_script_with_jax_backend_exits_2_with_one_line(tmp_path):
    model = tmp_path / "m.keras"
    model.write_text("x")
    result = run([SCRIPT, "evaluate", "--model", model, "--data", "shapes:test"],
                 env=clean_env(KERAS_BACKEND="jax"))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("frcnn: error: Keras backend 'jax'"), lines
    assert "KERAS_BACKEND=tensorflow" in lines[0]


# ----------------------------------------------------------------------------- progress
PROGRESS = """
import keras, numpy as np
from frcnn_lib.runtime.progress import fit_verbosity, progress_bar, stage
stage("evaluating")
for _ in progress_bar(range(8), "detect"):
    pass
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse")
model.fit(np.zeros((16, 3)), np.zeros((16, 1)), batch_size=4, epochs=2, verbose=fit_verbosity(1))
"""


def test_progress_in_a_pipe_is_plain_lines():
    result = run([sys.executable, "-c", PROGRESS])
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    for control in ("\x1b[", "\r", "\b"):
        assert control not in out, repr(out)
    lines = out.splitlines()
    assert lines[0] == "evaluating ..."
    assert "detect: 8 batches" in lines and any(re.match(r"detect: 8/8 done in", x) for x in lines)
    assert sum(bool(re.match(r"4/4 - .*loss: ", x)) for x in lines) == 2, out   # one per epoch


def test_progress_on_a_terminal_is_a_live_bar():
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-c", PROGRESS], env=clean_env(), stdout=slave,
                                   stderr=subprocess.DEVNULL)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:           # the terminal closed: the child is done
                break
            if not data:
                break
            chunks.append(data)
        assert process.wait(timeout=300) == 0
    finally:
        os.close(master)
    out = b"".join(chunks).decode(errors="replace")
    assert "\x1b[" in out and "\r" in out, repr(out[-500:])   # Keras' bar, redrawn in place
