"""Pascal VOC reader: conversion, difficult flags, and every bad-input case."""
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import frcnn_lib.datasets as fd
from frcnn_lib.boxes import iou
from frcnn_lib.datasets import voc
from frcnn_lib.runtime.errors import FrcnnError

FIXTURE = Path(__file__).resolve().parents[1] / "datasets" / "fixtures" / "voc_mini" / "VOC2007"


@pytest.fixture
def root(tmp_path):
    """A writable copy of the fixture."""
    dst = tmp_path / "VOC2007"
    shutil.copytree(FIXTURE, dst)
    return dst


def _set_xml(root, image_id, text):
    (root / "Annotations" / f"{image_id}.xml").write_text(text)


def _xml(obj='<name>dog</name><bndbox><xmin>5</xmin><ymin>6</ymin><xmax>20</xmax><ymax>30</ymax></bndbox>',
         filename="000002.jpg", size="<size><width>64</width><height>96</height></size>"):
    return (f"<annotation><filename>{filename}</filename>{size}"
            f"<object>{obj}</object></annotation>")


def test_fixture_loads_with_converted_boxes_and_difficult_kept():
    data = voc.load(FIXTURE, "trainval")
    assert len(data) == 3 and data.class_names == voc.CLASS_NAMES and data.num_classes == 20
    first = data.records[0]
    assert first.image_id == "000001" and (first.height, first.width) == (80, 120)
    # Raw VOC (1-based inclusive): person 10 12 40 70, dog 50 40 100 75, car 90 5 115 30.
    np.testing.assert_array_equal(first.boxes, [[9, 11, 40, 70], [49, 39, 100, 75], [89, 4, 115, 30]])
    names = [data.class_names[k - 1] for k in first.labels]
    assert names == ["person", "dog", "car"]
    assert first.difficult.tolist() == [False, False, True]
    gt = data.ground_truths()[0]
    assert gt["difficult"].tolist() == [False, False, True] and len(gt["boxes"]) == 3
    assert gt["boxes"].dtype == np.float32 and gt["labels"].dtype == np.int32
    assert data.read_image(1).shape == (96, 64, 3)
    assert len(voc.load(FIXTURE, "test")) == 1


def test_converted_boxes_cover_the_drawn_pixels():
    data = voc.load(FIXTURE, "trainval")
    image = data.read_image(0).astype(int)
    x1, y1, x2, y2 = data.records[0].boxes[0].astype(int)          # the red "person"
    red = (image[..., 0] > 150) & (image[..., 1] < 90)
    ys, xs = np.nonzero(red)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)


def test_iou_on_converted_boxes_equals_devkit_iou_on_raw():
    def devkit_iou(a, b):  # VOCdevkit: inclusive pixel indices, +1 on every width
        iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
        ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
        if iw <= 0 or ih <= 0:
            return 0.0
        inter = iw * ih
        area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
        return inter / (area(a) + area(b) - inter)

    convert = lambda r: [r[0] - 1, r[1] - 1, r[2], r[3]]  # noqa: E731
    a, b = [1, 1, 10, 10], [6, 6, 15, 15]
    # By hand: 10x10 boxes overlapping on 5x5 pixels -> 25 / (100 + 100 - 25) = 1/7.
    assert devkit_iou(a, b) == pytest.approx(1 / 7)
    assert float(iou([convert(a)], [convert(b)])[0, 0]) == pytest.approx(1 / 7)
    rng = np.random.default_rng(0)
    for _ in range(50):
        r = [sorted(rng.integers(1, 60, 2)) for _ in range(4)]
        a = [r[0][0], r[1][0], r[0][1], r[1][1]]
        b = [r[2][0], r[3][0], r[2][1], r[3][1]]
        ours = float(iou([convert(a)], [convert(b)])[0, 0])
        assert ours == pytest.approx(devkit_iou(a, b), abs=1e-6)


def test_spec_and_custom_classes(root):
    data = fd.load(f"voc:{root}:test")
    assert len(data) == 1 and data.name.endswith(":test")
    assert len(fd.load(f"voc:{root}")) == 3                          # default trainval
    names = ["person", "dog", "car", "cat", "bicycle"]
    custom = voc.load(root, "trainval", class_names=names)
    assert custom.class_names == names and custom.records[0].labels.tolist() == [1, 2, 3]


def test_missing_size_is_read_from_the_image(root):
    _set_xml(root, "000002", _xml(size=""))
    record = voc.load(root).records[1]
    assert (record.height, record.width) == (96, 64)


def test_out_of_bounds_box_is_clipped_with_a_warning(root):
    obj = '<name>cat</name><bndbox><xmin>-5</xmin><ymin>10</ymin><xmax>200</xmax><ymax>96</ymax></bndbox>'
    _set_xml(root, "000002", _xml(obj))
    with pytest.warns(UserWarning, match=r"000002\.xml: object 0.*clipped"):
        record = voc.load(root).records[1]
    np.testing.assert_array_equal(record.boxes, [[0, 9, 64, 96]])


def test_degenerate_box_is_dropped_with_a_warning(root):
    obj = '<name>cat</name><bndbox><xmin>30</xmin><ymin>10</ymin><xmax>29</xmax><ymax>40</ymax></bndbox>'
    _set_xml(root, "000002", _xml(obj))
    with pytest.warns(UserWarning, match=r"000002\.xml: object 0.*dropped"):
        record = voc.load(root).records[1]
    assert record.boxes.shape == (0, 4)
    # A one-pixel VOC box (xmin == xmax) is valid: width 1 after conversion.
    obj = '<name>cat</name><bndbox><xmin>30</xmin><ymin>10</ymin><xmax>30</xmax><ymax>10</ymax></bndbox>'
    _set_xml(root, "000002", _xml(obj))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(voc.load(root).records[1].boxes, [[29, 9, 30, 10]])


ENTITY_BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<annotation><filename>&lol9;</filename></annotation>
"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<annotation><filename>&xxe;</filename></annotation>
"""


@pytest.mark.parametrize("text, fields", [
    (ENTITY_BOMB, ["000002.xml", "unsafe XML"]),
    (EXTERNAL_ENTITY, ["000002.xml", "unsafe XML"]),
    ("<annotation><object><name>dog</name>", ["000002.xml", "malformed XML"]),
    ("not xml at all", ["000002.xml", "malformed XML"]),
    (_xml("<name>dog</name>"), ["000002.xml", "object 0", "bndbox"]),
    (_xml("<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"),
     ["000002.xml", "object 0", "'name'"]),
    (_xml("<name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax></bndbox>"),
     ["000002.xml", "object 0", "'ymax'"]),
    (_xml("<name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>abc</xmax><ymax>5</ymax></bndbox>"),
     ["000002.xml", "object 0", "'xmax'", "'abc'", "number"]),
    (_xml("<name>dog</name><bndbox><xmin>nan</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"),
     ["000002.xml", "'xmin'", "finite"]),
    (_xml("<name>unicorn</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"),
     ["000002.xml", "object 0", "'name'", "'unicorn'"]),
    (_xml("<name>dog</name><difficult>yes</difficult><bndbox><xmin>1</xmin><ymin>1</ymin>"
          "<xmax>5</xmax><ymax>5</ymax></bndbox>"), ["000002.xml", "'difficult'", "'yes'"]),
    (_xml(filename="../../../../etc/passwd"), ["000002.xml", "'filename'", "leaves the dataset folder"]),
    (_xml(filename="/etc/passwd"), ["000002.xml", "'filename'", "leaves the dataset folder"]),
    (_xml(filename="missing.jpg"), ["missing.jpg", "not found", "000002.xml"]),
    (_xml(size="<size><width>sixty</width><height>96</height></size>"), ["000002.xml", "size/width"]),
    (_xml(size="<size><width>-64</width><height>96</height></size>"), ["000002.xml", "size/width"]),
])
def test_bad_annotation_raises_frcnn_error_naming_file_and_field(root, text, fields):
    _set_xml(root, "000002", text)
    with pytest.raises(FrcnnError) as info:
        voc.load(root)
    for field in fields:
        assert field in str(info.value)


def test_bad_folder_layout_raises_frcnn_error(root, tmp_path):
    with pytest.raises(FrcnnError, match="VOC folder not found"):
        voc.load(tmp_path / "nowhere")
    with pytest.raises(FrcnnError, match=r"val\.txt.*not found"):
        voc.load(root, "val")
    with pytest.raises(FrcnnError, match="plain list name"):
        voc.load(root, "../trainval")
    (root / "ImageSets" / "Main" / "bad.txt").write_text("000001\n../../secret\n")
    with pytest.raises(FrcnnError, match=r"bad\.txt:2.*plain file stem"):
        voc.load(root, "bad")
    (root / "ImageSets" / "Main" / "gone.txt").write_text("000009\n")
    with pytest.raises(FrcnnError, match=r"000009\.xml: annotation file not found"):
        voc.load(root, "gone")
    (root / "JPEGImages" / "000003.jpg").unlink()
    with pytest.raises(FrcnnError, match=r"000003\.jpg: image file not found"):
        voc.load(root)
    assert len(voc.load(root, check_files=False)) == 3
