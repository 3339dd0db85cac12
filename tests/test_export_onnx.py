"""ONNX export (tf2onnx -> onnxruntime): a clear error without the converter or when it
fails, and no partial file.  The one real conversion is made by ``frcnn export --format onnx``
in test_export_contract.py, which checks the command line, the file's input and outputs, its
metadata_props with and without class names, and ``detect``'s detections."""
import importlib.util

import pytest

from frcnn_lib.export import onnx as export_onnx
from frcnn_lib.runtime.errors import FrcnnError
from helpers.synthetic import tiny_model


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
