"""Exports on the TF Object Detection API contract: each format, in its own runtime, gives
``model.detect``'s detections for raw uint8 images of any size, and carries the class names.

The model is the tiny detector test_model and test_detect train (shared once per process),
given class names and category ids of its own (7 and 3, so that ``detection_classes`` is
seen to hold ids, not labels).  The images are made at odd sizes (101 x 300, 333 x 127,
480 x 640) from the training images, so that the model finds its red and green boxes in
them, plus one (200 x 150) in which it finds nothing.  Each format is exported once
(ONNX by ``frcnn export``, whose own checks are here too).
"""
import warnings

import numpy as np
import pytest
import tensorflow as tf

from frcnn_lib import FasterRCNN
from frcnn_lib.datasets import pipeline
from frcnn_lib.detect import map_back
from frcnn_lib.export import contract, resize
from frcnn_lib.export import read_labels
from frcnn_lib.export import tflite as export_tflite
from frcnn_lib.export import onnx as export_onnx
from frcnn_lib.export.onnx import run_onnx
from frcnn_lib.export.tflite import run_tflite
from frcnn_lib.runtime.errors import FrcnnError
from helpers.reliability import finish, start_frcnn
from helpers.synthetic import shared_overfit, tiny_model

NAMES, IDS = ["red", "green"], [7, 3]
FORMATS = ("saved_model", "tflite", "onnx")
BOX_ATOL = 0.05      # px of the input image; measured: at most 2e-4
SCORE_ATOL = 1e-4


def _nearest(image, height, width):
    """``image`` resized to ``(height, width)`` by repeating pixels (keeps its blocky texture)."""
    rows = np.arange(height) * image.shape[0] // height
    cols = np.arange(width) * image.shape[1] // width
    return np.ascontiguousarray(image[rows][:, cols])


@pytest.fixture(scope="module")
def model():
    trained, _, _, _ = shared_overfit(150, seed=0)
    named = FasterRCNN.from_config({**trained.get_config(), "class_names": NAMES, "category_ids": IDS})
    named.set_weights(trained.get_weights())
    return named


@pytest.fixture(scope="module")
def images():
    _, batch, _, _ = shared_overfit(150, seed=0)
    batch = batch.astype(np.uint8)
    landscape = batch[0, 6:38]                                                  # 32 x 96: red box whole
    portrait = np.concatenate([batch[0, :, :37], batch[2, :32, :37]], axis=0)   # 96 x 37
    return {"101x300": _nearest(landscape, 101, 300), "333x127": _nearest(portrait, 333, 127),
            "480x640": _nearest(batch[0], 480, 640), "empty": _nearest(batch[2], 200, 150)}


@pytest.fixture(scope="module")
def saved_model(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "saved_model"
    model.export(str(path), verbose=False)
    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures["serving_default"]
    labels = read_labels(path)
    return path, loaded, lambda image: contract.with_names(
        {k: v.numpy() for k, v in signature(input_tensor=tf.constant(image[None])).items()}, labels)


@pytest.fixture(scope="module")
def tflite(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "model.tflite"
    assert model.export(str(path), format="tflite") == path.stat().st_size
    return path, None, lambda image: run_tflite(path, image)


@pytest.fixture(scope="module")
def onnx_cli(model, tmp_path_factory):
    """The one ONNX conversion of this suite, made by ``frcnn export --format onnx`` from the
    model saved as ``.keras``: ``(path, returncode, stdout, stderr)``."""
    folder = tmp_path_factory.mktemp("export")
    model.save(str(folder / "m.keras"))
    path = folder / "model.onnx"
    code, out, err = finish(start_frcnn(["export", "--model", folder / "m.keras", "--format", "onnx",
                                         "--out", path]), timeout=300)
    return path, code, out, err


@pytest.fixture(scope="module")
def onnx(onnx_cli):
    path, code, _, err = onnx_cli
    assert code == 0, err[-2000:]
    return path, None, lambda image: run_onnx(path, image)


def assert_contract(outputs, image, want, d):
    """``outputs`` (one format's) follow the contract and hold ``want`` (``model.detect``)."""
    assert {"detection_boxes", "detection_scores", "detection_classes", "num_detections"} <= set(outputs)
    for key, shape in (("detection_boxes", (1, d, 4)), ("detection_scores", (1, d)),
                       ("detection_classes", (1, d)), ("num_detections", (1,))):
        assert outputs[key].shape == shape and outputs[key].dtype == np.float32, (key, outputs[key])
    n = int(outputs["num_detections"][0])
    assert n == len(want["scores"]), (n, want)
    boxes = outputs["detection_boxes"][0]
    assert np.all((boxes[:n] >= 0) & (boxes[:n] <= 1)), boxes[:n]
    for key in ("detection_boxes", "detection_scores", "detection_classes"):
        assert not outputs[key][0, n:].any(), (key, "padding rows are 0")
    got = contract.to_pixels(outputs, *image.shape[:2])
    np.testing.assert_array_equal(got["classes"], want["category_ids"])
    np.testing.assert_allclose(got["boxes"], want["boxes"], atol=BOX_ATOL, rtol=0)
    np.testing.assert_allclose(got["scores"], want["scores"], atol=SCORE_ATOL, rtol=0)
    np.testing.assert_array_equal(outputs["detection_names"], want["names"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_gives_the_detections_of_detect_and_carries_the_names(request, model, images, fmt):
    """One export per format (the conversion is the expensive part), every image through it."""
    path, _, run = request.getfixturevalue(fmt)
    assert read_labels(path) == {"class_names": list(model.class_names),
                                          "category_ids": list(model.category_ids)}
    for name, image in images.items():
        want = model.detect(image)
        assert (len(want["scores"]) == 0) == (name == "empty"), (name, want)  # the images do what they should
        try:
            assert_contract(run(image), image, want, model.settings["detections_max"])
        except AssertionError as err:
            raise AssertionError(f"{fmt}, image {name}: {err}") from None


def test_the_saved_model_has_serving_default_and_the_padded_serve(saved_model, model, images):
    path, loaded, _ = saved_model
    assert set(loaded.signatures) == {"serving_default", "serve"}
    inputs = loaded.signatures["serving_default"].structured_input_signature[1]
    assert inputs == {"input_tensor": tf.TensorSpec([1, None, None, 3], tf.uint8, name="input_tensor")}
    # The class names are a registered asset: the loaded model knows the file's path.
    assert loaded.labels_file.asset_path.numpy().decode().endswith("assets/labels.json")
    # serve: network-space outputs of model(images), for images already at the model's size.
    batch = np.stack([images["101x300"][:64, :96], images["480x640"][:64, :96]]).astype(np.float32)
    served = loaded.serve(tf.constant(batch))
    want = model(batch)
    np.testing.assert_array_equal(served["num_detections"].numpy(), want["num_detections"].numpy())
    np.testing.assert_allclose(served["boxes"].numpy(), want["boxes"].numpy(), atol=1e-2)


def test_frcnn_export_onnx_from_the_command_line(onnx_cli, images, tmp_path):
    """The command line wrote the file that the contract test above runs (one conversion for
    both); here what is particular to ONNX: its input and outputs, and the labels of a model
    without class names (labels 1..K), written by the same metadata step onto a copy."""
    path, code, out, err = onnx_cli
    assert code == 0, err[-2000:]
    assert "ONNX model written" in out and "tf2onnx" not in err

    import onnxruntime
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (tensor,) = session.get_inputs()
    assert (tensor.name, tensor.type, tensor.shape[0], tensor.shape[3]) == ("input_tensor", "tensor(uint8)", 1, 3)
    assert sorted(o.name for o in session.get_outputs()) == sorted(contract.OUTPUTS)

    unnamed = tmp_path / "unnamed.onnx"
    unnamed.write_bytes(path.read_bytes())
    export_onnx._add_labels(str(unnamed), tiny_model())               # no class names
    assert read_labels(unnamed) == {"class_names": None, "category_ids": [1, 2]}
    got = run_onnx(unnamed, images["480x640"])
    assert "detection_names" not in got and int(got["num_detections"][0]) > 0
    # (The classes in the graph are the named model's ids; that a model without ids exports
    # its labels 1..K is contract.detection_class_ids, checked at the end of this file.)


def test_tflite_runs_on_litert_without_a_deprecation_warning(tflite, images):
    path = tflite[0]
    assert type(export_tflite.interpreter(path)).__module__.startswith("ai_edge_litert")
    signatures = export_tflite.interpreter(path).get_signature_list()
    assert list(signatures) == ["serving_default"]
    assert signatures["serving_default"]["inputs"] == ["input_tensor"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_tflite(path, images["empty"])
    assert not caught, [str(w.message) for w in caught]


def test_without_litert_tensorflows_interpreter_runs_it_quietly(tflite, images, monkeypatch):
    path, _, run = tflite
    monkeypatch.setitem(__import__("sys").modules, "ai_edge_litert.interpreter", None)  # ImportError
    assert type(export_tflite.interpreter(path)).__module__.startswith("tensorflow")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = run_tflite(path, images["333x127"])
    assert not caught, [str(w.message) for w in caught]
    monkeypatch.undo()
    want = run(images["333x127"])
    assert int(out["num_detections"][0]) == int(want["num_detections"][0]) > 0
    np.testing.assert_allclose(out["detection_boxes"], want["detection_boxes"], atol=1e-5)


def test_unreadable_labels_are_a_clear_error(tflite, tmp_path):
    blob = tflite[0].read_bytes()
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(export_tflite.with_metadata(blob, export_tflite.METADATA_NAME, b"not json"))
    with pytest.raises(FrcnnError, match=r"broken\.tflite metadata 'frcnn_labels'.*labels JSON"):
        read_labels(broken)
    assert export_tflite.read_metadata(tflite[0], "no such entry") is None
    with pytest.raises(FrcnnError, match=r"model\.pt: expected a SavedModel folder, a \.tflite or a \.onnx"):
        read_labels(tmp_path / "model.pt")
    with pytest.raises(FrcnnError, match=r"no class names in this SavedModel"):
        read_labels(tmp_path)


# --------------------------------------------------------------- the pieces, without a model
@pytest.mark.parametrize("size,sides", [((101, 300), (64, 96)), ((333, 127), (64, 96)), ((480, 640), (64, 96)),
                                        ((64, 96), (64, 96)), ((50, 80), (64, 96)), ((1, 1), (64, 96)),
                                        ((7, 5), (64, 96)), ((375, 500), (600, 1000))])
def test_the_portable_resize_is_the_pipelines(size, sides):
    image = np.random.default_rng(sum(size)).integers(0, 256, size + (3,), dtype=np.uint8)
    want, want_scale = pipeline.resize_image(image, *map(float, sides))
    got, scale = resize.resize_image(image, *map(float, sides))
    assert got.shape == want.shape and float(scale) == float(want_scale)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-3, rtol=0)


def test_the_portable_resize_traces_without_scale_and_translate_or_matmul():
    fn = tf.function(lambda image: resize.resize_image(image, 64.0, 96.0),
                     input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    graph = fn.get_concrete_function().graph.as_graph_def()
    ops = {node.op for node in graph.node} | {node.op for f in graph.library.function for node in f.node_def}
    assert "GatherV2" in ops and ops & {"While", "StatelessWhile"}, ops
    assert not ops & {"ScaleAndTranslate", "ResizeBilinear", "MatMul", "BatchMatMulV2", "Einsum"}, ops


class _FixedDetector:
    """Stands in for a FasterRCNN in ``contract.detections``: records what it is given and
    returns fixed padded detections (in the resized image's pixels)."""

    def __init__(self, boxes, scores, labels, category_ids=None, d=5):
        self.settings = {"image_min_side": 64, "image_max_side": 96, "detections_max": d}
        self.num_classes, self.category_ids = 2, category_ids
        n = len(scores)
        self.out = {"boxes": np.zeros((1, d, 4), np.float32), "scores": np.zeros((1, d), np.float32),
                    "labels": -np.ones((1, d), np.int32), "num_detections": np.array([n], np.int32)}
        if n:
            self.out["boxes"][0, :n], self.out["scores"][0, :n], self.out["labels"][0, :n] = boxes, scores, labels

    def detect_padded(self, images, image_sizes, portable):
        self.seen = images.numpy(), image_sizes.numpy(), portable
        return {k: tf.constant(v) for k, v in self.out.items()}


def test_the_mapping_back_is_detects_and_drops_empty_boxes():
    # 99 x 300 -> scale 0.32, content 31.68 px tall, rounded to 32: the middle box lies in
    # the last 0.32 px, beyond the image, and has no area once mapped back (detect drops it).
    boxes = [[10, 5, 50, 20], [20, 31.8, 70, 31.9], [0, 0, 96, 32]]
    fake = _FixedDetector(boxes, [0.9, 0.8, 0.7], [2, 1, 1], category_ids=[7, 3])
    out = {k: v.numpy() for k, v in contract.detections(fake, tf.zeros([1, 99, 300, 3], tf.uint8)).items()}
    want = map_back(np.array(boxes), np.array([0.9, 0.8, 0.7]), np.array([2, 1, 1]), (99, 300), 0.32)
    assert len(want["scores"]) == 2 and int(out["num_detections"][0]) == 2
    got = contract.to_pixels(out, 99, 300)
    np.testing.assert_allclose(got["boxes"], want["boxes"], atol=1e-4)
    np.testing.assert_array_equal(out["detection_scores"][0], np.float32([0.9, 0.7, 0, 0, 0]))
    np.testing.assert_array_equal(out["detection_classes"][0], [3, 7, 0, 0, 0])    # ids of labels 2, 1
    # Normalised [ymin, xmin, ymax, xmax] of the input: the full-content box is the whole image.
    np.testing.assert_allclose(out["detection_boxes"][0, 1], [0, 0, 1, 1], atol=1e-6)


def test_the_model_sees_the_canvas_detect_builds():
    fake = _FixedDetector([], [], [], d=3)
    image = np.full((333, 127, 3), 200, np.uint8)
    out = contract.detections(fake, tf.constant(image[None]))
    padded, sizes, portable = fake.seen
    # 333 x 127 -> 96 x 37 (scale 0.288), on the 96 x 64 canvas, zeros outside the content.
    assert padded.shape == (1, 96, 64, 3) and sizes.tolist() == [[96, 37]] and portable is True
    np.testing.assert_allclose(padded[0, :, :37], 200, atol=1e-3)
    assert not padded[0, :, 37:].any()
    assert float(out["num_detections"][0]) == 0
    assert contract.detection_class_ids(fake) == [1, 2]                # no category ids: labels
