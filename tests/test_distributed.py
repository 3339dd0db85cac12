"""FasterRCNN under tf.distribute.MirroredStrategy (two logical CPUs) and under the
``mixed_float16`` policy.

Both run in a subprocess (tests/helpers/*_check.py): logical devices must be set before
TensorFlow initialises, and a global dtype policy must not leak into other tests.  The
helpers print one ``RESULT {json}`` line of measurements; the assertions are here.
"""
import json
import math
import os
import subprocess
import sys

HELPERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helpers")
LOG_NAMES = {"loss", "rpn_objectness", "rpn_box", "rcnn_class", "rcnn_box"}


def _run_helper(script, timeout=600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "-1"}
    proc = subprocess.run([sys.executable, os.path.join(HELPERS, script)], capture_output=True,
                          text=True, timeout=timeout, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (
        f"{script} exited with {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n"
        f"--- stderr\n{proc.stderr[-6000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _finite_logs(logs):
    assert set(logs) == LOG_NAMES, logs
    assert all(math.isfinite(v) for v in logs.values()), logs


def test_mirrored_strategy_on_two_logical_cpus():
    result = _run_helper("mirrored_check.py")
    assert result["replicas"] == 2 and result["model_replicas"] == 2

    # A model built and compiled in strategy.scope() fits 2 steps of batch 4.
    assert len(result["fit_logs"]) == 2
    for logs in result["fit_logs"]:
        _finite_logs(logs)
    assert result["weights_finite"]

    # The comparison below needs each replica (images [0, 1] and [2, 3]) to average its loss
    # over as many sampled anchors and RoIs as the other: check the data does that.
    counts = result["normalizers"]
    for key in ("anchors", "rois"):
        a, b, c, d = counts[key]
        assert a + b == c + d, (key, counts)
    assert all(n >= 1 for n in counts["foreground_rois"]), counts  # every image trains the box head

    # One SGD step under the strategy == the same step without it.
    _finite_logs(result["step_single"])
    assert min(result["step_single"][name] for name in LOG_NAMES) > 1e-4, result["step_single"]
    single, mirrored = result["step_single"], result["step_mirrored"]
    for name in LOG_NAMES:
        assert math.isclose(mirrored[name], single[name], rel_tol=1e-5, abs_tol=1e-7), (name, mirrored, single)
    # Tolerance: the replicas sum their halves of the batch and then all-reduce, a different
    # float32 summation order from one pass over the batch; usually that moves an update by
    # ~1e-6 of its size.  But the gradient of the early layers flows through ReLUs and the
    # max of RoI pooling: a one-ulp difference can flip which input wins and re-route part of
    # the gradient (seen once in a clean-clone CI run: 0.4 % of the first conv's largest
    # update).  A wrong replica scaling (gradients summed without dividing by the replicas,
    # or averaged twice) moves every update by 100 % or 50 %.  So: at most 2 % of the largest
    # update of each weight tensor, 25 times tighter than the smallest error it must catch.
    updates = result["update"]
    assert len(updates) > 20
    for u in updates:
        assert u["max_diff"] <= 2e-2 * u["max_update"] + 1e-9, u
    # Every head was trained by its loss in this step.
    moved = {u["name"].split("/")[-2] for u in updates if u["max_update"] > 1e-6}
    assert {"rpn_objectness", "rpn_box", "cls_score", "bbox_pred", "fc6"} <= moved, moved


def test_mixed_float16_builds_trains_and_predicts_float32_boxes():
    result = _run_helper("mixed_precision_check.py")
    assert result["policy"] == "mixed_float16"
    assert result["feature_dtype"] == "float16"          # the network does compute in float16
    assert result["variable_dtypes"] == ["float32"]      # while its weights stay float32
    assert result["optimizer"] == "LossScaleOptimizer"
    assert len(result["logs"]) == 2
    for logs in result["logs"]:
        _finite_logs(logs)
    assert result["weights_changed"] >= result["num_weights"] // 2, result
    assert result["predict"] == {"boxes": ["float32", [3, 10, 4]], "scores": ["float32", [3, 10]],
                                 "labels": ["int32", [3, 10]], "num_detections": ["int32", [3]]}
    assert result["predict_finite"]
    assert result["detect"] == {"boxes": "float32", "scores": "float32", "labels": "int32"}
