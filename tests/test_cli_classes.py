"""``--classes`` selects a subset of a dataset's classes: boxes of the other classes are
dropped in training, validation and evaluation alike (``datasets.classes.select_classes``),
checked against the annotation files read independently, and through ``frcnn train`` /
``frcnn evaluate`` on a custom VOC set (widget, gadget, gizmo)."""
import json
import re

import numpy as np
import pytest

from frcnn_lib import FrcnnError
from frcnn_lib.cli.common import load_data
from frcnn_lib.datasets import shapes
from frcnn_lib.datasets.classes import select_classes
from frcnn_lib.training import checkpoints
from helpers.reliability import TINY_SET
from test_cli import call, one_error_line
from test_custom_data import custom_voc

SUBSET = ["widget", "gizmo"]


@pytest.fixture(scope="module")
def custom(tmp_path_factory):
    return custom_voc(tmp_path_factory.mktemp("custom"))


def reference_objects(root, split, names):
    """Independent reference: per listed image, [(label in names, xmin - 1, ...)] of its
    objects whose name is in ``names`` (VOC's 1-based pixels to continuous ones)."""
    out = {}
    for image_id in (root / "ImageSets" / "Main" / f"{split}.txt").read_text().split():
        text = (root / "Annotations" / f"{image_id}.xml").read_text()
        objects = []
        for obj in re.findall(r"<object>(.*?)</object>", text, re.S):
            name = re.search(r"<name>\s*(.*?)\s*</name>", obj).group(1)
            if name in names:
                box = [float(re.search(rf"<{k}>\s*([\d.]+)", obj).group(1)) for k in ("xmin", "ymin", "xmax", "ymax")]
                objects.append((names.index(name) + 1, box[0] - 1, box[1] - 1, box[2], box[3]))
        out[image_id] = sorted(objects)
    return out


def test_a_subset_keeps_exactly_the_boxes_of_its_classes(custom):
    data = load_data(f"voc:{custom}:trainval", SUBSET)
    assert data.class_names == SUBSET
    expected = reference_objects(custom, "trainval", SUBSET)
    assert len(data) == len(expected)                    # images without boxes left stay
    for record in data.records:
        ours = sorted((int(k), *map(float, b)) for k, b in zip(record.labels, record.boxes))
        assert ours == expected[record.image_id], record.image_id
    dropped = sum(len(r.boxes) for r in load_data(f"voc:{custom}:trainval").records) - \
        sum(len(r.boxes) for r in data.records)
    assert dropped > 0                                   # gadget boxes were there


def test_a_subset_of_shapes_relabels_and_keeps_crowd_and_ids_consistent():
    data = shapes.load("train", num_images=6)
    names = [data.class_names[2], data.class_names[0]]
    sub = select_classes(data, names)
    assert sub.class_names == names and len(sub) == len(data)
    for old, new in zip(data.records, sub.records):
        keep = np.isin(old.labels, [3, 1])
        np.testing.assert_array_equal(new.boxes, old.boxes[keep])
        np.testing.assert_array_equal(new.labels, np.where(old.labels[keep] == 3, 1, 2))
    with pytest.raises(FrcnnError, match=r"--classes .*nope is not a class of .*its classes"):
        select_classes(data, [names[0], "nope"])
    assert select_classes(data, data.class_names) is data


def test_train_and_evaluate_on_a_subset(custom, tmp_path, capsys):
    out = tmp_path / "run"
    code = call(["train", "--data", f"voc:{custom}:trainval", "--val-data", f"voc:{custom}:test",
                 "--classes", ",".join(SUBSET), "--out", out, "--epochs", "1", "--batch-size", "2",
                 "--quiet", *TINY_SET])
    assert code == 0, capsys.readouterr().err[-3000:]
    model = checkpoints.load_model(out / "model.keras", compile=False)
    assert list(model.class_names) == SUBSET and model.num_classes == 2
    config = json.loads((out / "config.json").read_text())
    assert config["command"]["classes"] == SUBSET
    assert config["data"]["spec"] == f"voc:{custom}:trainval" and config["data"]["classes"] == SUBSET
    assert config["data"]["images"] == len(reference_objects(custom, "trainval", SUBSET))
    assert config["val_data"]["spec"] == f"voc:{custom}:test"
    assert config["val_data"]["images"] == len(reference_objects(custom, "test", SUBSET))
    history = (out / "history.csv").read_text().splitlines()
    assert "val_mAP" in history[0].split(",")
    # evaluate reads the data with the model's classes: the same subset, by name.
    capsys.readouterr()
    code = call(["evaluate", "--model", out / "model.keras", "--data", f"voc:{custom}:test", "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0
    assert set(json.loads(printed)["AP"]) == set(SUBSET)
    # A class the data does not have is refused on shapes, naming it.
    code = call(["evaluate", "--model", out / "model.keras", "--data", "shapes:test"])
    one_error_line(capsys, code, "widget, gizmo are not classes")
