"""Where inference time goes: each stage of ``FasterRCNN.detect_padded`` compiled and timed
on its own, interleaved with the whole model and its compute floor (see bench_inference.py).

Stages (inputs precomputed by one eager pass of the model's own methods):

* ``backbone``     preprocessing + conv trunk                   (B, Hf, Wf, C)
* ``rpn_head``     3x3 conv + two 1x1 convs, reshaped            (B, N), (B, N, 4)
* ``anchors``      generate_anchors for the feature map          (N, 4)
* ``proposals``    top-k + decode + clip + NMS + gather          (B, P, 4)
* ``roi features`` the model's RoI pooling (roi_pool or roi_align)  (B*P, S, S, C)
* ``roi_head``     fc6, fc7 (+ biases, ReLU)                     (B*P, units)
* ``predictor``    cls_score, bbox_pred                          (B*P, K), (B*P, K, 4)
* ``postprocess``  decode per class + class-wise NMS             (B, D, ...)
* ``postprocess (all pass)``: the same with score threshold 0, i.e. every one of the
  ``P * (K - 1)`` class boxes enters NMS (random weights give scores ~1/K, below the
  default 0.05 threshold for K = 21, so the plain row is the optimistic case).

With ``--training``: pieces of a training step at batch 1 (or ``--batch B``, against floors
of ``B * R`` RoI rows) instead (the whole
``train_on_batch``; the same with ``weight_decay=0``; the forward pass with target
assignment and the four losses; the inference forward pass; the training floor, its
forward half and the floor with the RPN head), each against the training floor of
bench_training.py.  With ``--stand-ins`` also what each part of the step that is not dense
compute costs: the step again, on a model with the same weights whose part is swapped for a
stand-in of the same shapes while its step is traced (``STAND_INS``), and ``step - that
step`` as a share of the floor with the RPN head (issue 30.2's yardstick).  The stand-ins
compute nothing useful (a model trained with one would not learn); they only show what the
part costs.

Run: ``.venv/bin/python benchmarks/profile_stages.py [--config vgg16|small] [--batch 1]
[--repeats 7] [--training [--stand-ins]] [--quick]``.  Prints medians in ms and each one's
share of the floor.
"""
import argparse
import contextlib
import dataclasses

import _common as C
import tensorflow as tf

from frcnn_lib import rcnn
from frcnn_lib import targets as target_assignment
from frcnn_lib.cli.common import check_overrides, parse_overrides
from frcnn_lib.model import DEFAULTS
from frcnn_lib.rcnn import DetectionConfig
from frcnn_lib.runtime import input_checks


def stage_functions(model, images):
    """``{name: zero-argument callable}`` for each stage, plus ``model`` and ``floor``."""
    s = model.settings
    image_sizes = model._image_sizes(images)
    features = model.backbone(images, training=False)
    logits, deltas = model.rpn_head(features)
    anchors = model._anchors(features)
    # portable=False: the ops the model runs on a CPU without XLA (crop_and_resize, tf.image NMS).
    proposals, _, valid = model._proposals(logits, deltas, anchors, image_sizes, False, False)
    pooled = model._pool(features, proposals, "crop_and_resize")
    hidden = model.roi_head(pooled, training=False)
    cls_logits, box_deltas = model.predictor(hidden)
    k = model.num_classes + 1
    batch, num = proposals.shape[0], proposals.shape[1]
    cls_logits = tf.reshape(cls_logits, [batch, num, k])
    box_deltas = tf.reshape(box_deltas, [batch, num, k, 4])

    def backbone(x):
        return model.backbone(x, training=False)

    def proposals_fn(lg, d, a, sz):
        return model._proposals(lg, d, a, sz, False, False)

    def pool(f, p):
        return model._pool(f, p, "crop_and_resize")

    def roi_head(p):
        return model.roi_head(p, training=False)

    def postprocess(c, b, p, v, sz):
        return rcnn.postprocess(c, b, p, v, sz, DetectionConfig(
            s["roi_box_weights"], s["detections_score_threshold"], s["detections_nms_iou"],
            s["detections_max"], nms_method="tf_image"))

    def postprocess_all(c, b, p, v, sz):
        return rcnn.postprocess(c, b, p, v, sz, DetectionConfig(
            s["roi_box_weights"], 0.0, s["detections_nms_iou"], s["detections_max"],
            nms_method="tf_image"))

    head_inputs = (cls_logits, box_deltas, proposals, valid, image_sizes)
    compiled = {
        "backbone": (tf.function(backbone, autograph=False), (images,)),
        "rpn_head": (tf.function(model.rpn_head.call, autograph=False), (features,)),
        "anchors": (tf.function(model._anchors, autograph=False), (features,)),
        "proposals": (tf.function(proposals_fn, autograph=False), (logits, deltas, anchors, image_sizes)),
        "roi features": (tf.function(pool, autograph=False), (features, proposals)),
        "roi_head": (tf.function(roi_head, autograph=False), (pooled,)),
        "predictor": (tf.function(model.predictor.call, autograph=False), (hidden,)),
        "postprocess": (tf.function(postprocess, autograph=False), head_inputs),
        "postprocess (all pass)": (tf.function(postprocess_all, autograph=False), head_inputs),
    }
    fns = {name: (lambda f=f, a=a: f(*a)) for name, (f, a) in compiled.items()}
    @tf.function(autograph=False)
    def model_fn(x):
        return model(x, training=False)

    fns["model"] = lambda: model_fn(images)
    floor = C.make_floor(model, images.shape[0] * s["rpn_post_nms_top_n_test"])
    fns["floor"] = lambda: floor(images)
    return fns


# ----------------------------------------------------------------- stand-ins (--training)
def _top_scored(boxes, scores, iou_threshold, max_output_size, valid=None, method=None, **_):
    """NMS's stand-in: the first ``D`` boxes (the proposal stage passes them by descending
    score), with ``parts.nms``'s signature: ``indices (B, D)``, ``-1`` past ``N``; ``num (B,)``."""
    batch, n = tf.shape(boxes)[0], tf.shape(boxes)[1]
    slots = tf.range(max_output_size)
    indices = tf.tile(tf.where(slots < n, slots, -1)[None], [batch, 1])
    return indices, tf.fill([batch], tf.minimum(n, max_output_size))


def _fixed_rpn_targets(anchors, gt_boxes, gt_labels, image_sizes, seed, config, *, parts):
    """``targets.rpn_targets``'s stand-in: one anchor in eight positive, one negative, the
    rest ignored, zero deltas."""
    n, batch = tf.shape(anchors)[0], tf.shape(gt_boxes)[0]
    slot = tf.range(n) % 8
    labels = tf.where(slot == 0, 1, tf.where(slot == 1, 0, -1))
    return tf.tile(labels[None], [batch, 1]), tf.zeros([batch, n, 4])


def _fixed_rcnn_targets(proposals, proposal_valid, gt_boxes, gt_labels, seed, config, *, parts):
    """``targets.rcnn_targets``'s stand-in: the first ``R`` proposals, labels cycling through
    the classes, zero deltas."""
    rois = tf.stop_gradient(proposals[:, :config.num_samples])
    batch, r = tf.shape(rois)[0], tf.shape(rois)[1]
    labels = tf.tile((tf.range(r) % (tf.reduce_max(gt_labels) + 1))[None], [batch, 1])
    return rois, labels, tf.zeros([batch, r, 4])


def _unchecked(images, targets, num_classes):
    """``input_checks.check_inputs``'s stand-in: no checks."""
    return images, tf.cast(targets["boxes"], tf.float32), tf.cast(targets["labels"], tf.int32)


@contextlib.contextmanager
def _replaced(owner, name, value):
    """``owner.name = value`` for the ``with`` block (a module's function, a model's attribute)."""
    own = name in vars(owner)
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        if own:
            setattr(owner, name, old)
        else:
            delattr(owner, name)


def _corner_crop(model):
    """The RoI crop's stand-in for ``model._pool``: every RoI gets the map's top-left
    ``S x S`` corner (the gradient still reaches the trunk)."""
    def pool(features, rois, method):
        size = model.roi_output_size
        corner = features[:, None, :size, :size, :]                      # (B, 1, S, S, C)
        tiled = tf.tile(corner, [1, tf.shape(rois)[1], 1, 1, 1])           # (B, R, S, S, C)
        return tf.reshape(tiled, [-1, size, size, features.shape[-1]])
    return pool


# Each: what it stands for -> (model -> context manager in force while the step is traced).
# (The weight decay's row is "train step, weight_decay=0".)
STAND_INS = {
    "input checks": lambda m: _replaced(input_checks, "check_inputs", _unchecked),
    "RPN targets": lambda m: _replaced(target_assignment, "rpn_targets", _fixed_rpn_targets),
    "proposals' NMS": lambda m: _replaced(m, "parts", dataclasses.replace(m.parts, nms=_top_scored)),
    "R-CNN targets": lambda m: _replaced(target_assignment, "rcnn_targets", _fixed_rcnn_targets),
    "RoI crop": lambda m: _replaced(m, "_pool", _corner_crop(m)),
}
STAND_IN_ROW = "train step, {} stood in"


def stand_in_steps(name, cfg, model, images, targets):
    """``{part: train_on_batch on a copy of model whose part is stood in}``, each traced."""
    import bench_training as T
    steps = {}
    for part, replace in STAND_INS.items():
        other = T.compiled(name, cfg)
        other.set_weights(model.get_weights())
        with replace(other):
            other.train_on_batch(images, targets)          # traced with the stand-in
        steps[part] = lambda m=other: m.train_on_batch(images, targets, return_dict=True)
    return steps


def training_functions(name, cfg, stand_ins=False, batch=1):
    """Pieces of one training step at ``batch``, each compiled, for ``--training`` (and
    ``--stand-ins``: :func:`stand_in_steps`)."""
    import bench_training as T
    cfg = dict(cfg, num_rois=cfg["kwargs"].get("roi_batch_size", 128))
    model = T.compiled(name, cfg)
    no_decay = T.compiled(name, dict(cfg, kwargs=dict(cfg["kwargs"], weight_decay=0.0)))
    images, targets = T.batch_data(batch, cfg["size"])
    rois = cfg["num_rois"] * batch

    @tf.function(autograph=False)
    def forward_losses(x, y):
        return model.compute_losses(x, y, training=True)

    @tf.function(autograph=False)
    def forward_inference(x):
        return model(x, training=False)

    floor = C.make_floor(model, rois, backward=True, optimizer=T.make_optimizer(name, cfg))
    floor_rpn = C.make_floor(model, rois, backward=True, optimizer=T.make_optimizer(name, cfg), with_rpn=True)
    floor_forward = C.make_floor(model, rois)
    fns = {
        "train step (train_on_batch)": lambda: model.train_on_batch(images, targets, return_dict=True),
        "train step, weight_decay=0": lambda: no_decay.train_on_batch(images, targets, return_dict=True),
        "forward + targets + losses": lambda: forward_losses(images, targets),
        "forward, inference graph": lambda: forward_inference(images),
        "floor forward": lambda: floor_forward(images),
        "floor": lambda: floor(images),
        "floor + RPN head": lambda: floor_rpn(images),
    }
    if stand_ins:
        steps = stand_in_steps(name, cfg, model, images, targets)
        fns.update({STAND_IN_ROW.format(part): fn for part, fn in steps.items()})
    return fns


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="vgg16", choices=("vgg16", "small"))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--training", action="store_true",
                        help="instead: pieces of a training step (at --batch) against the training floor")
    parser.add_argument("--stand-ins", action="store_true",
                        help="with --training: what each part of the step costs (a model per part)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 3 repeats (smoke run)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a model setting, e.g. --set roi_pooling=roi_pool (repeatable)")
    args = parser.parse_args()
    cfg = C.configs(args.quick)[args.config]
    overrides = check_overrides(parse_overrides(args.set), DEFAULTS)   # as `frcnn --set` reads them
    cfg = dict(cfg, kwargs={**cfg["kwargs"], **overrides})
    if overrides:
        print("settings overridden:", ", ".join(f"{k}={v!r}" for k, v in overrides.items()))
    repeats = 3 if args.quick else args.repeats
    print(C.machine_info())
    if args.training:
        fns = training_functions(args.config, cfg, args.stand_ins, args.batch)
        times = C.interleaved(fns, repeats, warmup=1)
        med = {k: C.median(v) for k, v in times.items()}
        cpu = {k: C.median(v) for k, v in times.cpu.items()}
        rows = [[k, f"{1000 * med[k]:.1f}", C.spread([1000 * t for t in times[k]]),
                 f"{med[k] / med['floor']:.3f}", f"{cpu[k] / cpu['floor']:.3f}"] for k in fns]
        print(f"\n{args.config} training, batch {args.batch}, median of {len(times['floor'])} "
              f"interleaved runs")
        print(C.table(rows, ["what", "median ms", "min-max ms", "/ train floor", "CPU / train floor"]))
        if not args.stand_ins:
            return
        step, floor_rpn = "train step (train_on_batch)", "floor + RPN head"
        parts = [["the whole step (its ratio)", f"{med[step] / med[floor_rpn]:.3f}",
                  f"{cpu[step] / cpu[floor_rpn]:.3f}"]]
        rows_of = {"weight decay": "train step, weight_decay=0",
                   **{part: STAND_IN_ROW.format(part) for part in STAND_INS}}
        for part, k in rows_of.items():
            parts.append([part, f"{(med[step] - med[k]) / med[floor_rpn]:.3f}",
                          f"{(cpu[step] - cpu[k]) / cpu[floor_rpn]:.3f}"])
        print("\nWhat each part costs: (step - step with the part stood in) / (floor + RPN head)")
        print(C.table(parts, ["part", "share of floor + RPN head", "CPU share"]))
        return
    model = C.build_model(cfg)
    images = C.random_images(args.batch, cfg["size"])
    fns = stage_functions(model, images)
    times = C.interleaved(fns, repeats, warmup=1)
    med = {k: C.median(v) for k, v in times.items()}
    cpu = {k: C.median(v) for k, v in times.cpu.items()}
    floor = med["floor"]
    stages = [k for k in fns if k not in ("model", "floor", "postprocess (all pass)")]
    def row(label, k):
        return [label, f"{1000 * med[k]:.1f}", C.spread([1000 * t for t in times[k]]),
                f"{med[k] / floor:.3f}", f"{1000 * cpu[k]:.1f}", f"{cpu[k] / cpu['floor']:.3f}"]

    rows = [row(k, k) for k in stages + ["postprocess (all pass)"]]
    rows.append(["sum of stages", f"{1000 * sum(med[k] for k in stages):.1f}", "",
                 f"{sum(med[k] for k in stages) / floor:.3f}", f"{1000 * sum(cpu[k] for k in stages):.1f}",
                 f"{sum(cpu[k] for k in stages) / cpu['floor']:.3f}"])
    rows.append(row("model (tf.function)", "model"))
    rows.append(row("floor", "floor"))
    print(f"\n{args.config}, batch {args.batch}, {cfg['size'][0]}x{cfg['size'][1]}, median of "
          f"{len(times['floor'])} interleaved runs")
    print(C.table(rows, ["stage", "median ms", "min-max ms", "/ floor", "CPU ms", "CPU / floor"]))


if __name__ == "__main__":
    main()
