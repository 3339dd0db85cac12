"""Checkers of the course's exercises: the library grades the learner's code.

Each notebook has a few exercise cells: a stub the learner fills in, then a check cell
calling one of these, then a collapsed reference solution.  A check calls the learner's
function on hand-picked edge cases and seeded random cases, compares with ``frcnn_lib``
and prints one verdict:

* ``[PASS] name: what was checked``;
* ``[FAIL] name: case '...'``: the inputs, expected versus got, and a hint -- the usual
  mistake when it recognises it (VOC +1, swapped x and y, ties in the best-anchor rule,
  a missing clamp before ``exp``, the half-pixel offset, an unsorted ranking, ``>=``
  for ``>``...);
* ``[ ] name: not implemented yet`` for a stub raising ``NotImplementedError``;
* ``[ERROR] name: your function raised ...`` in one line for any other exception.

It returns True or False, so ``assert check_x(reference)`` guards the reference in CI.

========  ==========================================  =========================================
notebook  check                                       the learner writes
========  ==========================================  =========================================
01        ``boxes.check_voc_to_xyxy``                 VOC 1-based corners -> xyxy
01        ``boxes.check_to_normalized_yxyx``          xyxy pixels -> ``tf.image``'s yxyx
02        ``anchors.check_feature_map_size``          VGG-16's conv5_3 size
03        ``anchors.check_generate_anchors``          the anchor grid
04        ``boxes.check_iou``                         pairwise IoU
04        ``matching.check_label_anchors``            positive / negative / ignored anchors
04        ``matching.check_sample_balanced``          balanced sampling
05        ``losses.check_smooth_l1``                  smooth-L1
05        ``losses.check_rpn_losses``                 the two RPN losses
06        ``boxes.check_decode``                      deltas -> boxes, with the clamp
06        ``nms.check_nms``                           greedy NMS
07        ``roi.check_roi_align_grid``                RoIAlign's sample positions
08        ``rcnn_targets.check_label_rois``           R-CNN RoI labels
09        ``training.check_train_step``               one training step
10        ``ap.check_precision_recall``               the precision-recall curve
10        ``ap.check_voc_ap``                         VOC07 / VOC2010+ AP
11        ``adapter.check_coco_to_targets``           a COCO dataset adapter
========  ==========================================  =========================================
"""
from frcnn_lib.exercises.adapter import check_coco_to_targets
from frcnn_lib.exercises.anchors import check_feature_map_size, check_generate_anchors
from frcnn_lib.exercises.ap import check_precision_recall, check_voc_ap
from frcnn_lib.exercises.boxes import check_decode, check_iou, check_to_normalized_yxyx, check_voc_to_xyxy
from frcnn_lib.exercises.losses import check_rpn_losses, check_smooth_l1
from frcnn_lib.exercises.matching import check_label_anchors, check_sample_balanced
from frcnn_lib.exercises.nms import check_nms
from frcnn_lib.exercises.rcnn_targets import check_label_rois
from frcnn_lib.exercises.roi import check_roi_align_grid


def __getattr__(name):
    # training imports the model (Keras): load it only when a notebook asks for it.
    if name == "check_train_step":
        from frcnn_lib.exercises.training import check_train_step
        return check_train_step
    raise AttributeError(name)


__all__ = ["check_coco_to_targets", "check_feature_map_size", "check_generate_anchors",
           "check_precision_recall", "check_voc_ap", "check_decode", "check_iou",
           "check_to_normalized_yxyx", "check_voc_to_xyxy", "check_rpn_losses", "check_smooth_l1",
           "check_label_anchors", "check_sample_balanced", "check_nms", "check_label_rois",
           "check_roi_align_grid", "check_train_step"]
