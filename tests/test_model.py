"""FasterRCNN as a keras.Model: construction, config, outputs, training, saving, export.

Everything runs on the "small" backbone at 64 x 96 pixels (see tests/helpers/synthetic.py).
The module trains one tiny detector to overfit a fixed batch of three images (one with no
object) and reuses it for the loss, detection, save/load and export checks.
"""
import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from frcnn_lib import FasterRCNN, FrcnnError
from frcnn_lib.backbones import build_backbone
from frcnn_lib.model import DEFAULTS, LOSS_NAMES
from helpers.synthetic import (HEIGHT, WIDTH, check_padded_detections, make_batch, match_ground_truth,
                               shared_overfit, tiny_model)

LOG_NAMES = {"loss", *LOSS_NAMES}
assert LOG_NAMES == {"loss", "rpn_objectness", "rpn_box", "rcnn_class", "rcnn_box"}
OVERFIT_STEPS = 150  # measured: 100 steps already pass for seeds 0-5


# ----------------------------------------------------------------------------- construction
@pytest.mark.parametrize("kwargs, named", [
    (dict(num_classes=2, backbone="small", rpn_chanels=64), "rpn_chanels"),
    (dict(num_classes=2, backbone="small", foo=1, detection_max=5), "detection_max"),
    (dict(num_classes=2, backbone="vgg19"), "vgg19"),
    (dict(num_classes=2, backbone="small", roi_pooling="roi_warp"), "roi_warp"),
    (dict(num_classes=2, backbone="small", roi_sampling_ratio=0), "roi_sampling_ratio"),
    (dict(num_classes=2, backbone="small", roi_sampling_ratio=1.5), "roi_sampling_ratio"),
    (dict(num_classes=0, backbone="small"), "num_classes"),
    (dict(num_classes=-3, backbone="small"), "num_classes"),
])
def test_bad_constructor_arguments_raise_frcnn_error_naming_them(kwargs, named):
    with pytest.raises(FrcnnError, match=named) as info:
        FasterRCNN(**kwargs)
    if "foo" in kwargs:
        assert "foo" in str(info.value)


def _non_default_arguments(weights_path):
    """A valid value different from the default for every constructor argument."""
    args = dict(
        backbone="small", backbone_weights=weights_path, backbone_frozen_stages=1,
        backbone_frozen_batchnorm=True, anchor_scales=(24, 48), anchor_ratios=(0.5, 1.0),
        rpn_channels=48, rpn_positive_iou=0.65, rpn_negative_iou=0.25, rpn_batch_size=96,
        rpn_positive_fraction=0.4, rpn_allowed_border=4.0, rpn_nms_iou=0.65, rpn_min_size=1.0,
        rpn_pre_nms_top_n_train=500, rpn_post_nms_top_n_train=100,
        rpn_pre_nms_top_n_test=400, rpn_post_nms_top_n_test=50, rpn_smooth_l1_sigma=2.0,
        roi_pooling="roi_align", roi_pool_size=5, roi_sampling_ratio=3, roi_batch_size=64, roi_foreground_fraction=0.3,
        roi_foreground_iou=0.55, roi_background_iou_low=0.0, roi_background_iou_high=0.45,
        roi_box_weights=(8.0, 8.0, 4.0, 4.0), roi_head_units=48, roi_head_dropout=0.1,
        detections_score_threshold=0.1, detections_nms_iou=0.4, detections_max=20,
        detections_soft_nms_sigma=0.5,
        detections_min_size=0.5,
        loss_rpn_objectness_weight=0.5, loss_rpn_box_weight=2.0, loss_rcnn_class_weight=1.5,
        loss_rcnn_box_weight=0.75, weight_decay=1e-4,
        image_min_side=80, image_max_side=120, seed=7,
    )
    # A new constructor argument must be added here, so that its round trip is tested.
    assert set(args) == set(DEFAULTS), set(args) ^ set(DEFAULTS)
    for key, value in args.items():
        assert value != DEFAULTS[key], key
    return args


def test_get_config_from_config_round_trips_every_argument(tmp_path):
    weights = str(tmp_path / "small_backbone.weights.h5")
    build_backbone("small")[0].save_weights(weights)
    args = _non_default_arguments(weights)
    model = FasterRCNN(3, name="my_detector", class_names=["a", "b", "c"], category_ids=[4, 8, 15], **args)

    config = model.get_config()
    expected = {"name": "my_detector", "trainable": True, "num_classes": 3,
                "class_names": ["a", "b", "c"], "category_ids": [4, 8, 15],
                "dtype": keras.saving.serialize_keras_object(keras.DTypePolicy("float32"))}
    expected.update({k: list(v) if isinstance(v, tuple) else v for k, v in args.items()})
    assert config == expected
    config = json.loads(json.dumps(config))  # plain JSON, as in a .keras file

    # from_config must not read backbone_weights again: the saved model carries the weights.
    (tmp_path / "small_backbone.weights.h5").unlink()
    clone = FasterRCNN.from_config(config)
    assert clone.get_config() == config
    assert clone.name == "my_detector" and clone.num_classes == 3

    # Same configuration -> same architecture: the weights transfer and give the same output.
    images = np.random.default_rng(1).uniform(0, 255, (1, 64, 80, 3)).astype(np.float32)
    model.build()
    clone.build()
    assert [w.shape for w in clone.get_weights()] == [w.shape for w in model.get_weights()]
    clone.set_weights(model.get_weights())
    a, b = model(images), clone(images)
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy(), err_msg=key)


# ----------------------------------------------------------------------------- outputs
def test_predict_returns_padded_detections_for_a_batch_of_three():
    # Few candidates (8 proposals x 3 classes) but room for 100: padding rows must appear.
    keras.utils.set_random_seed(3)
    model = tiny_model(num_classes=3, rpn_post_nms_top_n_test=8, detections_max=100)
    images = np.random.default_rng(2).uniform(0, 255, (3, 72, 80, 3)).astype(np.float32)
    out = model.predict(images, verbose=0)
    counts = check_padded_detections(out, 3, 72, 80, num_classes=3, max_detections=100)
    assert all(0 < n < 100 for n in counts), counts  # both valid and padding rows checked


# ----------------------------------------------------------------------------- overfitting
@pytest.fixture(scope="module")
def overfit():
    """A tiny model trained by ``fit`` to overfit ``make_batch()``, with the losses of
    ``evaluate`` before and after and every log its callbacks saw (shared with test_detect)."""
    model, images, targets, record = shared_overfit(OVERFIT_STEPS, seed=0)
    return dict(model=model, images=images, targets=targets, record=record,
                initial=record["initial"], final=record["final"])


def test_overfitting_drives_every_loss_down(overfit):
    initial, final = overfit["initial"], overfit["final"]
    steps = overfit["record"]["epochs"]  # one step per epoch: the step's own losses
    assert set(initial) == set(final) == LOG_NAMES
    assert len(steps) == OVERFIT_STEPS
    for step, logs in enumerate(steps):
        assert all(math.isfinite(v) for v in logs.values()), (step, logs)
    # The starting losses are real (R-CNN box loss included: training proposals cover every
    # anchor, so some sampled RoIs overlap a ground truth from the first step).
    assert initial["rpn_objectness"] > 0.5 and initial["rcnn_class"] > 0.5, initial
    assert initial["rcnn_box"] > 0.05 and initial["rpn_box"] > 0.0, initial
    for name in LOG_NAMES:
        # Measured over seeds 0-4: every final loss is below 0.1 x its start.
        assert final[name] < 0.5 * initial[name], (name, initial[name], final[name])
    # The last training steps agree with the final evaluation (no lucky evaluation).
    last = {k: np.mean([logs[k] for logs in steps[-10:]]) for k in LOG_NAMES}
    assert last["loss"] < 0.5 * initial["loss"], last


def test_losses_and_gradients_are_finite_on_an_image_without_objects(overfit):
    model, images, targets = overfit["model"], overfit["images"], overfit["targets"]
    assert np.all(targets["labels"][2] == -1)  # image 2 of the batch is the empty one
    empty = {k: v[2:3] for k, v in targets.items()}
    with tf.GradientTape() as tape:
        parts = model.compute_losses(images[2:3], empty, training=True)
        total = tf.add_n(list(parts.values()))
    grads = tape.gradient(total, model.trainable_weights)
    assert set(parts) == set(LOSS_NAMES)
    assert all(np.isfinite(float(v)) for v in parts.values()), parts
    # No ground truth: no positive anchor and no foreground RoI, so no box loss at all.
    assert float(parts["rpn_box"]) == 0.0 and float(parts["rcnn_box"]) == 0.0, parts
    assert float(parts["rpn_objectness"]) >= 0.0 and float(parts["rcnn_class"]) >= 0.0, parts
    assert all(g is None or np.all(np.isfinite(g.numpy())) for g in grads)
    assert sum(g is not None for g in grads) > 0


def test_overfitted_detections_land_on_the_ground_truth(overfit):
    model, images, targets = overfit["model"], overfit["images"], overfit["targets"]
    out = model.predict(images, verbose=0)
    check_padded_detections(out, 3, HEIGHT, WIDTH, num_classes=2, max_detections=10)
    best = []  # per ground-truth box: best IoU of a right-class detection scoring >= 0.5
    for b in range(len(images)):
        detections = {k: out[k][b] for k in ("boxes", "scores", "labels")}
        best += match_ground_truth(detections, targets["boxes"][b], targets["labels"][b], min_score=0.5)
    assert len(best) == 3 and min(best) >= 0.7, best  # measured: >= 0.84


def test_the_training_gradient_is_the_same_on_every_call():
    # crop_and_resize's CPU gradient shards the RoIs over threads that add into the same
    # feature map without atomics: where RoIs overlap, updates are lost at random (measured:
    # 9 of 50 calls off by up to 23 % of the largest gradient at this size).  The losses crop
    # by gathers, so the same weights and batch give the same gradient, bit for bit.
    from frcnn_lib.training.presets import get_preset
    keras.utils.set_random_seed(0)
    model = FasterRCNN(2, **get_preset("shapes_cpu")["model"])     # 160 px, 4 x 64 RoIs
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (4, 160, 160, 3)), tf.float32)
    xy = rng.uniform(0, 100, (4, 6, 2))
    targets = {"boxes": tf.constant(np.concatenate([xy, xy + rng.uniform(12, 60, (4, 6, 2))], -1),
                                    tf.float32),
               "labels": tf.constant(rng.integers(1, 3, (4, 6)), tf.int32)}
    model.build()
    trunk = model.backbone.trainable_weights     # reached from the RoI head through the crops

    def gradient():
        with tf.GradientTape() as tape:
            parts = model.compute_losses(images, targets, training=True)
            total = tf.add_n([parts[name] for name in LOSS_NAMES])
        return [g.numpy() for g in tape.gradient(total, trunk)]

    first = gradient()
    assert sum(float(np.abs(g).sum()) for g in first) > 0
    for call in range(15):
        again = gradient()
        worst = max(float(np.abs(a - b).max()) for a, b in zip(first, again))
        assert worst == 0.0, f"call {call + 2}: the trunk's gradient moved by {worst:.3g}"


def test_fit_with_a_seed_is_reproducible():
    # The seed fixes the initial weights, the sampling and (with the race-free crops above)
    # every update: two runs of fit end with the same weights, bit for bit.
    from helpers.synthetic import train_overfit
    runs = [train_overfit(8, seed=3) for _ in range(2)]
    losses = [[epoch["loss"] for epoch in run[3]["epochs"]] for run in runs]
    assert len(losses[0]) == 8 and losses[0][-1] < losses[0][0]          # it trained
    assert losses[0] == losses[1]
    assert all(np.array_equal(a, b) for a, b in zip(runs[0][0].get_weights(), runs[1][0].get_weights()))


@pytest.mark.parametrize("precision", ["float32", "mixed_float16"])
def test_train_step_decays_the_kernels_as_the_loss_term_would(precision):
    # The decay, 0.5 * wd * sum(W**2) over the kernels, has the gradient wd * W.  By hand, SGD
    # at learning rate lr moves each kernel by lr * wd * W beyond the same step without decay
    # (the losses' gradient is the same: same weights, same batch, a deterministic step), and
    # leaves every other weight where that step puts it; under mixed_float16 the loss scale
    # multiplies the decay's gradient and is divided out again.  In float32 the textbook step
    # (the decay written with tf.square in the loss, through the tape) must also agree, loss
    # included.
    from frcnn_lib.training.precision import policy_scope
    images, targets = make_batch()
    lr, wd = 0.5, 0.05

    def compiled(weight_decay):
        keras.utils.set_random_seed(0)
        with policy_scope(precision):
            model = tiny_model(weight_decay=weight_decay)
            model.build()
            model.compile(optimizer=keras.optimizers.SGD(lr))
        for w in model.trainable_weights:   # biases start at 0, where a decay of them is 0 too
            if "kernel" not in w.path:
                w.assign(w + 0.1)
        return model

    library, undecayed = compiled(wd), compiled(0.0)
    start = [w.numpy() for w in library.trainable_weights]
    logs = library.train_on_batch(images, targets, return_dict=True)
    undecayed.train_on_batch(images, targets)
    for w0, a, c in zip(start, library.trainable_weights, undecayed.trainable_weights):
        assert not np.array_equal(c.numpy(), w0), f"{c.path}: the step did not move it"
        expected = c.numpy() - (lr * wd * w0 if "kernel" in a.path else 0.0)
        np.testing.assert_allclose(a.numpy(), expected, rtol=1e-6, atol=1e-7, err_msg=a.path)
    if precision != "float32":
        return

    textbook = compiled(wd)
    s = textbook.settings
    with tf.GradientTape() as tape:
        parts = textbook.compute_losses(images, targets, training=True)
        total = tf.add_n([s[f"loss_{n}_weight"] * parts[n] for n in LOSS_NAMES])
        total += 0.5 * wd * tf.add_n([tf.reduce_sum(tf.square(w))
                                      for w in textbook.trainable_weights if "kernel" in w.path])
    grads = tape.gradient(total, textbook.trainable_weights)
    textbook.optimizer.apply_gradients(zip(grads, textbook.trainable_weights))
    assert logs["loss"] == pytest.approx(float(total), rel=1e-5)
    for a, b in zip(library.trainable_weights, textbook.trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)


# ----------------------------------------------------------------------------- Keras training API
def test_fit_logs_exactly_the_four_losses_and_the_total(overfit):
    record = overfit["record"]
    assert len(record["batches"]) == len(record["epochs"]) == OVERFIT_STEPS
    for logs in record["batches"] + record["epochs"]:
        assert set(logs) == LOG_NAMES, logs
    assert set(record["history"]) == LOG_NAMES
    assert len(record["history"]["rcnn_box"]) == OVERFIT_STEPS
    # The total is the weighted sum of the four parts (weights 1) plus weight decay (> 0).
    for logs in record["epochs"]:
        parts = sum(logs[name] for name in LOSS_NAMES)
        assert parts < logs["loss"] < parts + 1.0, logs


def test_evaluate_returns_the_losses(overfit):
    model, images, targets = overfit["model"], overfit["images"], overfit["targets"]
    results = model.evaluate(images, targets, verbose=0, return_dict=True)
    assert set(results) == LOG_NAMES
    assert all(math.isfinite(v) for v in results.values()), results
    as_list = model.evaluate(images, targets, verbose=0)  # same model, same step: same losses
    assert len(as_list) == 5 and sorted(as_list) == pytest.approx(sorted(results.values()), rel=1e-5)


def test_the_compiled_metric_reset_leaves_the_next_batch_its_own_logs():
    # FasterRCNN.reset_metrics runs every tracker's reset_state as one compiled call (the
    # pinned Keras's train_on_batch and test_on_batch call it before every batch; Keras 3.6,
    # the oldest supported, never resets there).  After a reset, the logs of batch B after
    # batch A are B's alone, as a model that never saw A reports them; without it they would
    # average A and B.
    images, targets = make_batch(num_images=2)
    first = (images[:1], {k: v[:1] for k, v in targets.items()})
    second = (images[1:], {k: v[1:] for k, v in targets.items()})
    keras.utils.set_random_seed(0)
    model = tiny_model(roi_head_dropout=0.0)
    model.build()
    model.compile(optimizer=keras.optimizers.SGD(0.0))      # a step that moves nothing

    def logs(batch):      # floats (the oldest Keras returns 0-d arrays)
        return {k: float(v) for k, v in model.test_on_batch(*batch, return_dict=True).items()}

    alone = logs(second)
    model.reset_metrics()
    assert logs(first)["loss"] != pytest.approx(alone["loss"], rel=1e-3)   # the batches differ
    model.reset_metrics()
    assert logs(second) == pytest.approx(alone, rel=1e-6)
    model.train_on_batch(*first)
    model.reset_metrics()
    assert all(float(v.numpy()) == 0.0 for m in model.metrics for v in m.variables)
    model.train_on_batch(*second)
    assert [float(m.count.numpy()) for m in model.metrics] == [1.0] * 5     # one batch each


def test_keras_callbacks_see_the_losses_and_early_stopping_works(overfit):
    # Two more Adam steps per epoch on the overfitted model, whose weights are restored
    # after.  rcnn_class can never improve by 100: EarlyStopping stops after epoch 2 of 5,
    # which it can only do if it finds "rcnn_class" in the epoch logs.
    model, images, targets = overfit["model"], overfit["images"], overfit["targets"]
    weights = model.get_weights()
    try:
        _fit_with_early_stopping(model, images, targets)
    finally:
        model.set_weights(weights)


def _fit_with_early_stopping(model, images, targets):
    dataset = tf.data.Dataset.from_tensor_slices((images, targets)).batch(3).repeat()
    seen = []
    recorder = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(dict(logs)))
    stopper = keras.callbacks.EarlyStopping(monitor="rcnn_class", min_delta=100.0, patience=1,
                                            mode="min")
    history = model.fit(dataset, epochs=5, steps_per_epoch=2, verbose=0, shuffle=False,
                        callbacks=[recorder, stopper])
    assert history.epoch == [0, 1]
    assert stopper.stopped_epoch == 1
    assert len(seen) == 2 and all(set(logs) == LOG_NAMES for logs in seen), seen
    assert all(math.isfinite(float(v)) for logs in seen for v in logs.values()), seen


# ----------------------------------------------------------------------------- save / export
def test_save_and_load_give_identical_predictions_and_detections(overfit, tmp_path):
    model, images = overfit["model"], overfit["images"]
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, FasterRCNN)
    assert loaded.get_config() == model.get_config()

    before, after = model.predict(images, verbose=0), loaded.predict(images, verbose=0)
    assert set(before) == set(after)
    # Same weights, but two separately compiled graphs: oneDNN's threaded reductions may round
    # differently (measured: 1 float32 ulp, 4e-6 px).  Labels and counts must be identical.
    for key in ("labels", "num_detections"):
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    np.testing.assert_allclose(after["boxes"], before["boxes"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(after["scores"], before["scores"], rtol=0, atol=1e-5)
    assert before["num_detections"][:2].min() >= 1  # the comparison is about real detections

    raw = [images[0].astype(np.uint8), np.ascontiguousarray(images[1, :, :80].astype(np.uint8))]
    for a, b in zip(model.detect(raw), loaded.detect(raw)):
        assert set(a) == set(b) == {"boxes", "scores", "labels"}
        np.testing.assert_array_equal(b["labels"], a["labels"])
        np.testing.assert_allclose(b["boxes"], a["boxes"], rtol=0, atol=1e-4)
        np.testing.assert_allclose(b["scores"], a["scores"], rtol=0, atol=1e-5)


def test_export_serves_the_same_detections(overfit, tmp_path):
    model, images = overfit["model"], overfit["images"]
    model.export(str(tmp_path / "saved"), verbose=False)
    # Keep the loaded object: a chained ``tf.saved_model.load(dir).serve(x)`` lets Python
    # free it (and its variables) before ``serve`` runs -> "variables have been deleted".
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    served = loaded.serve(tf.constant(images))
    expected = model.predict(images, verbose=0)
    assert set(served) == set(expected)
    for key in ("labels", "num_detections"):
        np.testing.assert_array_equal(served[key].numpy(), expected[key], err_msg=key)
    # Two separately compiled graphs (Keras' predict function, the SavedModel's) may fuse
    # ops differently: a few float32 ulps.  Scores (0..1) to 1e-5; boxes are pixels up to
    # 96, where one ulp is 7.6e-6, so 1e-4 (13 ulps; measured: up to 1.1e-5).
    np.testing.assert_allclose(served["scores"].numpy(), expected["scores"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(served["boxes"].numpy(), expected["boxes"], atol=1e-4, rtol=0)


def test_export_serves_images_without_detections(tmp_path):
    """An exported model answers an image with no detection with zeros and padding, not an
    error (torchvision#2380): here every image of the batch, by a score threshold of 0.999."""
    keras.utils.set_random_seed(0)
    model = tiny_model(detections_score_threshold=0.999)
    images, _ = make_batch()
    model.export(str(tmp_path / "saved"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    served = {k: v.numpy() for k, v in loaded.serve(tf.constant(images)).items()}
    np.testing.assert_array_equal(served["num_detections"], np.zeros(len(images)))
    assert (served["labels"] == -1).all() and (served["scores"] == 0).all()
    assert served["boxes"].shape == (len(images), model.settings["detections_max"], 4)


@pytest.mark.parametrize("method", ["crop_and_resize", "gather", "compiled_gather"])
def test_roi_sampling_ratio_reaches_roi_align(method):
    # The setting is RoIAlign's samples per bin and axis, on both of the model's pooling paths.
    from frcnn_lib import roi
    model = FasterRCNN(2, backbone="small", roi_pooling="roi_align", roi_sampling_ratio=1,
                       roi_pool_size=3, image_min_side=64, image_max_side=64)
    features = tf.constant(np.random.default_rng(0).normal(size=(1, 8, 8, 4)), tf.float32)
    rois = tf.constant([[[3.0, 5.0, 41.0, 30.0], [10.0, 0.0, 64.0, 64.0]]])
    pooled = model._pool(features, rois, method).numpy()
    flat, index = roi.flatten_rois(rois)
    one = roi.roi_align(features, flat, index, model.stride, 3, sampling_ratio=1).numpy()
    two = roi.roi_align(features, flat, index, model.stride, 3, sampling_ratio=2).numpy()
    np.testing.assert_allclose(pooled, one, atol=1e-5)
    assert np.abs(pooled - two).max() > 1e-3
