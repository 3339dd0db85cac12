"""frcnn_lib.course.custom_backbone.with_backbone: a user's keras.Model as the trunk of a FasterRCNN."""
import keras
import numpy as np
import pytest

from frcnn_lib.course.custom_backbone import with_backbone
from frcnn_lib.runtime.errors import FrcnnError
from tests.helpers.synthetic import make_batch, tiny_model


def trunk(stride=8, channels=24):
    """Three stride-2 convs (stride 8), preprocessing included."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    for i in range(int(np.log2(stride))):
        x = keras.layers.Conv2D(channels, 3, strides=2, padding="same", activation="relu", name=f"my_conv{i}")(x)
    return keras.Model(inputs, x, name="my_trunk")


def test_custom_trunk_trains_and_predicts():
    images, targets = make_batch(num_images=2)
    my = trunk()
    model = with_backbone(tiny_model(), my, stride=8)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = [w.numpy().copy() for w in my.weights]
    history = model.fit(images, targets, batch_size=2, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert all(not np.array_equal(a, w.numpy()) for a, w in zip(before, my.weights))   # the trunk learns
    # only the new trunk's and head's weights are the model's: the replaced "small" trunk is gone
    parts = (my, model.rpn_head, model.roi_head, model.predictor)
    assert {id(w) for w in model.weights} == {id(w) for part in parts for w in part.weights}
    assert model.roi_head.input_shape[-1] == 24
    out = model.predict(images, verbose=0)
    assert out["boxes"].shape[0] == 2 and out["boxes"].shape[-1] == 4
    # anchors follow the stride: a 64 x 96 image has 8 x 12 locations of 9 anchors
    assert model._anchors(my(images)).shape[0] == 8 * 12 * 9


def test_weights_round_trip(tmp_path):
    images, _ = make_batch(num_images=2)
    model = with_backbone(tiny_model(), trunk(), stride=8)
    model.build()
    path = str(tmp_path / "m.weights.h5")
    model.save_weights(path)
    again = with_backbone(tiny_model(), trunk(), stride=8)
    again.build()
    again.load_weights(path)
    a, b = model.predict(images, verbose=0), again.predict(images, verbose=0)
    np.testing.assert_array_equal(a["boxes"], b["boxes"])


def test_mistakes_give_one_line_errors():
    with pytest.raises(FrcnnError, match=r"stride=16.*expected \(1, 4, 4, C\)"):
        with_backbone(tiny_model(), trunk(stride=8), stride=16)
    with pytest.raises(FrcnnError, match="positive integer"):
        with_backbone(tiny_model(), trunk(), stride=0)
    with pytest.raises(FrcnnError, match="keras.Model"):
        with_backbone(tiny_model(), lambda x: x, stride=8)
    built = tiny_model()
    built.compile(optimizer="adam")
    with pytest.raises(FrcnnError, match="already compiled or used"):
        with_backbone(built, trunk(), stride=8)
    saved = with_backbone(tiny_model(), trunk(), stride=8)
    assert saved.get_config()["backbone"] == "custom"


def test_a_saved_keras_file_refuses_to_load_with_one_line(tmp_path):
    from frcnn_lib.training.checkpoints import load_model
    model = with_backbone(tiny_model(), trunk(), stride=8)
    model.build()
    model.save(tmp_path / "x.keras")
    with pytest.raises(FrcnnError, match=r"x\.keras: could not load.*backbone='custom'"):
        load_model(tmp_path / "x.keras")
