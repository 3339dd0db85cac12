"""Shared helpers of the benchmarks: machine description, interleaved timing, the settings
of the two configurations (``vgg16`` paper, ``small`` shapes_cpu) and their compute floors.

Timing rule (the machine may be shared): every result is a ratio of two medians measured in
one process, with the candidates run round-robin (A, B, C, A, B, C, ...) after warm-up, so
that a burst of load from another process hits every candidate alike.
"""
import datetime
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from frcnn_lib.training.presets import get_preset  # noqa: E402

VOC_CLASSES = 20


def machine_info():
    """One line: date, nproc, CPU model, load average, TF version."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = "load avg %.1f %.1f %.1f" % os.getloadavg()
    except OSError:
        load = "load avg n/a"
    return (f"{datetime.date.today().isoformat()}, nproc={os.cpu_count()}, {cpu}, {load}, "
            f"Python {platform.python_version()}, TF {tf.__version__}")


def configs(quick=False):
    """The two benchmarked configurations.

    ``vgg16``: the paper's settings (600x800 input, 300 test proposals, fc6/fc7 of 4096) on
    the 20 VOC classes.  ``small``: the ``shapes_cpu`` preset on 160x160 and its 5 classes.
    ``quick`` shrinks the vgg16 case so that a smoke run takes seconds.
    """
    shapes = get_preset("shapes_cpu")["model"]
    vgg = dict(backbone="vgg16", rpn_post_nms_top_n_test=300, roi_head_units=4096)
    out = {
        "vgg16": dict(kwargs=vgg, num_classes=VOC_CLASSES, size=(600, 800)),
        "small": dict(kwargs=dict(shapes), num_classes=5, size=(160, 160)),
    }
    if quick:
        out["vgg16"] = dict(kwargs=dict(vgg, roi_head_units=256, rpn_channels=64, rpn_pre_nms_top_n_test=600,
                                        rpn_post_nms_top_n_test=50, rpn_pre_nms_top_n_train=600,
                                        rpn_post_nms_top_n_train=100, roi_batch_size=32,
                                        image_min_side=128, image_max_side=160),
                            num_classes=VOC_CLASSES, size=(128, 160))
    return out


def untrained_shapes_model(folder):
    """An untrained ``shapes_cpu`` model (score threshold 0: every box counts) saved in
    ``folder``; returns its path.  The start-up and serving benchmarks time loading it."""
    import os

    from frcnn_lib.model import FasterRCNN
    from frcnn_lib.training.presets import get_preset

    model = FasterRCNN(5, **{**get_preset("shapes_cpu")["model"], "detections_score_threshold": 0.0})
    model.build()
    path = os.path.join(folder, "shapes_cpu_untrained.keras")
    model.save(path)
    return path


def build_model(cfg):
    from frcnn_lib import FasterRCNN
    tf.keras.utils.set_random_seed(0)
    model = FasterRCNN(cfg["num_classes"], **cfg["kwargs"])
    model.build()
    return model


def trunk_of(model):
    """The backbone's conv trunk (without the input preprocessing layer)."""
    for layer in model.backbone.layers:
        if layer.name.endswith("_trunk"):
            return layer
    raise RuntimeError("no trunk in the backbone")


def random_images(batch, size, seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.uniform(0, 255, (batch,) + tuple(size) + (3,)).astype(np.float32))


class Timings(dict):
    """``{name: [wall seconds, ...]}`` with ``.cpu``: ``{name: [process CPU seconds, ...]}``
    (all threads of this process: unlike wall time, it does not grow while other processes
    hold the cores, so its ratios are the steadier ones on a shared machine)."""

    def __init__(self, names):
        super().__init__({name: [] for name in names})
        self.cpu = {name: [] for name in names}


def interleaved(fns, repeats, warmup=1, budget=None):
    """Run each callable of ``fns`` (name -> fn returning tensors) round-robin.

    Returns :class:`Timings`.  ``warmup`` untimed rounds first.  ``budget`` (seconds) stops
    adding rounds once spent, but never below 3 rounds.
    """
    for _ in range(warmup):
        for fn in fns.values():
            _block(fn())
    times = Timings(fns)
    start = time.perf_counter()
    for r in range(repeats):
        for name, fn in fns.items():
            c = time.process_time()
            t = time.perf_counter()
            _block(fn())
            times[name].append(time.perf_counter() - t)
            times.cpu[name].append(time.process_time() - c)
        if budget is not None and r >= 2 and time.perf_counter() - start > budget:
            break
    return times


def _block(out):
    """Force the result to the host so that timing includes all the work."""
    for t in tf.nest.flatten(out):
        if hasattr(t, "numpy"):
            t.numpy()


def median(values):
    return statistics.median(values)


def spread(values):
    """``min-max`` as a short string."""
    return f"{min(values):.3f}-{max(values):.3f}"


def first_call(fn):
    """Seconds of the first call (tracing + compilation + one run)."""
    t = time.perf_counter()
    _block(fn())
    return time.perf_counter() - t


def table(rows, headers):
    """A markdown-ish table as a string."""
    cols = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in cols[1:]])


def fc_shapes(model):
    """``(flattened RoI feature size, head units)`` of a vgg16/small RoI head."""
    fc6 = model.roi_head.get_layer("fc6")
    return int(fc6.kernel.shape[0]), int(fc6.kernel.shape[1])


def make_floor(model, num_rois, backward=False, optimizer=None, with_rpn=False, sequential=False):
    """The compute floor: the model's own conv trunk on the images plus fc6, fc7 as plain
    matmuls (no bias, no ReLU) on ``num_rois`` rows of random RoI features, one
    ``tf.function``.  ``with_rpn``: also a fresh RPN head of the model's shape (its 3x3 conv
    and two 1x1 outputs) on the trunk's features, the detector's one other dense layer, which
    issue 12's floor leaves out: for ``small`` it is a quarter of the trunk's multiply-adds,
    so ``model / floor with RPN`` is what is left for everything that is not dense compute.

    The RoI rows get ``1e-30 * mean(trunk output)`` added, a negligible data dependency that
    keeps the floor as sequential as the detector, whose head must wait for the feature map
    (and, training, whose trunk backward waits for the head's): without it TensorFlow
    overlaps the independent matmuls with the convolutions and the "floor" drops below the
    sum of its parts.

    ``backward``: one step of ``optimizer`` (default SGD, momentum 0.9) on the dummy loss ``sum(trunk(images)) +
    sum(fc7(fc6(rois)))``: forward, the gradients of every trunk and fc weight, the gradient
    with respect to the RoI features (which the detector needs to reach the trunk through
    RoI pooling), and the update.  The step trains a copy of the trunk (same layers, same
    weights), so that the model being timed beside it keeps its own weights.

    ``sequential``: the fc layers' output sum is also scaled by ``1 + 1e-30 * mean(trunk
    output)``, so that their upstream gradient depends on the trunk too.  Without it the
    gradient with respect to the RoI rows (``dY @ W6^T``, the costliest of the three fc6
    matmuls) needs neither the rows nor the trunk and runs beside the trunk's forward pass;
    the detector's cannot start before fc6's forward pass, which waits for the trunk."""
    trunk = trunk_of(model)
    if backward:   # a copy to train: the floor's updates must not move the model's weights
        original, trunk = trunk, keras.models.clone_model(trunk)
        trunk.set_weights(original.get_weights())
    feat, units = fc_shapes(model)
    rng = tf.random.Generator.from_seed(1)
    w6 = tf.Variable(rng.normal([feat, units], stddev=0.01))
    w7 = tf.Variable(rng.normal([units, units], stddev=0.01))
    rois = tf.constant(rng.normal([num_rois, feat]))
    rpn = _rpn_like(model, trunk) if with_rpn else None

    def dense(images, training):
        features = trunk(images, training=training)
        mean = tf.reduce_mean(features)
        fc = tf.matmul(tf.matmul(rois + 1e-30 * mean, w6), w7)
        if sequential:
            fc = fc * (1.0 + 1e-30 * mean)
        total = tf.reduce_sum(features) + tf.reduce_sum(fc)
        if rpn is not None:
            logits, deltas = rpn(features)
            total += tf.reduce_sum(logits) + tf.reduce_sum(deltas)
        return total

    if not backward:
        return tf.function(lambda images: dense(images, False), autograph=False)

    optimizer = optimizer or keras.optimizers.SGD(1e-4, momentum=0.9)
    weights = trunk.trainable_weights + [w6, w7] + (rpn.trainable_weights if rpn is not None else [])
    optimizer.build(weights)

    @tf.function(autograph=False)
    def floor_step(images):
        with tf.GradientTape() as tape:
            tape.watch(rois)
            loss = dense(images, True)
        grads = tape.gradient(loss, weights + [rois])
        grads, roi_grad = grads[:-1], grads[-1]
        optimizer.apply_gradients(zip(grads, weights))
        return loss, tf.reduce_sum(roi_grad)
    return floor_step


def _rpn_like(model, trunk):
    """A new ``RPNHead`` with the model's anchors and channels, built for the trunk's output
    (new weights, so the floor's updates never touch the model's)."""
    from frcnn_lib.rpn import RPNHead
    rpn = RPNHead(model.num_anchors, model.settings["rpn_channels"], name="floor_rpn_head")
    rpn.build((None, None, None, trunk.output.shape[-1]))
    return rpn
