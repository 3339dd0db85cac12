"""Named configurations: model arguments plus training settings.

* ``shapes_cpu`` -- the main job: the small backbone on 160 px shapes images, sized to train
  to a useful detector in minutes on a 2-core CPU.
* ``voc_vgg16`` -- the paper's setting: VGG-16 from ImageNet on Pascal VOC 2007 trainval,
  SGD with momentum 0.9, lr 1e-3 then 1e-4 (Ren et al. 2015, sec. 4.1).  Needs a GPU.
* ``coco_resnet50`` -- ResNet-50 C4 on COCO 2017, the common torchvision/Detectron setting.

A preset is plain data (a dict); command-line options and ``FasterRCNN(**preset["model"])``
override or consume it.  No global state.
"""
import copy

from frcnn_lib.errors import FrcnnError

PRESETS = {
    "shapes_cpu": {
        "data": "shapes",
        "model": dict(
            backbone="small", anchor_scales=(16, 32, 64, 96), anchor_ratios=(0.5, 1.0, 2.0),
            rpn_channels=128, rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=300,
            rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_test=100, rpn_allowed_border=16.0,
            roi_batch_size=64, roi_head_units=256, roi_head_dropout=0.0,
            roi_background_iou_low=0.0, weight_decay=1e-4,
            image_min_side=160, image_max_side=160),
        "train": dict(optimizer="adam", learning_rate=1e-3, schedule="cosine", batch_size=4,
                      epochs=16, train_images=2000, val_images=100, test_images=300),
    },
    "voc_vgg16": {
        "data": "voc:datasets/data/VOCdevkit/VOC2007:trainval",
        "model": dict(backbone="vgg16", backbone_weights="imagenet"),
        "train": dict(optimizer="sgd", learning_rate=1e-3, momentum=0.9, schedule="step",
                      step_epochs=(12,), batch_size=2, epochs=16),
    },
    "coco_resnet50": {
        "data": "coco:datasets/data/coco/annotations/instances_train2017.json:datasets/data/coco/train2017",
        "model": dict(backbone="resnet50", backbone_weights="imagenet", roi_pooling="roi_align",
                      image_min_side=800, image_max_side=1333),
        "train": dict(optimizer="sgd", learning_rate=0.01, momentum=0.9, schedule="step",
                      step_epochs=(8, 11), batch_size=8, epochs=12),
    },
}


def get_preset(name):
    """A deep copy of preset ``name`` (so callers may edit it)."""
    if name not in PRESETS:
        raise FrcnnError(f"preset {name!r}: expected one of {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])
