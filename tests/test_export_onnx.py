"""ONNX export (tf2onnx -> onnxruntime): the same detections as the Keras model, an image with
zero detections included, a clear error without the converter, and the command line."""
import importlib.util

import keras
import numpy as np
import pytest

from frcnn_lib.export import onnx as export_onnx
from frcnn_lib.runtime.errors import FrcnnError
from frcnn_lib.export.onnx import run_onnx
from helpers.reliability import finish, start_frcnn
from helpers.synthetic import make_batch, tiny_model


def assert_same_detections(got, want):
    """``got`` (onnxruntime) has ``want``'s (Keras) detections, image by image."""
    assert set(got) == {"boxes", "scores", "labels", "num_detections"}
    np.testing.assert_array_equal(got["num_detections"], want["num_detections"])
    for b in range(len(want["num_detections"])):
        n = int(want["num_detections"][b])
        np.testing.assert_allclose(got["scores"][b, :n], want["scores"][b, :n], atol=1e-4)
        assert (got["labels"][b, n:] == -1).all()
        # The same detections; the order of (near-)tied scores may differ between runtimes, and so
        # may the choice among boxes tied with the last one kept (detections_max cuts there).
        last = want["scores"][b, n - 1] if n else 0.0
        for box, label, score in zip(got["boxes"][b, :n], got["labels"][b, :n], got["scores"][b, :n]):
            if score < last + 1e-4:
                continue
            same = ((want["labels"][b, :n] == label) & (np.abs(want["scores"][b, :n] - score) < 1e-4)
                    & (np.abs(want["boxes"][b, :n] - box).max(-1) < 1e-2))
            assert same.any(), (b, box, label, score)


def test_onnx_export_of_a_model_with_no_detections(tmp_path):
    keras.utils.set_random_seed(0)
    model = tiny_model(detections_score_threshold=0.999)
    images, _ = make_batch()
    path = tmp_path / "model.onnx"
    assert model.export(str(path), format="onnx") > 0
    assert not (tmp_path / "model.onnx.partial").exists()
    want = {k: v.numpy() for k, v in model(images).items()}
    assert (want["num_detections"] == 0).all()
    assert_same_detections(run_onnx(path, images), want)     # the whole batch: B is dynamic


def test_onnx_export_without_the_converter_says_what_to_install(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else real(name, *a))
    with pytest.raises(FrcnnError, match=r"tf2onnx.*frcnn_lib\[onnx\]"):
        export_onnx.export_onnx(tiny_model(), str(tmp_path / "m.onnx"))
    assert not list(tmp_path.iterdir())


def test_a_failed_conversion_names_the_model_and_leaves_no_file(tmp_path):
    with pytest.raises(FrcnnError, match=r"ONNX export of .* failed \(tf2onnx, opset 1\)"):
        tiny_model().export(str(tmp_path / "m.onnx"), format="onnx", opset=1)   # no such opset
    assert not list(tmp_path.iterdir())


def test_frcnn_export_onnx_from_the_command_line(tmp_path):
    keras.utils.set_random_seed(0)
    model = tiny_model(detections_score_threshold=0.0)
    model.save(str(tmp_path / "m.keras"))
    code, out, err = finish(start_frcnn(["export", "--model", tmp_path / "m.keras", "--format",
                                         "onnx", "--out", tmp_path / "m.onnx"]), timeout=300)
    assert code == 0, err[-2000:]
    assert "ONNX model written" in out and "tf2onnx" not in err
    images, _ = make_batch()
    want = {k: v.numpy() for k, v in model(images).items()}
    assert (want["num_detections"] > 0).all()                # many detections (score threshold 0)
    assert_same_detections(run_onnx(tmp_path / "m.onnx", images), want)
