"""``save_detections``: pictures at the image's own resolution (or a stated maximum), with
names; and ``frcnn predict --max-size``."""
import numpy as np
import pytest
from PIL import Image

from frcnn_lib.evaluation.visualize import _names_by_label, save_detections


def detections():
    return {"boxes": np.array([[10, 20, 110, 90], [150, 30, 300, 200]], np.float32),
            "scores": np.array([0.9, 0.6], np.float32), "labels": np.array([2, 1], np.int32)}


@pytest.mark.parametrize("h, w", [(240, 320), (333, 201), (41, 997)])
def test_picture_has_the_image_size(tmp_path, h, w):
    image = np.full((h, w, 3), 40, np.uint8)
    path = tmp_path / "p.png"
    assert save_detections(image, detections(), path, ["cat", "dog"]) == (h, w)
    assert Image.open(path).size == (w, h)


def test_pixels_outside_the_boxes_are_the_image_and_boxes_are_drawn(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    path = tmp_path / "p.png"
    save_detections(image, detections(), path, ["cat", "dog"])
    picture = np.asarray(Image.open(path).convert("RGB"))
    # Bottom-right corner lies outside every box and label: the image, pixel for pixel.
    np.testing.assert_array_equal(picture[215:, 305:], image[215:, 305:])
    # The left edge of box 0 (x = 10, rows 40..80) is painted in a box colour.
    assert not np.array_equal(picture[40:80, 10], image[40:80, 10])


def test_max_size_scales_the_picture_down(tmp_path):
    image = np.zeros((300, 1200, 3), np.uint8)
    path = tmp_path / "p.png"
    assert save_detections(image, detections(), path, max_size=600) == (150, 600)
    assert Image.open(path).size == (600, 150)
    assert save_detections(image[:100, :200], detections(), path, max_size=600) == (100, 200)


def test_names_by_label_from_the_detections():
    assert _names_by_label(np.array([3, 1]), np.array(["dog", "cat"])) == ["cat", "2", "dog"]
    assert _names_by_label(np.array([], np.int32), np.array([], str)) is None


def test_predict_writes_full_resolution_pictures_and_max_size(tmp_path_factory, tmp_path, capsys):
    from helpers.reliability import trained_run
    from test_cli import call
    run = trained_run(tmp_path_factory)
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 500, 3), dtype=np.uint8)).save(big)
    code = call(["predict", "--model", run / "model.keras", big, "--out", tmp_path / "a",
                 "--score-threshold", "0", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert Image.open(tmp_path / "a" / "big.png").size == (500, 300)
    code = call(["predict", "--model", run / "model.keras", big, "--out", tmp_path / "b",
                 "--max-size", "250", "--quiet"])
    assert code == 0
    assert Image.open(tmp_path / "b" / "big.png").size == (250, 150)
