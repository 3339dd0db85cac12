"""Custom VOC-format classes and fine-tuning from the command line (``--classes``,
``--init-model``), and the class names the CLI writes (predict JSON, evaluate tables).

The custom dataset is the ``voc_mini`` fixture with its objects renamed to three made-up
classes, written to a temporary folder.
"""
import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from frcnn_lib import FrcnnError
from frcnn_lib.training import checkpoints
from frcnn_lib.datasets import voc
from frcnn_lib.training.finetune import init_from
from helpers.reliability import TINY_SET, trained_run
from helpers.synthetic import tiny_model
from test_cli import call, one_error_line

FIXTURE = Path(__file__).resolve().parents[1] / "datasets" / "fixtures" / "voc_mini" / "VOC2007"
RENAME = {"dog": "widget", "car": "widget", "person": "gadget", "bicycle": "gadget", "cat": "gizmo"}


def custom_voc(folder):
    """The voc_mini fixture with classes widget, gadget, gizmo; returns the year folder."""
    root = shutil.copytree(FIXTURE, folder / "VOC2007")
    for xml in (root / "Annotations").glob("*.xml"):
        text = xml.read_text()
        xml.write_text(re.sub(r"<name>(\w+)</name>", lambda m: f"<name>{RENAME[m.group(1)]}</name>", text))
    return root


def names_in_split(root, split):
    """Independent reference: every <name> inside an <object> of the split's annotations."""
    ids = (root / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
    found = set()
    for image_id in ids:
        text = (root / "Annotations" / f"{image_id}.xml").read_text()
        for obj in re.findall(r"<object>(.*?)</object>", text, re.S):
            found.add(re.search(r"<name>\s*(.*?)\s*</name>", obj).group(1))
    return sorted(found)


@pytest.fixture(scope="module")
def custom(tmp_path_factory):
    return custom_voc(tmp_path_factory.mktemp("custom"))


def test_classes_read_from_the_annotations(custom):
    expected = names_in_split(custom, "trainval")
    assert expected == ["gadget", "gizmo", "widget"]
    data = voc.load(custom, "trainval", class_names="auto")
    assert data.class_names == expected
    for record in data.records:
        text = (custom / "Annotations" / f"{record.image_id}.xml").read_text()
        names = re.findall(r"<name>(\w+)</name>", text)
        assert [data.class_names[k - 1] for k in record.labels] == names
    # The default stays the 20 VOC classes: the renamed objects are unknown there.
    with pytest.raises(FrcnnError, match="widget|gadget|gizmo"):
        voc.load(custom, "trainval")


def test_custom_classes_with_the_default_class_names_ask_for_auto(custom):
    # A custom set in VOC layout loaded as `voc.load(root, split)`: the error says how to
    # give its classes (class_names="auto" or a list), naming the file and the object.
    with pytest.raises(FrcnnError) as info:
        voc.load(custom, "trainval")
    message = str(info.value)
    for words in ('class_names="auto"', "class_names=[...]", "20 Pascal VOC classes", "Annotations",
                  "object 0", "field 'name'"):
        assert words in message, message
    assert re.search(r"'(widget|gadget|gizmo)'", message), message
    # Classes given but incomplete: the known ones are listed and "auto" named too.
    with pytest.raises(FrcnnError, match=r"not one of the 1 known classes \(widget\); "
                                         r'class_names="auto" reads them'):
        voc.load(custom, "trainval", class_names=["widget"])
    assert voc.load(custom, "test", class_names="auto").class_names == names_in_split(custom, "test")


def test_a_split_without_objects_asks_for_the_classes(custom, tmp_path):
    root = shutil.copytree(custom, tmp_path / "VOC2007")
    xml = root / "Annotations" / "000004.xml"
    xml.write_text(re.sub(r"<object>.*?</object>", "", xml.read_text(), flags=re.S))
    with pytest.raises(FrcnnError, match="--classes"):
        voc.load(root, "test", class_names="auto")


def test_pascal_voc_itself_reads_as_the_20_classes_in_order():
    # Sorted unique names of real VOC are CLASS_NAMES: the order the 20-class default uses.
    assert sorted(voc.CLASS_NAMES) == voc.CLASS_NAMES


# ----------------------------------------------------------------------------- fine-tuning
def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)


def test_init_from_same_classes_copies_every_weight():
    source, model = tiny_model(2, seed=1), tiny_model(2, seed=2)
    source.build()
    model.build()
    assert not _same(source.get_weights(), model.get_weights())
    message = init_from(model, source)
    assert _same(source.get_weights(), model.get_weights())
    assert "all 26 weights" in message


def test_init_from_other_classes_keeps_a_fresh_predictor():
    source, model = tiny_model(2, seed=1), tiny_model(4, seed=2)
    model.build()
    fresh = [w.numpy() for w in model.predictor.weights]
    message = init_from(model, source)
    for stage in ("backbone", "rpn_head", "roi_head"):
        assert _same([w.numpy() for w in getattr(source, stage).weights],
                     [w.numpy() for w in getattr(model, stage).weights]), stage
    assert _same(fresh, [w.numpy() for w in model.predictor.weights])
    assert "re-initialised for 4 classes" in message and "had 2" in message


def test_init_from_refuses_another_backbone_or_other_anchors():
    source = tiny_model(2)
    with pytest.raises(FrcnnError, match="backbone 'small'.*'vgg16'"):
        init_from(tiny_model(2, backbone="vgg16"), source)
    with pytest.raises(FrcnnError, match="rpn_head"):
        init_from(tiny_model(2, anchor_scales=(16, 32)), source)


# ----------------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def custom_run(custom, tmp_path_factory):
    """``frcnn train`` on the custom VOC folder, started from the shared shapes run."""
    shapes_run = trained_run(tmp_path_factory)
    out = tmp_path_factory.mktemp("custom_run") / "run"
    argv = ["train", "--data", f"voc:{custom}:trainval", "--out", out, "--epochs", "1",
            "--batch-size", "2", "--quiet", "--init-model", shapes_run / "model.keras", *TINY_SET]
    printed = io.StringIO()
    with contextlib.redirect_stderr(printed):    # logs go to stderr (results to stdout)
        code = call(argv)
    assert code == 0
    return out, printed.getvalue()


def test_train_on_custom_classes_from_a_shapes_model(custom_run):
    out, printed = custom_run
    assert "re-initialised for 3 classes (the model had 5)" in printed
    model = checkpoints.load_model(out / "model.keras", compile=False)
    assert model.class_names == ("gadget", "gizmo", "widget") and model.category_ids is None


def test_predict_and_evaluate_use_the_model_names(custom_run, custom, tmp_path, capsys):
    out, _ = custom_run
    image = custom / "JPEGImages" / "000001.jpg"
    code = call(["predict", "--model", out / "model.keras", image, "--out", tmp_path / "p",
                 "--score-threshold", "0.0", "--quiet"])
    assert code == 0, capsys.readouterr().err
    [det] = json.loads((tmp_path / "p" / "detections.json").read_text())
    assert len(det["model_labels"]) > 0
    names = ["gadget", "gizmo", "widget"]
    assert det["names"] == [names[k - 1] for k in det["model_labels"]]
    assert det["category_ids"] == det["model_labels"]    # a VOC model knows no other ids
    # evaluate reads the VOC folder with the model's classes: the table is by name.
    code = call(["evaluate", "--model", out / "model.keras", "--data", f"voc:{custom}:test", "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0
    table = json.loads(printed[printed.index("{"):printed.rindex("}") + 1])
    assert set(table["AP"]) == set(names)
    # a class list in another order does not match the model: refused, naming both
    code = call(["evaluate", "--model", out / "model.keras", "--data", f"voc:{custom}:test",
                 "--classes", "widget,gadget,gizmo"])
    one_error_line(capsys, code, "differ", "widget")


def test_classes_option_sets_the_label_order_and_must_name_classes_of_shapes(custom, tmp_path, capsys):
    listing = tmp_path / "classes.txt"
    listing.write_text("widget\ngizmo\ngadget\nspare\n")
    from frcnn_lib.cli.common import load_data
    data = load_data(f"voc:{custom}:trainval", ["widget", "gizmo", "gadget", "spare"])
    assert data.class_names == ["widget", "gizmo", "gadget", "spare"]
    # shapes (and COCO) name their own classes: --classes must pick among them.
    code = call(["train", "--out", tmp_path / "r", "--classes", listing, "--data", "shapes"])
    one_error_line(capsys, code, "--classes", "widget, gizmo, gadget, spare are not classes")
    assert not (tmp_path / "r").exists()


def test_init_model_with_another_backbone_fails_in_one_line(tmp_path_factory, tmp_path, capsys):
    shapes_run = trained_run(tmp_path_factory)
    code = call(["train", "--out", tmp_path / "r", "--train-images", "4", "--epochs", "1",
                 "--init-model", shapes_run / "model.keras", "--set", "backbone=vgg16", *TINY_SET])
    one_error_line(capsys, code, "--init-model", "vgg16")
    assert not (tmp_path / "r" / "model.keras").exists()


def test_train_on_coco_keeps_its_category_ids_and_predict_writes_them(tmp_path, capsys):
    """COCO ids are not contiguous (the fixture has 2, 5, 11): the model keeps them."""
    fixture = FIXTURE.parents[1] / "coco_mini"
    categories = json.loads((fixture / "annotations.json").read_text())["categories"]
    by_id = sorted((c["id"], c["name"]) for c in categories)
    out = tmp_path / "run"
    code = call(["train", "--data", f"coco:{fixture / 'annotations.json'}:{fixture / 'images'}",
                 "--out", out, "--epochs", "1", "--batch-size", "2", "--quiet", *TINY_SET])
    assert code == 0, capsys.readouterr().err
    model = checkpoints.load_model(out / "model.keras", compile=False)
    assert list(model.category_ids) == [i for i, _ in by_id] == [2, 5, 11]
    assert list(model.class_names) == [n for _, n in by_id]
    image = next((fixture / "images").glob("*.png"))
    code = call(["predict", "--model", out / "model.keras", image, "--out", tmp_path / "p",
                 "--score-threshold", "0", "--quiet"])
    assert code == 0
    [det] = json.loads((tmp_path / "p" / "detections.json").read_text())
    assert len(det["model_labels"]) > 0
    assert det["category_ids"] == [by_id[k - 1][0] for k in det["model_labels"]]
    assert det["names"] == [by_id[k - 1][1] for k in det["model_labels"]]
