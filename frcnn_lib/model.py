"""``FasterRCNN``: the two-stage detector of Ren et al. (2015) as a ``keras.Model``.

Shape glossary: ``B`` images, ``H, W`` (padded) image size, ``Hf, Wf`` feature-map size,
``A`` anchors per location, ``N`` anchors, ``P`` proposals per image, ``R`` sampled RoIs per
image, ``G`` padded ground-truth boxes, ``K`` classes including background, ``D`` detections.

Forward pass, as in the paper::

    features  = backbone(images)                                  (B, Hf, Wf, C)
    logits, deltas = rpn_head(features)                           (B, N), (B, N, 4)
    proposals = NMS(decode(deltas, anchors))                      (B, P, 4)   no gradient
    rois      = sample(proposals + gt)       [training only]      (B, R, 4)   no gradient
    pooled    = roi_pool(features, rois)                          (B*R, S, S, C)
    cls, box  = predictor(roi_head(pooled))                       (B*R, K), (B*R, K, 4)

Training is approximate joint training (sec. 3.2): one forward pass per step, the four
losses summed, gradients not flowing through proposal coordinates.  ``call`` always
returns detections (padded, fixed size); ``train_step``/``test_step`` return the losses.
"""
import dataclasses
import os
import weakref

import keras
import tensorflow as tf

from frcnn_lib import losses, rcnn, roi
from frcnn_lib.runtime import input_checks
from frcnn_lib import targets as target_assignment
from frcnn_lib.anchors import num_anchors_per_location
from frcnn_lib.backbones import (NEUTRAL_RGB, build_backbone, build_roi_head,
                                 copy_imagenet_head_weights, freeze, frozen_stages_for)
from frcnn_lib.datasets.classes import name_detections, validate_classes
from frcnn_lib.runtime.errors import FrcnnError
from frcnn_lib.parts import LIBRARY
from frcnn_lib.rpn import ProposalConfig, RPNHead, generate_proposals

LOSS_NAMES = ("rpn_objectness", "rpn_box", "rcnn_class", "rcnn_box")

# Each model's compiled metric reset (FasterRCNN.reset_metrics), kept off the model so that
# SavedModel export, which saves every tf.function attribute, never sees it.
_METRIC_RESETS = weakref.WeakKeyDictionary()

# The paper's settings (VGG-16 on Pascal VOC); every one is a constructor argument.
DEFAULTS = dict(
    backbone="vgg16", backbone_weights=None,
    # None: follow backbone_weights (frozen stages and BatchNorm when pretrained; backbones.py).
    backbone_frozen_stages=None, backbone_frozen_batchnorm=None,
    anchor_scales=(128, 256, 512), anchor_ratios=(0.5, 1.0, 2.0),
    rpn_channels=512, rpn_positive_iou=0.7, rpn_negative_iou=0.3, rpn_batch_size=256,
    # rpn_min_size: py-faster-rcnn's RPN_MIN_SIZE = 16, there in original-image pixels, here
    # in network-input pixels; empty proposals are dropped whatever the value.
    rpn_positive_fraction=0.5, rpn_allowed_border=0.0, rpn_nms_iou=0.7, rpn_min_size=16.0,
    rpn_pre_nms_top_n_train=12000, rpn_post_nms_top_n_train=2000,
    rpn_pre_nms_top_n_test=6000, rpn_post_nms_top_n_test=300, rpn_smooth_l1_sigma=3.0,
    # roi_sampling_ratio: RoIAlign's bilinear samples per bin and axis (2 as in Mask R-CNN;
    # 1 samples the output grid directly: a quarter of the gathers).
    roi_pooling="roi_pool", roi_pool_size=7, roi_sampling_ratio=2, roi_batch_size=128,
    roi_foreground_fraction=0.25,
    roi_foreground_iou=0.5, roi_background_iou_low=0.1, roi_background_iou_high=0.5,
    roi_box_weights=(10.0, 10.0, 5.0, 5.0), roi_head_units=4096, roi_head_dropout=0.5,
    detections_score_threshold=0.05, detections_nms_iou=0.3, detections_max=100,
    detections_min_size=0.01,  # torchvision's RoIHeads drops boxes under 1e-2 px
    # Gaussian Soft-NMS instead of NMS when > 0 (Bodla et al. 2017 use sigma 0.5); 0 = off.
    detections_soft_nms_sigma=0.0,
    loss_rpn_objectness_weight=1.0, loss_rpn_box_weight=1.0, loss_rcnn_class_weight=1.0,
    loss_rcnn_box_weight=1.0, weight_decay=5e-4,
    image_min_side=600, image_max_side=1000, seed=0,
)


@keras.saving.register_keras_serializable(package="frcnn")
class FasterRCNN(keras.Model):
    """Faster R-CNN.  ``num_classes`` object classes (background excluded).

    Every keyword argument of ``DEFAULTS`` may be given; their prefixes say which stage
    they configure (``rpn_*``, ``roi_*``, ``detections_*``, ``loss_*``, ``image_*``).
    ``image_*`` sizes are used by :meth:`detect`, which resizes raw images itself.

    Train with ``compile(optimizer=...)`` and ``fit(dataset)``, where the dataset yields
    ``(images (B, H, W, 3) float 0..255, {"boxes": (B, G, 4), "labels": (B, G)})`` and may add
    ``"image_sizes": (B, 2)``, the content size inside padded images.

    ``class_names`` / ``category_ids`` (optional, ``num_classes`` each): the dataset's names
    and own ids of labels ``1..K``, kept in the config (see ``frcnn_lib.datasets.classes``).
    """

    def __init__(self, num_classes, class_names=None, category_ids=None, **kwargs):
        unknown = sorted(set(kwargs) - set(DEFAULTS) - {"name", "trainable", "dtype", "_skip_pretrained"})
        if unknown:
            raise FrcnnError(f"FasterRCNN: unknown argument(s) {', '.join(unknown)}; "
                             f"see frcnn_lib.model.DEFAULTS for the accepted ones")
        skip_pretrained = kwargs.pop("_skip_pretrained", False)
        base = {k: kwargs.pop(k) for k in ("name", "trainable", "dtype") if k in kwargs}
        super().__init__(**base)
        if int(num_classes) < 1:
            raise FrcnnError(f"num_classes={num_classes}: expected a positive number of object classes")
        self.num_classes = int(num_classes)
        self.class_names, self.category_ids = validate_classes(self.num_classes, class_names, category_ids)
        self.settings = {**DEFAULTS, **kwargs}
        for key in ("anchor_scales", "anchor_ratios", "roi_box_weights"):
            self.settings[key] = tuple(float(v) for v in self.settings[key])
        s = self.settings
        if s["roi_pooling"] not in ("roi_pool", "roi_align"):
            raise FrcnnError(f"roi_pooling={s['roi_pooling']!r}: expected 'roi_pool' or 'roi_align'")
        if not (isinstance(s["roi_sampling_ratio"], int) and s["roi_sampling_ratio"] >= 1):
            raise FrcnnError(f"roi_sampling_ratio={s['roi_sampling_ratio']!r}: expected an integer >= 1 "
                             f"(RoIAlign's samples per bin and axis)")
        if not float(s["detections_soft_nms_sigma"]) >= 0:
            raise FrcnnError(f"detections_soft_nms_sigma={s['detections_soft_nms_sigma']!r}: "
                             f"expected >= 0 (0 = off)")

        weights = None if skip_pretrained else s["backbone_weights"]
        self.backbone, self.stride = build_backbone(s["backbone"], weights)
        self.num_anchors = num_anchors_per_location(s["anchor_scales"], s["anchor_ratios"])
        self.rpn_head = RPNHead(self.num_anchors, s["rpn_channels"], name="rpn_head")
        channels = self.backbone.output_shape[-1]
        pool = 2 * s["roi_pool_size"] if s["backbone"] == "resnet50" else s["roi_pool_size"]
        self.roi_output_size = pool
        self.roi_head = build_roi_head(s["backbone"], channels, pool, s["roi_head_units"],
                                       s["roi_head_dropout"])
        if weights == "imagenet":
            copy_imagenet_head_weights(s["backbone"], self.roi_head)
        # What is frozen depends on the settings, never on whether weights were just loaded,
        # so that ``from_config`` (.keras loading, --resume) freezes the same layers.
        pretrained = s["backbone_weights"]
        frozen_bn = s["backbone_frozen_batchnorm"]
        freeze(self.backbone, self.roi_head, s["backbone"],
               frozen_stages_for(s["backbone"], pretrained, s["backbone_frozen_stages"]),
               pretrained is not None if frozen_bn is None else bool(frozen_bn))
        self.predictor = rcnn.RCNNPredictor(self.num_classes + 1, name="rcnn_predictor")
        # The paper's geometry the stages call (frcnn_lib.parts): the library's, unless the
        # course promotes a learner's (frcnn_lib.course.promotion.promote).  Not saved with the model.
        self.parts = LIBRARY
        # Each stage's settings as one frozen object, built once from the flat settings.
        self.rpn_target_config = target_assignment.RPNTargetConfig.from_settings(s)
        self.rcnn_target_config = target_assignment.RCNNTargetConfig.from_settings(s)
        self.train_proposal_config = ProposalConfig.from_settings(s, training=True)
        self.test_proposal_config = ProposalConfig.from_settings(s, training=False)
        self.detection_config = rcnn.DetectionConfig.from_settings(s)
        self.loss_trackers = {n: keras.metrics.Mean(name=n) for n in ("loss",) + LOSS_NAMES}
        # Every weight exists from here on: a step compiled with XLA (Keras' default on a GPU)
        # must not create variables, and saving or loading needs no dummy forward pass.
        self.rpn_head.build((None, None, None, channels))
        self.predictor.build((None, self.roi_head.output_shape[-1]))
        self.built = True

    # ----------------------------------------------------------------- configuration
    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, "num_classes": self.num_classes,
                  "dtype": keras.saving.serialize_keras_object(self.dtype_policy)}
        for key in ("class_names", "category_ids"):
            value = getattr(self, key)
            config[key] = None if value is None else list(value)
        for key, value in self.settings.items():
            config[key] = list(value) if isinstance(value, tuple) else value
        return config

    @classmethod
    def from_config(cls, config):
        # Weights come from the saved file: never download or read the original ones again.
        return cls(**config, _skip_pretrained=True)

    def get_build_config(self):
        # Always present (even for a model that was only trained, never called), so that
        # loading builds every weight -- the optimizer's too -- before restoring them.
        return {"input_shape": [None, None, None, 3]}

    def build_from_config(self, config):
        self.build(config.get("input_shape"))

    def build(self, input_shape=None):
        """Nothing left to do: the constructor creates every weight."""
        self.built = True

    def make_train_function(self, force=False):
        """Keras' train function, after creating the optimizer's variables.

        Keras creates them lazily inside the first train step, which a step compiled with
        XLA (``jit_compile=True``, Keras' default on a GPU or TPU) cannot do.  (Done here
        rather than in ``compile``, whose override would stop ``.keras`` files from
        restoring the optimizer.)
        """
        if getattr(self, "optimizer", None) is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)
        self._no_xla_for_host_parts()
        return super().make_train_function(force)

    def make_test_function(self, force=False):
        self._no_xla_for_host_parts()
        return super().make_test_function(force)

    def make_predict_function(self, force=False):
        self._no_xla_for_host_parts()
        return super().make_predict_function(force)

    def _no_xla_for_host_parts(self):
        # A promoted part that runs on the host (frcnn_lib.course.promotion) cannot be compiled by XLA.
        if self.parts.host_parts and getattr(self, "compiled", False) and self.jit_compile:
            self.jit_compile = False

    @property
    def metrics(self):
        return list(self.loss_trackers.values())

    def reset_metrics(self):
        """Every metric's ``reset_state``, run as one compiled call.

        Keras' ``train_on_batch`` and ``test_on_batch`` reset the metrics before every batch
        (Keras 3.15; 3.6 does not).  Keras does it eagerly, one assignment per variable (ten
        for the five loss trackers), and between the steps of a small model those cost 4-9 %
        of a training step at batch 1 (benchmarks/README.md, "The metrics' reset").
        Compiled once per set of metrics."""
        metrics = tuple(self.metrics)
        cached = _METRIC_RESETS.get(self)
        if cached is None or cached[0] != metrics:      # metrics compare by identity
            def reset():
                for metric in metrics:
                    metric.reset_state()
            cached = _METRIC_RESETS[self] = (metrics, tf.function(reset, autograph=False))
        cached[1]()

    # ----------------------------------------------------------------- stages
    def _anchors(self, features):
        shape = tf.shape(features)
        return self.parts.anchors(shape[1], shape[2], self.stride, self.settings["anchor_scales"],
                                  self.settings["anchor_ratios"])

    def _portable(self, portable):
        """Whether to use the ops that compile everywhere (XLA, TFLite): RoI sampling by
        gathers and the tiled NMS.  ``None`` follows Keras' ``jit_compile`` (resolved, so
        True on a GPU or TPU); otherwise TensorFlow's fused CPU/GPU kernels
        (``crop_and_resize``, ``non_max_suppression``), which give the same results.  (The
        losses crop by gathers either way: see :meth:`compute_losses`.)"""
        return bool(self.jit_compile) if portable is None else bool(portable)

    @staticmethod
    def _nms_method(portable):
        return "tiled" if portable else "tf_image"

    def _fill_padding(self, images, image_sizes):
        """Paint the padding (outside ``image_sizes (B, 2)``) of ``images (B, H, W, 3)`` with the
        colour the backbone's preprocessing maps to zero (``backbones.NEUTRAL_RGB``)."""
        shape = tf.shape(images)
        rows = tf.range(shape[1])[None, :, None] < image_sizes[:, 0:1, None]     # (B, H, 1)
        cols = tf.range(shape[2])[None, None, :] < image_sizes[:, 1:2, None]     # (B, 1, W)
        # A custom trunk (frcnn_lib.course.custom_backbone) preprocesses itself: its padding stays 0.
        neutral = tf.constant(NEUTRAL_RGB.get(self.settings["backbone"], (0.0, 0.0, 0.0)), images.dtype)
        return tf.where(tf.expand_dims(rows & cols, -1), images, neutral)   # TFLite: no new axis on bools

    def _pool(self, features, rois, method):
        """``rois (B, R, 4)`` -> RoI features ``(B*R, F)``, sampled by ``method`` (``roi.METHODS``)."""
        flat, index = roi.flatten_rois(rois)
        if self.settings["roi_pooling"] == "roi_align" and self.parts.roi_grid is not None:
            return roi.roi_align(features, flat, index, self.stride, self.roi_output_size,
                                 self.settings["roi_sampling_ratio"], grid=self.parts.roi_grid)
        if self.settings["roi_pooling"] == "roi_align":
            return roi.roi_align(features, flat, index, self.stride, self.roi_output_size,
                                 self.settings["roi_sampling_ratio"], method=method)
        return roi.roi_pool(features, flat, index, self.stride, self.roi_output_size, method=method)

    def _head(self, features, rois, training, crop_method):
        """``rois (B, R, 4)`` -> ``logits (B, R, K)``, ``deltas (B, R, K, 4)``."""
        batch, num_rois = tf.shape(rois)[0], tf.shape(rois)[1]
        hidden = self.roi_head(self._pool(features, rois, crop_method), training=training)
        logits, deltas = self.predictor(hidden)
        k = self.num_classes + 1
        return tf.reshape(logits, [batch, num_rois, k]), tf.reshape(deltas, [batch, num_rois, k, 4])

    def _proposals(self, logits, deltas, anchors, image_sizes, training, portable):
        config = self.train_proposal_config if training else self.test_proposal_config
        config = dataclasses.replace(config, nms_method=self._nms_method(portable))
        return generate_proposals(logits, deltas, anchors, image_sizes, config, parts=self.parts)

    @staticmethod
    def _image_sizes(images, targets=None):
        if targets is not None and "image_sizes" in targets:
            return tf.cast(targets["image_sizes"], tf.int32)
        shape = tf.shape(images)
        return tf.tile(tf.stack([shape[1], shape[2]])[None], [shape[0], 1])

    # ----------------------------------------------------------------- inference
    def call(self, images, training=False):
        """Padded detections for ``images (B, H, W, 3)`` float ``0..255`` (float images in
        ``[0, 1]``, max in ``(0, 1]``, raise FrcnnError when called directly, as do
        ``predict`` and ``predict_on_batch`` on arrays and tensors: multiply by 255).

        Returns a dict of ``boxes (B, D, 4)`` (pixels of ``images``), ``scores (B, D)``,
        ``labels (B, D)`` int32 (``-1`` pads) and ``num_detections (B,)`` int32.  These are
        padded, network-space outputs (as from ``predict`` and the SavedModel's ``serve``):
        ``images`` are not resized; for raw images use :meth:`detect` or an exported file.
        """
        input_checks.check_images(images)
        if tf.executing_eagerly():  # a direct call on concrete images (not a traced step)
            input_checks.check_pixel_scale(images)
        return self.detect_padded(images, None, training)

    def detect_padded(self, images, image_sizes=None, training=False, portable=None):
        """:meth:`call` for padded images whose content is ``image_sizes (B, 2)`` (height,
        width); the padding is filled with the backbone's neutral colour, and proposals and
        detections are clipped to the content.  ``portable``: see :meth:`_portable`."""
        images = tf.cast(images, self.compute_dtype)
        portable = self._portable(portable)
        if image_sizes is None:
            image_sizes = self._image_sizes(images)
        else:
            image_sizes = tf.cast(image_sizes, tf.int32)
            images = self._fill_padding(images, image_sizes)
        features = self.backbone(images, training=training)
        logits, deltas = self.rpn_head(features)
        proposals, _, valid = self._proposals(logits, deltas, self._anchors(features), image_sizes,
                                              False, portable)
        cls_logits, box_deltas = self._head(features, proposals, training,
                                            "gather" if portable else "crop_and_resize")
        config = dataclasses.replace(self.detection_config, nms_method=self._nms_method(portable))
        return rcnn.postprocess(cls_logits, box_deltas, proposals, valid, image_sizes, config,
                                parts=self.parts)

    # ----------------------------------------------------------------- training
    def compute_losses(self, images, targets, training=True, portable=None):
        """The four losses of one forward pass, as a dict of scalars (unweighted)."""
        s = self.settings
        portable = self._portable(portable)
        images = tf.cast(images, self.compute_dtype)
        images, gt_boxes, gt_labels = input_checks.check_inputs(images, targets, self.num_classes)
        image_sizes = self._image_sizes(images, targets)
        optimizer = getattr(self, "optimizer", None)  # absent until compile()
        step = tf.cast(optimizer.iterations if optimizer is not None else 0, tf.int32)
        seed = tf.stack([tf.constant(int(s["seed"]), tf.int32), step])

        if targets is not None and "image_sizes" in targets:
            images = self._fill_padding(images, image_sizes)
        features = self.backbone(images, training=training)
        logits, deltas = self.rpn_head(features)
        anchors = self._anchors(features)
        rpn_labels, rpn_deltas = target_assignment.rpn_targets(
            anchors, gt_boxes, gt_labels, image_sizes, seed, self.rpn_target_config, parts=self.parts)
        proposals, _, valid = self._proposals(logits, deltas, anchors, image_sizes, True, portable)
        rois, roi_labels, roi_deltas = target_assignment.rcnn_targets(
            proposals, valid, gt_boxes, gt_labels, seed + 1, self.rcnn_target_config, parts=self.parts)
        # Crop by gathers whatever the device: on a CPU, crop_and_resize's gradient shards
        # the RoIs over threads that add into the same feature map without atomics (races
        # that drop updates where RoIs overlap); the gathers' gradient is a scatter-add,
        # compiled by XLA even where the step is not (roi.METHODS).
        cls_logits, box_deltas = self._head(features, rois, training, "compiled_gather")

        sampled = rpn_labels >= 0
        roi_sampled = roi_labels >= 0
        return {
            "rpn_objectness": losses.objectness_loss(logits, rpn_labels, sampled),
            "rpn_box": losses.box_regression_loss(deltas, rpn_deltas, rpn_labels == 1, sampled,
                                                  s["rpn_smooth_l1_sigma"],
                                                  smooth_l1_fn=self.parts.smooth_l1),
            "rcnn_class": losses.classification_loss(cls_logits, roi_labels, roi_sampled),
            "rcnn_box": losses.box_regression_loss(rcnn.select_class_deltas(box_deltas, roi_labels),
                                                   roi_deltas, roi_labels >= 1, roi_sampled,
                                                   smooth_l1_fn=self.parts.smooth_l1),
        }

    def _total_loss(self, parts):
        s = self.settings
        total = tf.add_n([s[f"loss_{n}_weight"] * parts[n] for n in LOSS_NAMES])
        if s["weight_decay"]:
            kernels = [w for w in self.trainable_weights if "kernel" in w.path]
            # 0.5 * wd * sum(w**2), by l2_loss (= sum(w**2) / 2): one fused reduction, no
            # squared copy of each kernel (fc6's is 400 MB), and a one-multiply gradient.
            total += s["weight_decay"] * tf.add_n([tf.nn.l2_loss(tf.cast(w, tf.float32))
                                                   for w in kernels])
        return total

    def _track(self, parts, total):
        self.loss_trackers["loss"].update_state(total)
        for name in LOSS_NAMES:
            self.loss_trackers[name].update_state(parts[name])
        return {name: tracker.result() for name, tracker in self.loss_trackers.items()}

    def train_step(self, data):
        images, targets = data[0], data[1]
        with tf.GradientTape() as tape:
            parts = self.compute_losses(images, targets, training=True)
            total = self._total_loss(parts)
            # Gradients are summed over replicas: scale so that they average.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(total / replicas)
        grads = tape.gradient(scaled, self.trainable_weights)
        # Depend on the loss, hence on the input checks: a rejected batch must not even
        # advance ``optimizer.iterations`` (which has no data dependency on the gradients).
        with tf.control_dependencies([total]):
            self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        return self._track(parts, total)

    def test_step(self, data):
        parts = self.compute_losses(data[0], data[1], training=False)
        return self._track(parts, self._total_loss(parts))

    # A failed input check or unreadable image file: one-line FrcnnError (input_checks.py).
    def fit(self, *args, **kwargs):
        args, kwargs = self._checked_under_xla(args, kwargs)
        return input_checks.call_translating_errors(super().fit, *args, **kwargs)

    def evaluate(self, *args, **kwargs):
        args, kwargs = self._checked_under_xla(args, kwargs)
        return input_checks.call_translating_errors(super().evaluate, *args, **kwargs)

    def predict(self, *args, **kwargs):
        input_checks.check_pixel_scale(args[0] if args else kwargs.get("x"))
        return input_checks.call_translating_errors(super().predict, *args, **kwargs)

    def train_on_batch(self, *args, **kwargs):
        args, kwargs = self._checked_under_xla(args, kwargs)
        return input_checks.call_translating_errors(super().train_on_batch, *args, **kwargs)

    def test_on_batch(self, *args, **kwargs):
        args, kwargs = self._checked_under_xla(args, kwargs)
        return input_checks.call_translating_errors(super().test_on_batch, *args, **kwargs)

    def _checked_under_xla(self, args, kwargs):
        """XLA drops the step's value checks: then check the data before the step."""
        if not (getattr(self, "compiled", False) and self.jit_compile):
            return args, kwargs
        return input_checks.call_translating_errors(
            input_checks.checked_before_the_step, args, kwargs, self.num_classes)

    def predict_on_batch(self, *args, **kwargs):
        input_checks.check_pixel_scale(args[0] if args else kwargs.get("x"))
        return input_checks.call_translating_errors(super().predict_on_batch, *args, **kwargs)

    def predict_step(self, data):
        images = data[0] if isinstance(data, (tuple, list)) else data
        return self(images, training=False)

    # ----------------------------------------------------------------- convenience
    def detect(self, images, batch_size=4, score_threshold=None):
        """Detections on raw images, in each image's own pixel coordinates.

        Args:
          images: one image or a list of them (any sizes): a uint8 array ``(H, W)`` /
            ``(H, W, 1|3|4)`` (uint16, and float 0..255, are converted), a ``PIL.Image`` of
            any mode (converted to RGB), or an image file path (``str`` / ``pathlib.Path``,
            read as ``frcnn predict`` reads it, EXIF orientation applied).  Float pixels in
            ``[0, 1]`` (torchvision's convention: a float image with max in ``(0, 1]``) raise
            FrcnnError: multiply by 255.  An all-black float image (max 0) is accepted.
          batch_size: images per forward pass, a positive int.
          score_threshold: optional number in ``[0, 1]``: keep only detections scoring at
            least this (on top of the model's own ``detections_score_threshold``).

        Returns:
          one dict (or a list of dicts for a list) of numpy arrays ``boxes (n, 4)`` xyxy,
          ``scores (n,)``, ``labels (n,)``, plus ``names (n,)`` str and ``category_ids (n,)``
          when the model was given ``class_names`` / ``category_ids``.  Every box has a
          positive width and height (see ``frcnn_lib.detect`` for the mapping back).
        """
        from frcnn_lib.detect import detect_images
        # A rank-4 array or another iterable (list, generator) is a batch; anything else one
        # image (an array of rank <= 3, a PIL image, or a mistake that detect_images names).
        ndim = getattr(images, "ndim", None)
        single = ndim is not None and ndim != 4 or not hasattr(images, "__iter__") \
            or isinstance(images, (str, bytes, dict, os.PathLike))
        results = name_detections(self, detect_images(self, [images] if single else list(images), batch_size,
                                                      score_threshold))
        return results[0] if single else results

    def export(self, filepath, format="tf_saved_model", verbose=True, **kwargs):
        """Write the model as a file to deploy, on the TF Object Detection API's contract
        (``frcnn_lib.export.contract``; docs/deploy.md): input ``input_tensor`` uint8
        ``(1, H, W, 3)`` of any size, outputs ``detection_boxes`` (normalised
        ``[ymin, xmin, ymax, xmax]`` of the input), ``detection_scores``, ``detection_classes``
        (``category_ids``, else labels ``1..K``) and ``num_detections``: the detections of
        :meth:`detect`, with the resize, padding and mapping back inside the file, and the
        class names too.

        ``format``: ``"tf_saved_model"`` (a folder; signature ``serving_default``, plus
        ``serve``: the padded, network-space outputs of :meth:`call` for float batches,
        ``frcnn_lib.export.savedmodel``), ``"tflite"`` (a float32 file, builtin ops,
        ``frcnn_lib.export.tflite``) or ``"onnx"`` (through tf2onnx, ``opset=`` in kwargs,
        ``frcnn_lib.export.onnx``); other formats go to ``keras.Model.export``.  Returns the
        file's size in bytes for ``tflite`` and ``onnx``."""
        if format == "tflite":
            from frcnn_lib.export.tflite import export_tflite
            return export_tflite(self, filepath, **kwargs)
        if format == "onnx":
            from frcnn_lib.export.onnx import export_onnx
            return export_onnx(self, filepath, **kwargs)
        if format != "tf_saved_model":
            return super().export(filepath, format=format, verbose=verbose, **kwargs)
        from frcnn_lib.export.savedmodel import export_saved_model
        return export_saved_model(self, filepath, verbose=verbose, **kwargs)
