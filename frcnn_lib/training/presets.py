"""Named configurations: model arguments plus training settings.

* ``shapes_cpu`` -- the course's detector: the small backbone on 160 px shapes images, sized
  to train to a useful detector in minutes on a 2-core CPU.
* ``shapes_224`` -- the main job (``make demo``): ``shapes_cpu`` at 224 px with anchors fitted
  there, trained in half the steps.
* ``voc_vgg16`` -- the paper's setting: VGG-16 from ImageNet on Pascal VOC 2007 trainval,
  SGD with momentum 0.9, lr 1e-3 then 1e-4 (Ren et al. 2015, sec. 4.1).  Needs a GPU.
* ``coco_resnet50`` -- ResNet-50 C4 on COCO 2017, the common torchvision/Detectron setting.

A preset is plain data (a dict); command-line options and ``FasterRCNN(**preset["model"])``
override or consume it.  No global state.

Any preset's ``train`` dict may also set the training controls of :data:`TRAIN_CONTROLS`
(read by ``training/controls.py``); the presets below leave them at their defaults.
"""
import copy

from frcnn_lib.runtime.errors import FrcnnError

# Training controls and their defaults (augmentation off, so a preset's numbers do not move).
TRAIN_CONTROLS = {
    # Keep OUT/best.keras, the model of the epoch with the highest val_mAP (None: whenever
    # there is validation data).  Detectron2's hooks.BestCheckpointer does this; torchvision's
    # detection references keep every epoch instead.
    "keep_best": None,
    # Stop after this many validations without a val_mAP gain (None: off); keras'
    # EarlyStopping(monitor="val_mAP", mode="max", min_delta=0) counts the same way.
    "early_stopping_patience": None,
    # (low, high): each training image's size times a factor in [low, high], cropped to its
    # canvas; torchvision's ScaleJitter + RandomCrop (large scale jitter uses (0.1, 2.0)).
    "scale_jitter": None,
    # Brightness / contrast / saturation / hue strength in 0..1; 0.5 gives torchvision's
    # RandomPhotometricDistort ranges (SSD, Liu et al. 2016).
    "photometric": 0.0,
}

# The course's detector (notebook 09 trains it; the course model is one).
_SHAPES_CPU_MODEL = dict(
    backbone="small", anchor_scales=(16, 32, 64, 96), anchor_ratios=(0.5, 1.0, 2.0),
    # rpn_min_size 0: objects from 6 px; empty proposals are still dropped.
    rpn_channels=128, rpn_min_size=0.0, rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=300,
    rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_test=100, rpn_allowed_border=16.0,
    # RoIAlign sampling the 7 x 7 output grid directly (one sample per bin): a quarter
    # of roi_pool's 14 x 14 gathers, the step's largest cost beyond its dense compute.
    roi_pooling="roi_align", roi_sampling_ratio=1,
    roi_batch_size=64, roi_head_units=256, roi_head_dropout=0.0,
    roi_background_iou_low=0.0, weight_decay=1e-4,
    image_min_side=160, image_max_side=160)
_SHAPES_CPU_TRAIN = dict(optimizer="adam", learning_rate=1e-3, schedule="cosine", batch_size=4,
                         epochs=16, train_images=2000, val_images=100, test_images=300)

PRESETS = {
    "shapes_cpu": {"data": "shapes", "model": _SHAPES_CPU_MODEL, "train": _SHAPES_CPU_TRAIN},
    # The main job: shapes_cpu's detector in half the steps; each change is measured in
    # benchmarks/README.md ("The main job in 4000 steps").  The 160 px images upsampled to
    # 224 px, so that the small objects (55 % of them, from 9 px) cover more cells of the
    # stride-8 features; the small_deep trunk (a third conv in stages 2 and 3, receptive
    # field 67 px instead of 43, and a shortcut that adds stage 2's finer features to the
    # output: the lever that put every seed over the bar); the anchors `frcnn anchors
    # --set image_min_side=224 --set image_max_side=224` fits at that size; test NMS at IoU 0.5 (torchvision's and
    # Detectron2's) rather than the paper's 0.3; Adam at 2e-3 after a linear warm-up over
    # 200 steps from 0.1x, cosine decay over 8 epochs of 500 steps: 4000 steps at batch 4.
    "shapes_224": {
        "data": "shapes",
        "model": dict(
            _SHAPES_CPU_MODEL, backbone="small_deep",
            anchor_scales=(20, 31, 50, 82), anchor_ratios=(0.6, 1.0, 1.5),
            detections_nms_iou=0.5, image_min_side=224, image_max_side=224),
        "train": dict(_SHAPES_CPU_TRAIN, learning_rate=2e-3, warmup_steps=200, warmup_factor=0.1,
                      epochs=8),
    },
    # py-faster-rcnn, end-to-end VGG-16 on VOC 2007 trainval (experiments/scripts/
    # faster_rcnn_end2end.sh, models/pascal_voc/VGG16/faster_rcnn_end2end/solver.prototxt,
    # lib/fast_rcnn/config.py): 70k iterations of 1 image, lr 1e-3 dropped to 1e-4 at 50k,
    # momentum 0.9, weight decay 5e-4, flipped images, RPN 256 anchors / R-CNN 128 RoIs per
    # image, test NMS 0.3, 300 proposals at test time.
    # Different on purpose: 2 images per update (batch > 1), so the same 70k images are
    # 35k updates: 14 epochs of the 5011 trainval images with the drop after 10 (50k
    # images); the learning rate stays 1e-3 (losses are averaged over the batch).
    "voc_vgg16": {
        "data": "voc:datasets/data/VOCdevkit/VOC2007:trainval",
        "model": dict(backbone="vgg16", backbone_weights="imagenet",   # conv1-2 frozen
                      weight_decay=5e-4, rpn_min_size=16.0, roi_batch_size=128),
        "train": dict(optimizer="sgd", learning_rate=1e-3, momentum=0.9, schedule="step",
                      step_epochs=(10,), batch_size=2, epochs=14),
    },
    # Detectron2 R50-C4 1x (configs/COCO-Detection/faster_rcnn_R_50_C4_1x.yaml with
    # Base-RCNN-C4.yaml and config/defaults.py), the same numbers as torchvision's C4 recipe:
    # anchors 32-512 x (0.5, 1, 2) on res4, 512 RoIs per image with 25 % foreground,
    # RoIAlign 14 -> res5, weight decay 1e-4, SGD lr 0.02 for 16 images with momentum 0.9,
    # linear warmup over 1000 iterations from 0.001 x lr, 90k iterations with drops at 60k and
    # 80k, FrozenBN and stem + res2 frozen, shorter side 800 (max 1333), RPN 12000/2000
    # proposals in training and 6000/1000 at test, test NMS 0.5, score threshold 0.05.
    # Different on purpose: 8 images per update with lr 0.01 (the linear scaling rule), so
    # 90k x 16 images = 12 epochs of COCO train2017 (118k images), drops after 8 and 11
    # (60k and 80k of 90k); one training scale (Detectron2 samples 640-800).
    "coco_resnet50": {
        "data": "coco:datasets/data/coco/annotations/instances_train2017.json:datasets/data/coco/train2017",
        "model": dict(backbone="resnet50", backbone_weights="imagenet", roi_pooling="roi_align",
                      anchor_scales=(32, 64, 128, 256, 512), anchor_ratios=(0.5, 1.0, 2.0),
                      rpn_min_size=0.0, rpn_post_nms_top_n_test=1000,
                      roi_batch_size=512, roi_foreground_fraction=0.25, roi_background_iou_low=0.0,
                      detections_nms_iou=0.5, weight_decay=1e-4,
                      image_min_side=800, image_max_side=1333),
        "train": dict(optimizer="sgd", learning_rate=0.01, momentum=0.9, schedule="step",
                      step_epochs=(8, 11), batch_size=8, epochs=12,
                      warmup_steps=1000, warmup_factor=0.001),
    },
}

# The presets on the embedded shapes data: those `frcnn demo` can train.
SHAPES_PRESETS = tuple(name for name, preset in PRESETS.items() if preset["data"] == "shapes")


def get_preset(name):
    """A deep copy of preset ``name`` (so callers may edit it)."""
    if name not in PRESETS:
        raise FrcnnError(f"preset {name!r}: expected one of {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])
