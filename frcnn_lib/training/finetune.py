"""Fine-tuning: start a new ``FasterRCNN`` from the weights of a trained one.

The new model is built as usual (preset, ``--set``, the new data's classes); then, stage by
stage (backbone, RPN head, RoI head, R-CNN predictor), the trained model's weights are
copied into it.  The only stage that may differ is the predictor, whose class scores
``(F, K)`` and class-specific box deltas ``(F, 4K)`` depend on the number of classes: with a
different ``K`` it keeps its fresh initialisation (the usual recipe of torchvision's and
Detectron2's fine-tuning tutorials: replace the box predictor, keep everything else).
Any other mismatch (another backbone, other anchors, head width) is a FrcnnError, never a
silent partial copy.
"""
from __future__ import annotations

from frcnn_lib.runtime.errors import FrcnnError

STAGES = ("backbone", "rpn_head", "roi_head", "predictor")


def init_from(model, source, where="--init-model"):
    """Copy ``source``'s weights into ``model`` (both FasterRCNN); returns a one-line summary.

    Same classes: every weight.  A different number of classes: every weight but the
    predictor's (re-initialised).  Raises FrcnnError on another backbone or any other shape
    mismatch, naming the stage and the weight.
    """
    ours, theirs = model.settings["backbone"], source.settings["backbone"]
    if ours != theirs:
        raise FrcnnError(f"{where}: the model has backbone {theirs!r} but this run builds "
                         f"{ours!r}; choose a preset or --set backbone={theirs} that matches")
    model.build()
    source.build()
    same_classes = model.num_classes == source.num_classes
    copied = 0
    for stage in STAGES:
        if stage == "predictor" and not same_classes:
            continue
        new, old = getattr(model, stage).weights, getattr(source, stage).weights
        if len(new) != len(old):
            raise FrcnnError(f"{where}: stage {stage} has {len(old)} weights in the model but "
                             f"{len(new)} in this run's settings; expected the same architecture")
        for a, b in zip(new, old):
            if tuple(a.shape) != tuple(b.shape):
                raise FrcnnError(f"{where}: weight {b.path} has shape {tuple(b.shape)} in the model "
                                 f"but {tuple(a.shape)} in this run's settings (check anchors, "
                                 f"channels, head units against the model's)")
        for a, b in zip(new, old):
            a.assign(b)
            copied += 1
    if same_classes:
        return f"{where}: all {copied} weights copied ({model.num_classes} classes)"
    return (f"{where}: {copied} weights copied; the R-CNN predictor (class scores and boxes) is "
            f"re-initialised for {model.num_classes} classes (the model had {source.num_classes})")
