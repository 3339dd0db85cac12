"""Keras callback that evaluates VOC mAP on a validation set at the end of an epoch.

The value lands in the epoch's ``logs`` under ``name`` (default ``"val_mAP"``), where
``History``, ``TensorBoard``, ``CSVLogger``, ``EarlyStopping(monitor="val_mAP",
mode="max")`` and ``ModelCheckpoint(monitor="val_mAP", mode="max")`` read it.  Keras
passes one ``logs`` dict through the callbacks in list order, so put this callback
*before* those that read it (``History`` and the progress bar always come last).
``mode="max"`` is required: Keras 3's ``mode="auto"`` cannot infer a direction for a
name it does not know and raises.

Model contract: ``model.detect(images)`` takes a list of uint8 ``(H, W, 3)`` numpy arrays
and returns one dict per image of numpy arrays ``boxes (n, 4)`` xyxy in that image's
pixels, ``scores (n,)`` and ``labels (n,)`` in ``1..num_classes``.
"""
import math

import keras
import numpy as np

from frcnn_lib.runtime.errors import FrcnnError
from frcnn_lib.evaluation.voc import evaluate_voc


def _validation_source(data):
    """``(images_fn, ground_truths)`` from a pair or a duck-typed dataset object.

    ``data`` is ``(images, ground_truths)`` (two sequences of the same length), or an
    object with ``ground_truths()`` and either ``images()`` or ``read_image(index)`` with
    ``len()`` (``frcnn_lib.datasets.DetectionData``).  ``images_fn()`` returns a fresh
    iterable of images each epoch, so a dataset may read them lazily.
    """
    if isinstance(data, (tuple, list)) and len(data) == 2:
        images, ground_truths = data
        if len(images) != len(ground_truths):
            raise FrcnnError(f"validation data has {len(images)} images but "
                             f"{len(ground_truths)} ground truths; expected one per image")
        return (lambda: images), list(ground_truths)
    if callable(getattr(data, "ground_truths", None)):
        if callable(getattr(data, "images", None)):
            return data.images, list(data.ground_truths())
        if callable(getattr(data, "read_image", None)) and hasattr(data, "__len__"):
            return (lambda: (data.read_image(i) for i in range(len(data)))), \
                list(data.ground_truths())
    raise FrcnnError("MeanAveragePrecision data must be a pair (images, ground_truths) or an "
                     "object with ground_truths() and images() (or read_image(index) and "
                     f"len()) methods, got {type(data).__name__}")


def _batches(images, batch_size):
    """Lists of at most ``batch_size`` images from any iterable (or a ``(B, H, W, 3)`` array)."""
    batch = []
    for image in images:
        batch.append(np.asarray(image))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


class MeanAveragePrecision(keras.callbacks.Callback):
    """Writes VOC mAP (and per-class AP) of ``model.detect`` on ``data`` into the logs.

    Args:
      data: ``(images, ground_truths)``: a list of uint8 ``(H, W, 3)`` arrays (or a
        ``(B, H, W, 3)`` array) and a list of dicts ``boxes (g, 4)``, ``labels (g,)``,
        optional ``difficult (g,)``; or an object with ``ground_truths()`` and
        ``images()`` (or ``read_image(index)`` and ``len()``, as ``DetectionData``).
      every_n_epochs: evaluate after epochs ``n, 2n, ...`` (1-based).  On other epochs the
        key is absent from the logs (EarlyStopping and ModelCheckpoint then skip that
        epoch with a warning; CSVLogger fixes its columns at the first epoch, so use
        ``every_n_epochs=1`` with it).
      batch_size: images per ``model.detect`` call.
      use_07_metric, iou_threshold: as in :func:`evaluate_voc`.
      name: the logs key of the mAP.
      class_names: optional names of labels ``1..K`` (``class_names[k - 1]`` is label
        ``k``); when given, each class's AP is logged as ``f"{name}/{class_name}"``
        (NaN for a class without ground truth).
      num_classes: K; default ``len(class_names)``, else ``model.num_classes``, else the
        largest ground-truth label.

    After an evaluation, ``self.result`` holds the full :func:`evaluate_voc` dict.
    """

    def __init__(self, data, every_n_epochs=1, batch_size=8, use_07_metric=True,
                 iou_threshold=0.5, name="val_mAP", class_names=None, num_classes=None):
        super().__init__()
        if not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise FrcnnError(f"every_n_epochs must be a positive integer, got {every_n_epochs!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise FrcnnError(f"batch_size must be a positive integer, got {batch_size!r}")
        self._images, self._ground_truths = _validation_source(data)
        self.every_n_epochs = every_n_epochs
        self.batch_size = batch_size
        self.use_07_metric = use_07_metric
        self.iou_threshold = iou_threshold
        self.name = name
        self.class_names = None if class_names is None else list(class_names)
        self.num_classes = num_classes
        self.result = None

    def _num_classes(self):
        if self.num_classes is not None:
            return self.num_classes
        if self.class_names is not None:
            return len(self.class_names)
        if getattr(self.model, "num_classes", None):
            return int(self.model.num_classes)
        labels = [np.max(gt["labels"]) for gt in self._ground_truths if len(gt["labels"])]
        return int(max(labels, default=1))

    def _detect_all(self):
        """``model.detect`` over the validation images, in batches -> list of dicts."""
        detect = getattr(self.model, "detect", None)
        if not callable(detect):
            raise FrcnnError(f"MeanAveragePrecision needs a model with a detect(images) "
                             f"method; {type(self.model).__name__} has none")
        detections = []
        for batch in _batches(self._images(), self.batch_size):
            output = detect(batch)
            if isinstance(output, dict) or len(output) != len(batch):
                raise FrcnnError(f"model.detect returned {type(output).__name__} for "
                                 f"{len(batch)} images; expected a list of one dict per image")
            detections.extend(output)
        return detections

    def evaluate(self):
        """Run detection and :func:`evaluate_voc` now; returns (and stores) its result."""
        detections = self._detect_all()
        if len(detections) != len(self._ground_truths):
            raise FrcnnError(f"the validation images gave {len(detections)} detection lists "
                             f"for {len(self._ground_truths)} ground truths")
        self.result = evaluate_voc(detections, self._ground_truths, self._num_classes(),
                                   self.iou_threshold, self.use_07_metric)
        return self.result

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs != 0:
            return
        result = self.evaluate()
        if logs is None:
            return
        logs[self.name] = result["mAP"]
        for label, class_name in enumerate(self.class_names or [], start=1):
            logs[f"{self.name}/{class_name}"] = result["AP"].get(label, math.nan)
