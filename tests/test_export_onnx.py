"""ONNX export (tf2onnx -> onnxruntime): the command line writes a file on the detection
contract with the model's class names in its metadata_props and ``detect``'s detections; a
clear error without the converter or when it fails, and no partial file.  (Each format
against ``detect`` on a trained model: test_export_contract.py.)"""
import importlib.util

import keras
import numpy as np
import pytest

from frcnn_lib.export import contract
from frcnn_lib.export import read_labels
from frcnn_lib.export import onnx as export_onnx
from frcnn_lib.export.onnx import run_onnx
from frcnn_lib.runtime.errors import FrcnnError
from helpers.reliability import finish, start_frcnn
from helpers.synthetic import make_batch, tiny_model


@pytest.mark.parametrize("package", ["tf2onnx", "onnx"])
def test_onnx_export_without_the_converter_says_what_to_install(tmp_path, monkeypatch, package):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))
    with pytest.raises(FrcnnError, match=rf"'{package}' package.*frcnn_lib\[onnx\]"):
        export_onnx.export_onnx(tiny_model(), str(tmp_path / "m.onnx"))
    assert not list(tmp_path.iterdir())


def test_a_failed_conversion_names_the_model_and_leaves_no_file(tmp_path):
    with pytest.raises(FrcnnError, match=r"ONNX export of .* failed \(tf2onnx, opset 1\)"):
        tiny_model().export(str(tmp_path / "m.onnx"), format="onnx", opset=1)   # no such opset
    assert not list(tmp_path.iterdir())


def test_frcnn_export_onnx_from_the_command_line(tmp_path):
    keras.utils.set_random_seed(0)
    model = tiny_model(detections_score_threshold=0.0)            # no class names: labels 1..K
    model.save(str(tmp_path / "m.keras"))
    code, out, err = finish(start_frcnn(["export", "--model", tmp_path / "m.keras", "--format",
                                         "onnx", "--out", tmp_path / "m.onnx"]), timeout=300)
    assert code == 0, err[-2000:]
    assert "ONNX model written" in out and "tf2onnx" not in err
    path = tmp_path / "m.onnx"
    assert read_labels(path) == {"class_names": None, "category_ids": [1, 2]}

    import onnxruntime
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (tensor,) = session.get_inputs()
    assert (tensor.name, tensor.type, tensor.shape[0], tensor.shape[3]) == ("input_tensor", "tensor(uint8)", 1, 3)
    assert sorted(o.name for o in session.get_outputs()) == sorted(contract.OUTPUTS)

    image = np.ascontiguousarray(make_batch()[0][1, :50].astype(np.uint8))      # 50 x 96
    got = run_onnx(path, image)
    want = model.detect(image)
    assert "detection_names" not in got
    assert int(got["num_detections"][0]) == len(want["scores"]) == model.settings["detections_max"]
    np.testing.assert_allclose(np.sort(got["detection_scores"][0]), np.sort(want["scores"]), atol=1e-4)
    assert set(got["detection_classes"][0].tolist()) <= {1.0, 2.0}
