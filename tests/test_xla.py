"""XLA: the train step, test step, predict, detect and export compile with ``jit_compile=True``
(Keras' default on a GPU or TPU) and give what the default CPU graph gives; a machine that
lists a GPU trains with Keras' default compile; no empty box is ever proposed or detected."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers.synthetic import make_batch, tiny_model


def _pair(**overrides):
    """Two tiny models with identical weights, one compiled with XLA, one without."""
    models = []
    for jit in (False, True):
        keras.utils.set_random_seed(3)
        model = tiny_model(**overrides)
        model.compile(optimizer=keras.optimizers.SGD(0.01), jit_compile=jit)
        models.append(model)
    models[1].set_weights(models[0].get_weights())
    return models


def test_train_and_test_steps_compile_with_xla_and_match_the_graph():
    images, targets = make_batch()
    graph, xla = _pair()
    assert xla.jit_compile is True and graph.jit_compile is False
    # The RPN losses depend on the anchors' labels and the seeded sampling alone: equal up
    # to rounding.  The R-CNN losses depend on which proposals survive NMS, and an untrained
    # RPN scores thousands of anchors almost alike, so XLA's rounding can reorder near-ties
    # and the seeded sampler then draws other RoIs: equal in distribution, close in value.
    want = graph.test_on_batch(images, targets, return_dict=True)
    got = xla.test_on_batch(images, targets, return_dict=True)
    assert got["rpn_objectness"] == pytest.approx(want["rpn_objectness"], rel=2e-3)
    assert got["loss"] == pytest.approx(want["loss"], rel=0.1)
    for step in range(3):
        want = graph.train_on_batch(images, targets, return_dict=True)
        got = xla.train_on_batch(images, targets, return_dict=True)
        for name in ("rpn_objectness", "rpn_box"):
            assert got[name] == pytest.approx(want[name], rel=2e-3, abs=1e-5), (step, name)
        for name in ("rcnn_class", "rcnn_box", "loss"):
            assert got[name] == pytest.approx(want[name], rel=0.1), (step, name)
    assert int(xla.optimizer.iterations) == 3


def _same_detections(got, want, atol=1e-3):
    for g, w in zip(got, want):
        assert len(g["boxes"]) == len(w["boxes"]) > 0
        np.testing.assert_array_equal(g["labels"], w["labels"])
        np.testing.assert_allclose(g["boxes"], w["boxes"], atol=atol)
        np.testing.assert_allclose(g["scores"], w["scores"], atol=1e-5)


def test_predict_and_detect_compile_with_xla_and_match():
    graph, xla = _pair(detections_score_threshold=0.0)
    images, _ = make_batch()
    want = graph.predict(images, verbose=0)
    got = xla.predict(images, verbose=0)
    np.testing.assert_array_equal(got["num_detections"], want["num_detections"])
    np.testing.assert_allclose(got["boxes"], want["boxes"], atol=1e-3)
    raw = [images[0].astype(np.uint8), images[1, :50, :80].astype(np.uint8)]
    _same_detections(xla.detect(raw), graph.detect(raw))
    assert xla._frcnn_detect_fn[0] is True           # detect compiled with XLA


def test_exported_endpoints_serve_the_same_and_compile_with_xla(tmp_path):
    """The SavedModel uses the portable ops: its padded ``serve`` endpoint gives ``predict``'s
    detections, and so does an XLA compilation of it; the ``serving_default`` contract on a raw
    image compiles with XLA too and gives what it gives without."""
    keras.utils.set_random_seed(3)
    graph = tiny_model(detections_score_threshold=0.0)
    images, _ = make_batch()
    want = graph.predict(images, verbose=0)
    graph.export(str(tmp_path / "saved"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "saved"))
    out = served.serve(tf.constant(images))
    np.testing.assert_allclose(out["boxes"].numpy(), want["boxes"], atol=1e-3)
    compiled = tf.function(served.serve, jit_compile=True)(tf.constant(images))
    np.testing.assert_allclose(compiled["boxes"].numpy(), want["boxes"], atol=1e-3)
    contract = served.signatures["serving_default"]
    raw = tf.constant(images[1:2, :50, :80].astype(np.uint8))
    plain = contract(input_tensor=raw)
    xla_out = tf.function(lambda x: contract(input_tensor=x), jit_compile=True)(raw)
    assert int(plain["num_detections"][0]) == int(xla_out["num_detections"][0]) > 0
    np.testing.assert_allclose(xla_out["detection_boxes"].numpy(), plain["detection_boxes"].numpy(),
                               atol=1e-5)


def test_keras_default_compile_trains_where_a_gpu_is_listed(monkeypatch):
    """Keras 3 resolves ``jit_compile="auto"`` to True when TensorFlow lists a GPU: then ``fit``
    used to fail on variable creation and on CropAndResize."""
    real = tf.config.list_physical_devices
    fake_gpu = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda device_type=None: real(device_type) + (
                            [fake_gpu] if device_type in (None, "GPU") else []))
    images, targets = make_batch()
    model = tiny_model()
    model.compile(optimizer="adam")                     # jit_compile="auto"
    assert model.jit_compile is True
    data = tf.data.Dataset.from_tensor_slices((images, targets)).batch(3).repeat()
    history = model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert int(model.optimizer.iterations) == 2


@pytest.mark.parametrize("jit", [False, True])
def test_no_empty_or_too_small_box_on_a_padded_canvas(jit):
    """A 60 x 200 image goes onto a taller canvas; anchors over the padding are clipped to
    zero height.  Neither proposals nor detections may be empty or under the minimum size."""
    keras.utils.set_random_seed(0)
    model = tiny_model(detections_score_threshold=0.0, rpn_post_nms_top_n_test=64,
                       detections_max=200, rpn_min_size=4.0, detections_min_size=0.5,
                       image_min_side=64, image_max_side=200)
    model.compile(optimizer="adam", jit_compile=jit)
    image = np.random.default_rng(1).integers(0, 256, (60, 200, 3), dtype=np.uint8)
    result = model.detect(image)
    widths = result["boxes"][:, 2] - result["boxes"][:, 0]
    heights = result["boxes"][:, 3] - result["boxes"][:, 1]
    assert len(widths) > 20
    # detections_min_size is applied in network-input pixels; the scale here is 64 / 60.
    assert widths.min() >= 0.5 * 60 / 64 - 1e-4 and heights.min() >= 0.5 * 60 / 64 - 1e-4
    # Proposals, straight from the RPN on the padded canvas (64 x 224 with content 64 x 213).
    images = tf.zeros([1, 64, 224, 3]) + 100.0
    sizes = tf.constant([[64, 213]])
    features = model.backbone(images)
    logits, deltas = model.rpn_head(features)
    proposals, _, valid = model._proposals(logits, deltas, model._anchors(features), sizes,
                                           False, jit)
    kept = proposals.numpy()[valid.numpy()]
    assert len(kept) > 0
    assert (kept[:, 2] - kept[:, 0]).min() >= 4.0 and (kept[:, 3] - kept[:, 1]).min() >= 4.0
    assert kept[:, 2].max() <= 213 and kept[:, 3].max() <= 64


def test_bad_training_input_is_still_rejected_under_xla():
    """XLA compiles ``tf.debugging.Assert`` out of the step; the checks then run on the data
    before the step: a dataset's map, or eagerly for arrays.  Nothing is trained on it."""
    from frcnn_lib.runtime.errors import FrcnnError

    images, targets = make_batch()
    bad = {k: v.copy() for k, v in targets.items()}
    bad["boxes"][1, 0] = [np.nan, 0, 10, 10]
    model = tiny_model()
    model.compile(optimizer="adam", jit_compile=True)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(FrcnnError, match="finite"):
        model.train_on_batch(images, bad)
    data = tf.data.Dataset.from_tensor_slices((images, bad)).batch(3)
    with pytest.raises(FrcnnError, match="finite.*image 1, box 0"):
        model.fit(data, epochs=1, verbose=0)
    bad["boxes"][1, 0] = [20, 0, 10, 10]
    with pytest.raises(FrcnnError, match="x2 >= x1"):
        model.evaluate(tf.data.Dataset.from_tensor_slices((images, bad)).batch(3), verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert int(model.optimizer.iterations) == 0


def test_the_step_compiles_once_for_all_boxes_and_labels():
    """Under XLA an op that needs a compile-time constant (a strided slice's bounds, a top_k's
    k) turns the tensors it depends on into part of the compilation key: the input checks'
    ``rows[first]`` made every batch with other boxes or labels compile the step anew (10 s a
    step for shapes_cpu on a CPU, every step on a GPU).  Two batches with different boxes and
    labels must give the same compiled program, constants included."""
    images, targets = make_batch()
    model = tiny_model()
    s = model.settings

    @tf.function(jit_compile=True)
    def total_loss(x, boxes, labels):
        parts = model.compute_losses(x, {"boxes": boxes, "labels": labels}, training=True, portable=True)
        return tf.add_n([s[f"loss_{name}_weight"] * parts[name] for name in parts])

    other_boxes = targets["boxes"] + np.float32(2.0) * (targets["labels"] >= 1)[..., None]
    other_labels = np.where(targets["labels"] >= 1, 3 - targets["labels"], -1).astype(np.int32)
    assert not np.array_equal(other_labels, targets["labels"])
    hlo = [total_loss.experimental_get_compiler_ir(images, b, l)(stage="hlo")
           for b, l in ((targets["boxes"], targets["labels"]), (other_boxes, other_labels))]
    assert hlo[0] == hlo[1]
