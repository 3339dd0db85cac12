"""Run FasterRCNN under tf.distribute.MirroredStrategy on two logical CPUs; print JSON.

Run as a script (``python mirrored_check.py``): the logical devices must be configured
before TensorFlow initialises its devices, so this cannot run inside the pytest process.

Measurements (the test asserts on them):

* ``replicas``: ``strategy.num_replicas_in_sync``.
* ``fit_logs``: the per-batch logs of a 2-step ``fit`` (batch 4) of the model built and
  compiled inside ``strategy.scope()``.
* ``update``: for every trainable weight, the largest difference between one SGD step's
  update under the strategy and the same step without it, and the largest update.
* ``normalizers``: per image, the number of sampled anchors and RoIs (the losses'
  denominators), to show the data makes the per-replica averages comparable.

Comparing one step with and without the strategy (same data, same initial weights, SGD,
no dropout, same seed) needs a step that is a deterministic function of the batch: every
labelled anchor and RoI is sampled (budgets larger than the candidates), and RPN NMS at
IoU 1.0 keeps exactly ``rpn_post_nms_top_n_train`` proposals per image.  Each replica
averages its loss over its own sampled elements, so the batch is ``[A, B, flip(A),
flip(B)]``: the two replicas get different images but the same number of sampled anchors
and RoIs, and the mean of the replica means equals the mean over the batch.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

from synthetic import WIDTH, make_batch, tiny_model  # noqa: E402

from frcnn_lib.training.optimizers import FusedSGD  # noqa: E402

# Deterministic step: see the module docstring.
EXACT = dict(rpn_batch_size=100_000, rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=32,
             rpn_nms_iou=1.0, roi_batch_size=128, roi_foreground_fraction=0.5,
             roi_background_iou_low=0.0, roi_head_dropout=0.0, seed=3)


def flipped_batch():
    images, targets = make_batch()
    images, boxes, labels = images[:2], targets["boxes"][:2], targets["labels"][:2]
    flip_boxes = boxes.copy()
    flip_boxes[..., 0] = WIDTH - boxes[..., 2]
    flip_boxes[..., 2] = WIDTH - boxes[..., 0]
    flip_boxes = np.where(labels[..., None] >= 0, flip_boxes, 0.0)
    return (np.concatenate([images, images[:, :, ::-1]]).astype(np.float32),
            {"boxes": np.concatenate([boxes, flip_boxes]).astype(np.float32),
             "labels": np.concatenate([labels, labels])})


def normalizers(model, images, targets):
    """Sampled anchors and RoIs per image, recomputed as ``compute_losses`` does."""
    from frcnn_lib import targets as T

    s = model.settings
    seed = tf.constant([s["seed"], 0], tf.int32)
    features = model.backbone(images)
    logits, deltas = model.rpn_head(features)
    anchors = model._anchors(features)
    sizes = model._image_sizes(images)
    rpn_labels, _ = T.rpn_targets(anchors, targets["boxes"], targets["labels"], sizes, seed,
                                  T.RPNTargetConfig(s["rpn_positive_iou"], s["rpn_negative_iou"],
                                                    s["rpn_batch_size"], s["rpn_positive_fraction"],
                                                    s["rpn_allowed_border"]))
    proposals, _, valid = model._proposals(logits, deltas, anchors, sizes, True, False)
    _, roi_labels, _ = T.rcnn_targets(proposals, valid, targets["boxes"], targets["labels"], seed + 1,
                                      T.RCNNTargetConfig(s["roi_batch_size"], s["roi_foreground_fraction"],
                                                         s["roi_foreground_iou"], s["roi_background_iou_low"],
                                                         s["roi_background_iou_high"], s["roi_box_weights"]))
    return {"anchors": np.sum(rpn_labels.numpy() >= 0, axis=1).tolist(),
            "rois": np.sum(roi_labels.numpy() >= 0, axis=1).tolist(),
            "foreground_rois": np.sum(roi_labels.numpy() >= 1, axis=1).tolist()}


def main():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    images, targets = flipped_batch()
    dataset = tf.data.Dataset.from_tensor_slices((images, targets)).batch(4).repeat()

    # Start from weights trained a little (no strategy), away from the initialisation, so
    # that all four losses are far from their starting values and have real gradients.
    keras.utils.set_random_seed(0)
    single = tiny_model(**EXACT)
    single.compile(optimizer=keras.optimizers.Adam(1e-3))
    for _ in range(15):
        single.train_on_batch(images, targets)
    start = single.get_weights()
    # SGD with lr 1: the update is the gradient itself, so it is large next to the float32
    # rounding of the weights it is added to.  The library's fused momentum kernel (its first
    # step is plain SGD's), so that the fused update is also checked under the strategy.
    single.compile(optimizer=FusedSGD(1.0, momentum=0.9))
    single.set_weights(start)

    with strategy.scope():
        mirrored = tiny_model(**EXACT)
        mirrored.compile(optimizer=FusedSGD(1.0, momentum=0.9))
        mirrored.build()
    mirrored.set_weights(start)
    counts = normalizers(single, images, targets)

    step_single = single.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0).history
    step_mirrored = mirrored.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0).history
    update = []
    for w0, ws, wm, var in zip(start, single.get_weights(), mirrored.get_weights(),
                               single.weights):
        ds, dm = ws - w0, wm - w0
        update.append({"name": var.path, "max_update": float(np.abs(ds).max()),
                       "max_diff": float(np.abs(dm - ds).max())})

    # Two more steps of batch 4 under the strategy, logging every batch (from the start
    # weights again, at a learning rate meant for training; the traced step is reused).
    batch_logs = []
    callback = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batch_logs.append({k: float(v) for k, v in logs.items()}))
    mirrored.set_weights(start)
    mirrored.optimizer.learning_rate.assign(0.01)
    mirrored.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0, callbacks=[callback])
    weights_finite = all(np.all(np.isfinite(w)) for w in mirrored.get_weights())

    print("RESULT " + json.dumps({
        "replicas": int(strategy.num_replicas_in_sync),
        "model_replicas": int(mirrored.distribute_strategy.num_replicas_in_sync),
        "weights_finite": bool(weights_finite),
        "fit_logs": batch_logs,
        "step_single": {k: float(v[0]) for k, v in step_single.items()},
        "step_mirrored": {k: float(v[0]) for k, v in step_mirrored.items()},
        "update": update,
        "normalizers": counts,
    }))


if __name__ == "__main__":
    main()
