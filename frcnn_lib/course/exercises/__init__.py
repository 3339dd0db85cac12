"""Checkers of the course's exercises: the library grades the learner's code.

Each notebook has a few exercise cells: a stub the learner fills in, then a check cell
``adopt(my_x, check_x)`` (:mod:`frcnn_lib.course.exercises.adopt`).  A check calls the learner's
function on hand-picked edge cases and seeded random cases, compares with ``frcnn_lib``
and prints one verdict:

* ``[PASS] name: what was checked``;
* ``[FAIL] name: case '...'``: the inputs, expected versus got, and a hint -- the usual
  mistake when it recognises it (VOC +1, swapped x and y, ties in the best-anchor rule,
  a missing clamp before ``exp``, the half-pixel offset, an unsorted ranking, ``>=``
  for ``>``...);
* ``[ ] name: not implemented yet`` for a stub raising ``NotImplementedError``;
* ``[ERROR] name: your function raised ...`` in one line for any other exception;
* ``[FAIL] ... returned None`` for a function whose ``return`` is missing.

The checks of the detector's parts (column "part") end with one case inside
``tf.function``, with tensors of unknown size, as the compiled training step calls them: a
function written with numpy instead of ``keras.ops`` fails there, with a hint.

It returns True or False, so ``assert check_x(reference)`` guards the reference in CI.
Each check also carries ``check.reference`` (the library's answer in the learner's
signature: the notebook's fallback), ``check.library`` (what ``show_reference`` prints)
and ``check.part`` (the name under which ``frcnn_lib.course.promotion`` promotes a passing answer).

========  ==================================  ===============================================  ==============
notebook  check                               the learner writes                               part
========  ==================================  ===============================================  ==============
01        ``boxes.check_voc_to_xyxy``         ``(voc_boxes (N, 4)) -> (N, 4)`` xyxy            -
01        ``boxes.check_to_normalized_yxyx``  ``(boxes (N, 4), height, width) -> (N, 4)``      -
02        ``anchors.check_feature_map_size``  ``(height, width) -> (fh, fw)`` of VGG-16        -
03        ``anchors.check_generate_anchors``  ``(fh, fw, stride, scales, ratios) -> (N, 4)``   anchors
04        ``boxes.check_iou``                 ``(boxes_a (N, 4), boxes_b (M, 4)) -> (N, M)``   iou
04        ``matching.check_label_anchors``    ``(ious (N, G), pos_iou, neg_iou) -> (N,)``      label_anchors
04        ``matching.check_sample_balanced``  ``(labels (N,), keys (N,), S, f) -> (N,)``       sample
04        ``boxes.check_encode``              ``(boxes, anchors, weights) -> (..., 4)``        encode
05        ``losses.check_smooth_l1``          ``(x, sigma) -> x.shape``                        smooth_l1
05        ``losses.check_rpn_losses``         the two RPN losses (whole-batch normalised)      -
06        ``boxes.check_decode``              ``(deltas, anchors, weights) -> (..., 4)``       decode
06        ``nms.check_nms``                   ``(boxes, scores, iou_threshold) -> (D,)``       nms
07        ``roi.check_roi_align_grid``        ``(rois (R, 4), stride, S, r) -> ys, xs``        roi_align_grid
08        ``rcnn_targets.check_label_rois``   R-CNN RoI labels                                 -
09        ``training.check_train_step``       ``(model, images, targets) -> loss``             -
10        ``ap.check_precision_recall``       ``(scores, is_tp, npos) -> recall, precision``   -
10        ``ap.check_voc_ap``                 ``(recall, precision, use_07_metric) -> AP``     -
11        ``adapter.check_coco_to_targets``   a COCO dataset adapter                           -
12        ``fpn.check_fpn_level``             ``(boxes (n, 4), k0, canonical, k_min, k_max)``  -
========  ==================================  ===============================================  ==============
"""
from frcnn_lib.course.exercises.adapter import check_coco_to_targets
from frcnn_lib.course.exercises.anchors import check_feature_map_size, check_generate_anchors
from frcnn_lib.course.exercises.ap import check_precision_recall, check_voc_ap
from frcnn_lib.course.exercises.boxes import (check_decode, check_encode, check_iou,
                                       check_to_normalized_yxyx, check_voc_to_xyxy)
from frcnn_lib.course.exercises.fpn import check_fpn_level
from frcnn_lib.course.exercises.losses import check_rpn_losses, check_smooth_l1
from frcnn_lib.course.exercises.matching import check_label_anchors, check_sample_balanced
from frcnn_lib.course.exercises.nms import check_nms
from frcnn_lib.course.exercises.rcnn_targets import check_label_rois
from frcnn_lib.course.exercises.roi import check_roi_align_grid
from frcnn_lib.course.exercises.adopt import adopt, load_learner_parts, show_reference  # noqa: E402

# The exercises whose passing answer is promoted into the detector (frcnn_lib.course.promotion),
# with the notebook that asks for each.
CHECKS_BY_PART = {}
for _check, _notebook in ((check_generate_anchors, "03"), (check_iou, "04"),
                          (check_label_anchors, "04"), (check_sample_balanced, "04"),
                          (check_encode, "04"), (check_smooth_l1, "05"), (check_decode, "06"), (check_nms, "06"),
                          (check_roi_align_grid, "07")):
    _check.notebook = _notebook
    if _check.part:
        CHECKS_BY_PART[_check.part] = _check


def __getattr__(name):
    # training imports the model (Keras): load it only when a notebook asks for it.
    if name == "check_train_step":
        from frcnn_lib.course.exercises.training import check_train_step
        return check_train_step
    raise AttributeError(name)


__all__ = ["adopt", "show_reference", "load_learner_parts", "CHECKS_BY_PART", "check_coco_to_targets", "check_feature_map_size", "check_generate_anchors",
           "check_precision_recall", "check_voc_ap", "check_decode", "check_iou",
           "check_to_normalized_yxyx", "check_voc_to_xyxy", "check_rpn_losses", "check_smooth_l1",
           "check_label_anchors", "check_sample_balanced", "check_nms", "check_label_rois",
           "check_roi_align_grid", "check_train_step", "check_encode", "check_fpn_level"]
