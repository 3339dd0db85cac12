"""Class names and category ids in the model: validation, config and .keras round trip,
old models without them, ``detect`` results, and the CLI helpers that read them."""
import json
import zipfile

import keras
import numpy as np
import pytest

from frcnn_lib import FasterRCNN, FrcnnError
from frcnn_lib.datasets.classes import (data_classes, name_detections, parse_class_list, saved_classes,
                               validate_classes)
from frcnn_lib.datasets import shapes
from frcnn_lib.datasets.records import DetectionData
from helpers.synthetic import tiny_model


@pytest.mark.parametrize("names, ids, named", [
    (["a"], None, "class_names"),                        # too short
    (["a", "b", "c"], None, "class_names"),              # too long
    ("ab", None, "class_names"),                         # a string is not a list of names
    (["a", 3], None, r"class_names\[1\]"),
    (["a", ""], None, r"class_names\[1\]"),
    (["a", "a"], None, r"class_names\[1\].*duplicate"),
    (None, [1], "category_ids"),
    (None, [1, 2.5], r"category_ids\[1\]"),
    (None, [1, True], r"category_ids\[1\]"),
    (None, [7, 7], r"category_ids\[1\].*duplicate"),
])
def test_bad_class_metadata_names_the_argument(names, ids, named):
    with pytest.raises(FrcnnError, match=named):
        validate_classes(2, names, ids)
    with pytest.raises(FrcnnError, match=named):
        FasterRCNN(2, class_names=names, category_ids=ids, backbone="small")


def test_valid_metadata_is_normalised_to_tuples():
    assert validate_classes(2, ["a", "b"], np.array([3, 90])) == (("a", "b"), (3, 90))
    assert validate_classes(2) == (None, None)
    assert isinstance(validate_classes(2, None, np.array([3, 90]))[1][0], int)


def test_config_round_trip_and_old_config_without_the_keys():
    model = tiny_model(2, class_names=["cat", "dog"], category_ids=[17, 18])
    config = model.get_config()
    assert config["class_names"] == ["cat", "dog"] and config["category_ids"] == [17, 18]
    json.dumps(config)                                   # serialisable as is
    again = FasterRCNN.from_config(config)
    assert again.class_names == ("cat", "dog") and again.category_ids == (17, 18)
    old = {k: v for k, v in config.items() if k not in ("class_names", "category_ids")}
    legacy = FasterRCNN.from_config(old)
    assert legacy.class_names is None and legacy.category_ids is None
    assert tiny_model(2).get_config()["class_names"] is None


@pytest.fixture(scope="module")
def named_model():
    model = tiny_model(2, class_names=["cat", "dog"], category_ids=[17, 18],
                       detections_score_threshold=0.0)
    model.build()
    return model


def test_keras_file_round_trip_and_saved_classes(named_model, tmp_path):
    path = tmp_path / "m.keras"
    named_model.save(path)
    assert saved_classes(path) == (["cat", "dog"], [17, 18])
    loaded = keras.models.load_model(path)
    assert loaded.class_names == ("cat", "dog") and loaded.category_ids == (17, 18)


def test_model_saved_without_the_keys_still_loads(named_model, tmp_path):
    """A .keras written before class names existed: its config.json lacks both keys."""
    path, old = tmp_path / "new.keras", tmp_path / "old.keras"
    named_model.save(path)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            payload = src.read(item)
            if item.filename == "config.json":
                config = json.loads(payload)
                del config["config"]["class_names"], config["config"]["category_ids"]
                payload = json.dumps(config)
            dst.writestr(item, payload)
    assert saved_classes(old) == (None, None)
    loaded = keras.models.load_model(old)
    assert loaded.class_names is None and loaded.category_ids is None
    det = loaded.detect(np.zeros((64, 96, 3), np.uint8))
    assert "names" not in det and "category_ids" not in det
    np.testing.assert_allclose(det["scores"], named_model.detect(np.zeros((64, 96, 3), np.uint8))["scores"],
                               atol=1e-6)


def test_detect_adds_names_and_category_ids(named_model):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(2)]
    for det in named_model.detect(images):
        assert len(det["labels"]) > 0                    # score threshold 0: something to name
        np.testing.assert_array_equal(det["names"], np.where(det["labels"] == 1, "cat", "dog"))
        np.testing.assert_array_equal(det["category_ids"], np.where(det["labels"] == 1, 17, 18))


def test_name_detections_of_an_empty_result():
    model = type("M", (), {"class_names": ("a", "b"), "category_ids": (5, 9)})()
    det = name_detections(model, {"labels": np.zeros(0, np.int32)})
    assert det["names"].shape == (0,) and det["category_ids"].shape == (0,)


def test_data_classes_from_shapes_and_coco_like_data():
    data = shapes.load("test", num_images=1)
    assert data_classes(data) == {"class_names": list(shapes.CLASS_NAMES), "category_ids": None}
    coco_like = DetectionData([], ["person", "car"], label_to_category_id={1: 1, 2: 3})
    assert data_classes(coco_like) == {"class_names": ["person", "car"], "category_ids": [1, 3]}


def test_parse_class_list(tmp_path):
    assert parse_class_list("a, b,c") == ["a", "b", "c"]
    path = tmp_path / "classes.txt"
    path.write_text("# my classes\nwidget\n\ngadget\n")
    assert parse_class_list(str(path)) == ["widget", "gadget"]
    with pytest.raises(FrcnnError, match="duplicate"):
        parse_class_list("a,b,a")
    with pytest.raises(FrcnnError, match="--classes"):
        parse_class_list("a,,b")
