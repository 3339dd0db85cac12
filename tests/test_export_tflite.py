"""TFLite export: builtin ops only, the same detections as the Keras model, an image with
zero detections included, and the command line."""
import keras
import numpy as np
import pytest

from frcnn_lib.export.tflite import run_tflite
from helpers.reliability import finish, start_frcnn
from helpers.synthetic import make_batch, tiny_model


@pytest.mark.parametrize("threshold", [0.0, 0.999])       # many detections, then none at all
def test_tflite_gives_the_keras_detections(tmp_path, threshold):
    keras.utils.set_random_seed(0)
    model = tiny_model(detections_score_threshold=threshold)
    images, _ = make_batch()
    path = tmp_path / "model.tflite"
    assert model.export(str(path), format="tflite") > 0
    for image in images[:2]:
        want = {k: v.numpy() for k, v in model(image[None]).items()}
        got = run_tflite(path, image[None])
        n = int(want["num_detections"][0])
        assert int(got["num_detections"][0]) == n
        assert (n == 0) == (threshold > 0.9)
        np.testing.assert_array_equal(got["labels"][0, :n], want["labels"][0, :n])
        np.testing.assert_allclose(got["boxes"][0, :n], want["boxes"][0, :n], atol=1e-2)
        np.testing.assert_allclose(got["scores"][0, :n], want["scores"][0, :n], atol=1e-4)
        assert (got["labels"][0, n:] == -1).all()


def test_frcnn_export_tflite_from_the_command_line(tmp_path):
    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.save(str(tmp_path / "m.keras"))
    code, out, err = finish(start_frcnn(["export", "--model", tmp_path / "m.keras", "--format",
                                         "tflite", "--out", tmp_path / "m.tflite"]), timeout=300)
    assert code == 0, err[-2000:]
    assert "TFLite model written" in out and (tmp_path / "m.tflite").stat().st_size > 0
    images, _ = make_batch()
    got = run_tflite(tmp_path / "m.tflite", images[:1])
    assert got["boxes"].shape[1:] == (model.settings["detections_max"], 4)
