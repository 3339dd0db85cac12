"""Fuzzing the annotation readers: corrupted VOC XML and COCO JSON either load into valid
records or raise FrcnnError, never anything else."""
import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frcnn_lib.datasets import coco, voc
from frcnn_lib.runtime.errors import FrcnnError

FIXTURES = Path(__file__).resolve().parents[1] / "datasets" / "fixtures"
VOC_XML = (FIXTURES / "voc_mini" / "VOC2007" / "Annotations" / "000001.xml").read_bytes()
COCO_JSON = (FIXTURES / "coco_mini" / "annotations.json").read_bytes()

FUZZ = settings(max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# Fragments a careless or malicious annotation might contain.
TOKENS = [b"<", b">", b"&", b"&amp;", b"<!DOCTYPE a [<!ENTITY e 'x'>]>", b"&e;", b"</object>",
          b"<object>", b"<bndbox>", b"<difficult>2</difficult>", b"..", b"/", b"-1", b"0",
          b"nan", b"inf", b"1e999", b"\x00", b"\xff", b"\"", b"{", b"}", b"[", b"]", b",",
          b"null", b"true", b"NaN", b"-Infinity", b"\"../x\"", b"\"/etc/passwd\"", b"99"]

byte_edits = st.lists(
    st.tuples(st.integers(0, 1 << 16),
              st.sampled_from(["replace", "insert", "delete", "truncate"]),
              st.one_of(st.binary(min_size=1, max_size=6), st.sampled_from(TOKENS))),
    min_size=1, max_size=4)


def _apply(data, edits):
    out = bytearray(data)
    for position, op, payload in edits:
        at = position % (len(out) + 1)
        if op == "replace":
            out[at:at + len(payload)] = payload
        elif op == "insert":
            out[at:at] = payload
        elif op == "delete":
            del out[at:at + len(payload)]
        else:
            del out[at:]
    return bytes(out)


def _check_loaded(data):
    for r in data.records:
        assert r.boxes.dtype == np.float32 and r.boxes.shape == (len(r.labels), 4)
        assert r.height > 0 and r.width > 0
        assert np.all(r.boxes[:, :2] >= 0) and np.all(r.boxes[:, 2] <= r.width)
        assert np.all(r.boxes[:, 3] <= r.height)
        assert np.all(r.boxes[:, 2:] > r.boxes[:, :2])
        assert np.all((r.labels >= 1) & (r.labels <= data.num_classes))


def _loads_or_frcnn_error(load):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            data = load()
        except FrcnnError:
            return
    _check_loaded(data)


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_voc") / "VOC2007"
    shutil.copytree(FIXTURES / "voc_mini" / "VOC2007", root)
    return root


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_coco") / "coco_mini"
    shutil.copytree(FIXTURES / "coco_mini", root)
    return root


@FUZZ
@given(edits=byte_edits)
def test_voc_corrupted_bytes(voc_root, edits):
    (voc_root / "Annotations" / "000001.xml").write_bytes(_apply(VOC_XML, edits))
    _loads_or_frcnn_error(lambda: voc.load(voc_root, "trainval"))


XML_TEXTS = [m.span(1) for m in re.finditer(rb">([^<]*)<", VOC_XML)]


@FUZZ
@given(which=st.integers(0, len(XML_TEXTS) - 1),
       value=st.one_of(st.text(max_size=12), st.sampled_from(
           ["", "-5", "0", "1e9", "nan", "inf", "1.5", "..", "../x.jpg", "/etc/x", "dog", "2"])))
def test_voc_odd_field_values(voc_root, which, value):
    start, end = XML_TEXTS[which]
    escaped = value.replace("&", "&amp;").replace("<", "&lt;").encode("utf-8", "surrogatepass")
    (voc_root / "Annotations" / "000001.xml").write_bytes(VOC_XML[:start] + escaped + VOC_XML[end:])
    _loads_or_frcnn_error(lambda: voc.load(voc_root, "trainval"))


@FUZZ
@given(edits=byte_edits)
def test_coco_corrupted_bytes(coco_root, edits):
    (coco_root / "annotations.json").write_bytes(_apply(COCO_JSON, edits))
    _loads_or_frcnn_error(lambda: coco.load(coco_root / "annotations.json", coco_root / "images"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 1 << 40) | st.floats() | st.text(max_size=8)
    | st.sampled_from(["../a.png", "/etc/hostname", "a.png", "sub/c.png"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


def _paths(node, prefix=()):
    """Every path to a node of a JSON tree."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


COCO_TREE = json.loads(COCO_JSON)
COCO_PATHS = [p for p in _paths(COCO_TREE) if p]


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(COCO_PATHS) - 1),
                                st.sampled_from(["set", "delete", "duplicate"]), json_values),
                      min_size=1, max_size=3))
def test_coco_odd_field_values(coco_root, edits):
    tree = json.loads(COCO_JSON)
    for which, op, value in edits:
        *parents, last = COCO_PATHS[which]
        node = tree
        try:
            for key in parents:
                node = node[key]
            if op == "set":
                node[last] = value
            elif op == "delete":
                del node[last]
            elif isinstance(node, list):
                node.append(node[last])
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed this path
    (coco_root / "annotations.json").write_text(json.dumps(tree))
    _loads_or_frcnn_error(lambda: coco.load(coco_root / "annotations.json", coco_root / "images"))
