"""COCO reader: category mapping, crowd regions, and every bad-input case."""
import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import frcnn_lib.datasets as fd
from frcnn_lib.datasets import coco
from frcnn_lib.runtime.errors import FrcnnError

FIXTURE = Path(__file__).resolve().parents[1] / "datasets" / "fixtures" / "coco_mini"
ORIGINAL = json.loads((FIXTURE / "annotations.json").read_text())


@pytest.fixture
def copy_dir(tmp_path):
    dst = tmp_path / "coco_mini"
    shutil.copytree(FIXTURE, dst)
    return dst


def _load_with(copy_dir, mutate):
    dataset = copy.deepcopy(ORIGINAL)
    mutate(dataset)
    (copy_dir / "annotations.json").write_text(json.dumps(dataset))
    return coco.load(copy_dir / "annotations.json", copy_dir / "images")


def test_fixture_loads_with_contiguous_labels_sorted_by_category_id():
    data = coco.load(FIXTURE / "annotations.json", FIXTURE / "images")
    assert data.class_names == ["bicycle", "bus", "kite"]            # ids 2, 5, 11
    assert data.label_to_category_id == {1: 2, 2: 5, 3: 11}
    assert data.category_id_to_label == {2: 1, 5: 2, 11: 3}
    assert [r.image_id for r in data.records] == [3, 7, 12, 20]      # sorted by id
    by_id = {r.image_id: r for r in data.records}
    np.testing.assert_array_equal(by_id[7].boxes, [[4, 6, 24, 36], [30, 10, 60, 30]])  # xywh -> xyxy
    assert by_id[20].boxes.shape == (0, 4) and by_id[20].labels.shape == (0,)
    assert by_id[12].image.endswith("sub/c.png")
    assert data.read_image(0).shape == (64, 48, 3)


def test_category_mapping_round_trips_every_annotation():
    data = coco.load(FIXTURE / "annotations.json", FIXTURE / "images")
    by_id = {r.image_id: r for r in data.records}
    for ann in ORIGINAL["annotations"]:
        record = by_id[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        boxes = record.crowd_boxes if ann["iscrowd"] else record.boxes
        labels = record.crowd_labels if ann["iscrowd"] else record.labels
        (row,) = np.nonzero(np.all(boxes == [x, y, x + w, y + h], axis=1))[0]
        assert data.label_to_category_id[int(labels[row])] == ann["category_id"]


def test_crowd_boxes_are_not_targets_but_reach_evaluation():
    data = coco.load(FIXTURE / "annotations.json", FIXTURE / "images")
    record = data.records[0]                                          # image 3
    np.testing.assert_array_equal(record.boxes, [[10, 8, 38, 48]])
    np.testing.assert_array_equal(record.crowd_boxes, [[0, 50, 48, 64]])
    assert record.crowd_labels.tolist() == [1]
    gt = data.ground_truths()[0]
    assert gt["iscrowd"].tolist() == [False, True] and gt["difficult"].tolist() == [False, True]
    assert gt["labels"].tolist() == [2, 1]
    ds = fd.make_dataset(data, batch_size=4, training=False, min_side=64, max_side=64)
    labels = np.concatenate([t["labels"].numpy() for _, t in ds])
    assert (labels > 0).sum() == 4                                    # 5 annotations, 1 crowd


def test_spec():
    data = fd.load(f"coco:{FIXTURE / 'annotations.json'}:{FIXTURE / 'images'}")
    assert len(data) == 4


def test_out_of_image_box_clipped_and_empty_box_dropped_with_warnings(copy_dir):
    def mutate(d):
        d["annotations"][0]["bbox"] = [-4, 6, 100, 30]
        d["annotations"][1]["bbox"] = [30, 10, 0, 20]
    with pytest.warns(UserWarning) as record:
        data = _load_with(copy_dir, mutate)
    messages = " ".join(str(w.message) for w in record)
    assert "clipped 1 boxes" in messages and "(annotation ids 101)" in messages
    assert "dropped 1 boxes" in messages and "(annotation ids 102)" in messages
    np.testing.assert_array_equal(data.records[1].boxes, [[0, 6, 64, 36]])


def _set(path, value):
    def mutate(d):
        node = d
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return mutate


def _delete(path):
    def mutate(d):
        node = d
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return mutate


def _append(key, entry):
    return lambda d: d[key].append(entry)


@pytest.mark.parametrize("mutate, fields", [
    (_delete(["images"]), ["annotations.json", "missing key 'images'"]),
    (_delete(["annotations"]), ["missing key 'annotations'"]),
    (_delete(["categories"]), ["missing key 'categories'"]),
    (_set(["images"], {"a": 1}), ["'images' must be a list"]),
    (_delete(["annotations", 0, "bbox"]), ["annotations[0]", "missing key 'bbox'"]),
    (_delete(["annotations", 2, "category_id"]), ["annotations[2]", "'category_id'"]),
    (_delete(["images", 1, "file_name"]), ["images[1]", "'file_name'"]),
    (_delete(["images", 0, "height"]), ["images[0]", "'height'"]),
    (_set(["images", 0, "width"], 0), ["images[0].width", "positive integer"]),
    (_set(["annotations", 0, "bbox"], [1, 2, "3", 4]), ["annotations[0].bbox", "4 finite numbers"]),
    (_set(["annotations", 0, "bbox"], [1, 2, 3]), ["annotations[0].bbox"]),
    (_set(["annotations", 0, "bbox"], [1, 2, float("nan"), 4]), ["annotations[0].bbox"]),
    (_set(["annotations", 0, "iscrowd"], 2), ["annotations[0].iscrowd", "0 or 1"]),
    (_set(["annotations", 0, "id"], "101"), ["annotations[0].id", "integer"]),
    (_set(["annotations", 0, "category_id"], 3), ["annotations[0].category_id", "3 is not one of", "[2, 5, 11]"]),
    (_set(["annotations", 0, "image_id"], 999), ["annotations[0].image_id", "999"]),
    (_set(["annotations", 1, "id"], 101), ["annotations[1].id", "duplicate annotation id 101"]),
    (_set(["images", 1, "id"], 7), ["images[1].id", "duplicate image id 7"]),
    (_set(["categories", 1, "id"], 11), ["categories[1].id", "duplicate category id 11"]),
    (_set(["categories"], []), ["'categories' is empty"]),
    (_set(["images", 0, "file_name"], "../../annotations.json"), ["images[0].file_name", "leaves"]),
    (_set(["images", 0, "file_name"], "/etc/hostname"), ["images[0].file_name", "leaves"]),
    (_set(["images", 0, "file_name"], "nothere.png"), ["nothere.png", "image file not found", "images[0].file_name"]),
    (_set(["categories", 0, "name"], 5), ["categories[0].name", "non-empty string"]),
    (_append("annotations", 17), ["annotations[5]", "JSON object"]),
])
def test_bad_json_raises_frcnn_error_naming_the_field(copy_dir, mutate, fields):
    with pytest.raises(FrcnnError) as info:
        _load_with(copy_dir, mutate)
    for field in fields:
        assert field in str(info.value)


@pytest.mark.parametrize("content, expected", [
    (b"{not json", "not a readable JSON"),
    (b"\xff\xfe\x00garbage", "not a readable JSON"),
    (b"[1, 2, 3]", "expected a JSON object"),
    (b"[" * 100000, "not a readable JSON"),
])
def test_unreadable_json_raises_frcnn_error(copy_dir, content, expected):
    path = copy_dir / "annotations.json"
    path.write_bytes(content)
    with pytest.raises(FrcnnError, match=expected) as info:
        coco.load(path, copy_dir / "images")
    assert "annotations.json" in str(info.value)


def test_missing_annotation_file(tmp_path):
    with pytest.raises(FrcnnError, match=r"nope\.json: annotation file not found"):
        coco.load(tmp_path / "nope.json", tmp_path)


def test_missing_image_found_lazily_when_not_checked(copy_dir):
    (copy_dir / "images" / "a.png").unlink()
    data = coco.load(copy_dir / "annotations.json", copy_dir / "images", check_files=False)
    with pytest.raises(FrcnnError, match=r"a\.png: image file not found"):
        data.read_image(1)
