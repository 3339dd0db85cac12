"""TFLite export from the command line: the file follows the detection contract (uint8
``input_tensor`` of any size, one ``serving_default`` signature), carries the model's class
names and category ids, and runs on LiteRT with ``detect``'s detections.  (Each format
against ``detect`` on a trained model: test_export_contract.py.)"""
import keras
import numpy as np

from frcnn_lib.export import read_labels
from frcnn_lib.export.tflite import interpreter, run_tflite
from helpers.reliability import finish, start_frcnn
from helpers.synthetic import make_batch, tiny_model


def test_frcnn_export_tflite_from_the_command_line(tmp_path):
    keras.utils.set_random_seed(0)
    # Untrained, every detection kept (score threshold 0): the file has D of them to match.
    model = tiny_model(detections_score_threshold=0.0, class_names=["bolt", "nut"], category_ids=[5, 9])
    model.save(str(tmp_path / "m.keras"))
    code, out, err = finish(start_frcnn(["export", "--model", tmp_path / "m.keras", "--format",
                                         "tflite", "--out", tmp_path / "m.tflite"]), timeout=300)
    assert code == 0, err[-2000:]
    path = tmp_path / "m.tflite"
    assert "TFLite model written" in out and path.stat().st_size > 0
    assert not (tmp_path / "m.tflite.partial").exists()
    assert read_labels(path) == {"class_names": ["bolt", "nut"], "category_ids": [5, 9]}

    details = interpreter(path).get_signature_runner("serving_default").get_input_details()
    assert details["input_tensor"]["dtype"] == np.uint8
    assert details["input_tensor"]["shape_signature"].tolist() == [1, -1, -1, 3]

    image = np.ascontiguousarray(make_batch()[0][0, :, :90].astype(np.uint8))     # 64 x 90
    got = run_tflite(path, image)
    want = model.detect(image)
    n = int(got["num_detections"][0])
    assert n == len(want["scores"]) == model.settings["detections_max"]
    # Scores as a set (untrained: near-ties may come out in another order), then names and ids.
    np.testing.assert_allclose(np.sort(got["detection_scores"][0]), np.sort(want["scores"]), atol=1e-4)
    assert set(got["detection_classes"][0].tolist()) <= {5.0, 9.0}
    names = dict(zip([5, 9], ["bolt", "nut"]))
    assert got["detection_names"].tolist() == [names[int(c)] for c in got["detection_classes"][0]]


def test_the_main_jobs_trunk_exports_to_tflite_and_onnx(tmp_path):
    # small_deep (make demo's trunk) joins two paths with an Add: both runtimes give detect's
    # detections (untrained, score threshold 0: all D of them, compared as sets of scores).
    from frcnn_lib.export.onnx import export_onnx, run_onnx
    from frcnn_lib.export.tflite import export_tflite

    keras.utils.set_random_seed(1)
    model = tiny_model(backbone="small_deep", detections_score_threshold=0.0)
    image = np.ascontiguousarray(make_batch()[0][0, :, :90].astype(np.uint8))     # 64 x 90
    want = model.detect(image)
    export_tflite(model, str(tmp_path / "m.tflite"))
    export_onnx(model, str(tmp_path / "m.onnx"))
    for got in (run_tflite(tmp_path / "m.tflite", image), run_onnx(str(tmp_path / "m.onnx"), image)):
        assert int(got["num_detections"][0]) == len(want["scores"]) == model.settings["detections_max"]
        np.testing.assert_allclose(np.sort(got["detection_scores"][0]), np.sort(want["scores"]), atol=1e-4)
