"""``--precision``: a model built under a dtype policy keeps it through save, load and resume,
and the process's global policy is left as it was."""
import json

import keras
import numpy as np
import pytest

from frcnn_lib import cli
from frcnn_lib.runtime.errors import FrcnnError
from frcnn_lib.training.precision import PRECISIONS, check_precision, policy_scope, precision_of
from helpers.reliability import train_args
from helpers.synthetic import make_batch, tiny_model


def _call(argv):
    try:
        return cli.main([str(a) for a in argv])
    except SystemExit as stop:
        return stop.code


def test_policy_scope_builds_under_the_policy_and_restores_the_global_one():
    assert keras.config.dtype_policy().name == "float32"
    with policy_scope("mixed_bfloat16"):
        model = tiny_model()
    assert precision_of(model) == "mixed_bfloat16" and model.compute_dtype == "bfloat16"
    assert {w.dtype for w in model.weights} == {"float32"}          # variables stay float32
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(RuntimeError), policy_scope("mixed_float16"):
        raise RuntimeError("a failed build")
    assert keras.config.dtype_policy().name == "float32"
    with policy_scope(None):                                          # leaves it alone
        assert precision_of(tiny_model()) == "float32"


def test_a_bfloat16_model_trains_and_detects_in_float32_boxes():
    with policy_scope("mixed_bfloat16"):
        model = tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    images, targets = make_batch()
    logs = model.train_on_batch(images, targets, return_dict=True)
    assert all(np.isfinite(v) for v in logs.values()), logs
    out = model.predict(images, verbose=0)
    assert out["boxes"].dtype == np.float32 and np.all(np.isfinite(out["boxes"]))


@pytest.mark.parametrize("name", ["float64", "bf16", None, 16])
def test_an_unknown_precision_names_the_field(name):
    with pytest.raises(FrcnnError, match="precision="):
        check_precision(name)


def test_frcnn_train_precision_survives_save_and_refuses_a_changed_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert _call(train_args(out, 1, 8, 4, "--precision", "mixed_bfloat16")) == 0
    assert keras.config.dtype_policy().name == "float32"             # the process is untouched
    loaded = keras.models.load_model(out / "model.keras")
    assert precision_of(loaded) == "mixed_bfloat16"
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["dtype"]["config"]["name"] == "mixed_bfloat16"
    capsys.readouterr()
    before = (out / "checkpoints" / "last.keras").read_bytes()
    code = _call(train_args(out, 2, 8, 4, "--resume", "--precision", "float32"))
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("frcnn: error: --precision float32"), err
    assert "mixed_bfloat16" in err[0]
    assert (out / "checkpoints" / "last.keras").read_bytes() == before
    # Without --precision the resumed run keeps the checkpoint's.
    assert _call(train_args(out, 2, 8, 4, "--resume")) == 0
    assert precision_of(keras.models.load_model(out / "model.keras")) == "mixed_bfloat16"


def test_frcnn_train_rejects_an_unknown_precision_in_one_line(tmp_path, capsys):
    code = _call(train_args(tmp_path / "run", 1, 8, 4, "--precision", "float64"))
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and "--precision" in err[-1] and "float64" in err[-1]
    assert not (tmp_path / "run").exists()
    assert set(PRECISIONS) <= set(err[-1].replace("'", " ").replace(",", " ").split())


def test_frcnn_demo_precision_reaches_the_report(tmp_path):
    out = tmp_path / "demo"
    assert _call(["demo", "--out", out, "--epochs", "1", "--train-images", "8",
                  "--precision", "mixed_bfloat16", "--seed", "3", "--quiet"]) == 0
    assert keras.config.dtype_policy().name == "float32"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["precision"] == "mixed_bfloat16" and metrics["epochs"] == 1 and metrics["seed"] == 3
    assert (metrics["preset"], metrics["backbone"], metrics["image_side"]) == ("shapes_224", "small_deep", 224)
    assert 0.0 <= metrics["mAP_voc07"] <= 1.0
    assert "mixed_bfloat16" in (out / "report.md").read_text()
    model = keras.models.load_model(out / "model.keras")
    assert precision_of(model) == "mixed_bfloat16" and model.settings["seed"] == 3


def test_frcnn_demo_trains_the_shapes_preset_it_is_given(tmp_path, capsys):
    out = tmp_path / "course"
    assert _call(["demo", "--out", out, "--preset", "shapes_cpu", "--epochs", "1",
                  "--train-images", "4", "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["preset"], metrics["backbone"], metrics["image_side"]) == ("shapes_cpu", "small", 160)
    assert "`shapes_cpu` preset (`small` backbone, 160 px images" in (out / "report.md").read_text()
    model = keras.models.load_model(out / "model.keras")
    assert model.settings["image_min_side"] == 160 and model.settings["detections_nms_iou"] == 0.3
    # Presets on other data are refused: in one line by the command, by name through the API.
    code = _call(["demo", "--out", tmp_path / "voc", "--preset", "voc_vgg16"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and "--preset" in err[-1] and "shapes_224" in err[-1]
    from frcnn_lib.cli.report import DemoSettings, run_demo
    with pytest.raises(FrcnnError, match="preset 'voc_vgg16'.*shapes_cpu, shapes_224"):
        run_demo(DemoSettings(out=str(tmp_path / "voc"), preset="voc_vgg16"), verbose=0)
    assert not (tmp_path / "voc").exists()


def test_frcnn_demo_refuses_a_negative_seed_in_one_line(tmp_path, capsys):
    code = _call(["demo", "--out", tmp_path / "demo", "--seed", "-1"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and "--seed" in err[-1] and "-1" in err[-1]
    assert not (tmp_path / "demo").exists()


class _Stop(Exception):
    """Raised by :class:`_InitialWeights` to end the run once the weights are seen."""


class _InitialWeights(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = [np.array(w) for w in self.model.get_weights()]
        raise _Stop


def _demo_initial_weights(tmp_path, seed):
    """The weights ``run_demo`` starts training from with ``seed`` (the run stops there)."""
    from frcnn_lib.cli.report import DemoSettings, run_demo
    grab = _InitialWeights()
    settings = DemoSettings(out=str(tmp_path / f"seed{seed}"), epochs=1, train_images=4,
                            test_images=4, seed=seed)
    with pytest.raises(_Stop):
        run_demo(settings, verbose=0, announce=lambda line: None, extra_callbacks=(grab,))
    return grab.weights


def test_frcnn_demo_seed_fixes_the_initial_weights(tmp_path):
    first, again, other = (_demo_initial_weights(tmp_path / name, seed)
                           for name, seed in (("a", 5), ("b", 5), ("c", 6)))
    assert len(first) > 10 and all(np.array_equal(x, y) for x, y in zip(first, again))
    assert not all(np.array_equal(x, y) for x, y in zip(first, other))
