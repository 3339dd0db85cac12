"""The benchmark scripts keep running as the library changes: ``profile_stages.py`` once broke
silently when the model's stages took a new argument.  A ``--quick`` run (tiny sizes, a few
repeats: seconds) only checks that the script works and prints its whole table, not speed."""
import json
import os
import subprocess
import sys

from helpers.reliability import subprocess_env

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
STAGES = ("backbone", "rpn_head", "anchors", "proposals", "roi features", "roi_head", "predictor",
          "postprocess", "postprocess (all pass)", "sum of stages", "model (tf.function)", "floor")


def _run_quick(script, *args):
    """``script --quick args`` in benchmarks/: its stdout (the run must succeed) and the first
    column of its table rows."""
    done = subprocess.run([sys.executable, os.path.join(BENCHMARKS, script), "--quick", *args],
                          cwd=BENCHMARKS, env=subprocess_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split("|")[1].strip() for line in done.stdout.splitlines() if line.startswith("| ")]
    return done.stdout, rows


def test_profile_stages_quick_prints_every_stage():
    stdout, rows = _run_quick("profile_stages.py", "--config", "small", "--set", "roi_pooling=roi_pool",
                              "--set", "roi_sampling_ratio=3")
    assert set(STAGES) <= set(rows), rows
    assert "settings overridden: roi_pooling='roi_pool', roi_sampling_ratio=3" in stdout


def test_profile_stages_training_stand_ins_quick_prints_what_each_part_costs():
    stdout, rows = _run_quick("profile_stages.py", "--config", "small", "--training", "--stand-ins",
                              "--batch", "2")
    parts = ["the whole step (its ratio)", "weight decay", "input checks", "RPN targets",
             "proposals' NMS", "R-CNN targets", "RoI crop"]
    assert rows[-len(parts):] == parts, rows
    assert "floor + RPN head" in rows and "train step, RoI crop stood in" in rows, rows
    assert "small training, batch 2, median of 3 interleaved runs" in stdout


def test_bench_optimizer_quick_prints_both_optimizers_and_the_ratio():
    stdout, _ = _run_quick("bench_optimizer.py", "--configs", "small")
    rows = [[c.strip() for c in line.split("|")[1:3]] for line in stdout.splitlines()
            if line.startswith("| small")]
    assert [r[1] for r in rows] == ["keras", "fused", "keras / fused"], rows
    assert "small: keras / fused" in stdout


def test_profile_ops_quick_prints_the_parts_of_the_step():
    stdout, rows = _run_quick("profile_ops.py")
    assert {"grad:small_backbone", "small_backbone", "rpn_head", "optimizer"} <= set(rows), rows
    assert "ResourceApplyAdam" in rows, rows          # the preset's optimizer is the fused one
    assert "SUMMARY op time per step" in stdout


def _benchmark_module(name):
    sys.path.insert(0, BENCHMARKS)
    try:
        return __import__(name)
    finally:
        sys.path.remove(BENCHMARKS)


def _has_ancestor(op, op_type):
    """Whether an op whose type contains ``op_type`` feeds ``op`` (data inputs, transitively)."""
    seen, todo = set(), [op]
    while todo:
        current = todo.pop()
        if current.name in seen:
            continue
        seen.add(current.name)
        if op_type in current.type:
            return True
        todo.extend(t.op for t in current.inputs)
    return False


def test_floor_with_rpn_head_adds_a_new_rpn_and_leaves_the_models_alone():
    """``make_floor(with_rpn=True)``: the floor plus an RPN head of the model's shape (its own
    weights: a floor step must not move the model's, nor its trunk's), forward and training
    step."""
    import numpy as np
    C = _benchmark_module("_common")
    cfg = C.configs(quick=True)["small"]
    model = C.build_model(cfg)
    images = C.random_images(2, cfg["size"])
    before = [w.numpy() for w in model.rpn_head.weights + model.backbone.weights]
    plain, with_rpn = C.make_floor(model, 8), C.make_floor(model, 8, with_rpn=True)
    assert np.isfinite(plain(images).numpy()) and np.isfinite(with_rpn(images).numpy())
    assert float(with_rpn(images)) != float(plain(images))      # the RPN outputs are in the sum
    step = C.make_floor(model, 8, backward=True, with_rpn=True)
    assert all(np.isfinite(t.numpy()) for t in step(images))
    # sequential=True scales the fc sum by 1 + 1e-30 * mean(trunk): the same value, and a
    # gradient for the RoI rows that waits for the trunk's convolutions (bench_training.py's
    # third floor); without it that gradient has no convolution among its inputs.
    sequential = C.make_floor(model, 8, sequential=True)          # (without a new random RPN)
    assert float(sequential(images)) == float(plain(images))
    for flag in (False, True):
        floor_step = C.make_floor(model, 8, backward=True, with_rpn=True, sequential=flag)
        assert all(np.isfinite(t.numpy()) for t in floor_step(images))
        graph = floor_step.get_concrete_function(images).graph
        roi_grad = graph.outputs[1]                   # sum of the RoI rows' gradient
        assert _has_ancestor(roi_grad.op, "Conv2D") == flag
    # Nor do the training floors move the model's trunk: they train a copy of it.
    for w, b in zip(model.rpn_head.weights + model.backbone.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)


def test_ratios_at_a_batch_give_the_floor_that_batchs_rois():
    """``bench_training.py --batch B`` and ``profile_stages.py --training --batch B``: the step
    at batch B against floors of ``B * R`` RoI rows."""
    T = _benchmark_module("bench_training")
    C = _benchmark_module("_common")
    cfg = T.training_configs(quick=True)["small"]
    rows, real = [], C.make_floor

    def spy(model, num_rois, **kwargs):
        rows.append(num_rois)
        return real(model, num_rois, **kwargs)

    C.make_floor = spy
    try:
        result = T.run_config("small", cfg, repeats=1, steps=1, quick=True, ratios_only=True, batch=2)
        assert rows == [2 * cfg["num_rois"]] * 3, rows        # floor, + RPN head, sequential
        rows.clear()                                          # profile_stages --training --batch 2
        _benchmark_module("profile_stages").training_functions("small", cfg, batch=2)
        assert rows == [2 * cfg["num_rois"]] * 3, rows        # floor, + RPN head, forward half
    finally:
        C.make_floor = real
    assert result["batch"] == 2 and set(result["images_per_s"]) == {2}
    assert result["rpn_ratio"] > 0


def test_profile_stages_stand_ins_change_what_they_stand_for():
    """``profile_stages.py --training``'s stand-ins, each in force while a step is traced: the
    losses of one batch move (same weights, same data) for every part but the input checks,
    whose stand-in leaves the losses alone and lets an inverted box through; after the
    ``with`` block the model's own parts are back."""
    import numpy as np
    import pytest
    from frcnn_lib.runtime.errors import FrcnnError
    P = _benchmark_module("profile_stages")
    T = _benchmark_module("bench_training")
    cfg = T.training_configs(quick=True)["small"]
    images, targets = T.batch_data(2, cfg["size"])
    inverted = dict(targets, boxes=targets["boxes"].numpy()[..., [2, 1, 0, 3]])   # x2 < x1
    base = T.compiled("small", cfg)
    reference = base.test_on_batch(images, targets, return_dict=True)
    with pytest.raises(FrcnnError, match="x2 >= x1"):
        base.test_on_batch(images, inverted)
    assert set(P.STAND_INS) == {"input checks", "RPN targets", "proposals' NMS", "R-CNN targets", "RoI crop"}
    for part, replace in P.STAND_INS.items():
        model = T.compiled("small", cfg)
        model.set_weights(base.get_weights())
        parts, pool = model.parts, model._pool
        with replace(model):
            logs = model.test_on_batch(images, targets, return_dict=True)     # traced here
        moved = [k for k in reference if not np.isclose(logs[k], reference[k], rtol=1e-6, atol=0)]
        if part == "input checks":
            assert moved == [], (logs, reference)
            model.test_on_batch(images, inverted)                 # no check in the traced step
        else:
            assert moved, (part, logs, reference)
        assert model.parts is parts and model._pool == pool and "_pool" not in vars(model)


def test_gpu_check_nms_only_smoke_passes_with_tf32_on():
    # Part 3 of gpu_check.py (tiled NMS == greedy NMS with TF32 forced on) in its smoke size;
    # on a CPU TF32 changes nothing, so this checks that the check runs and agrees.
    done = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "gpu_check.py"), "--smoke", "--nms-only"],
                          cwd=BENCHMARKS, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "tiled NMS with TF32 on == greedy NMS: 9/9 runs" in done.stdout, done.stdout
    assert "SUMMARY gpu_check: NMS with TF32 PASS [smoke]" in done.stdout


def test_bench_promotion_quick_prints_the_op_count_and_three_models():
    stdout, rows = _run_quick("bench_promotion.py")
    assert "operations in the library model's traced training step:" in stdout
    assert rows[1:] == ["library", "graph parts", "all parts"]


def test_course_noise_quick_trains_each_seed_and_the_same_seed_alike():
    stdout, _ = _run_quick("course_noise.py")
    runs = [line.split(":", 1)[1].rsplit(",", 1)[0] for line in stdout.splitlines()
            if line.startswith("run ")]                   # without the seconds
    assert len(runs) == 3 and "VOC2010+" in runs[0]
    assert runs[0] == runs[1], runs                         # seed 1 twice: the same numbers
    assert "SUMMARY course noise: 1 of 1 same-seed pairs identical" in stdout


def test_bench_training_controls_quick_trains_each_augmentation_and_evaluates():
    # The augmented variants only (the baseline is the plain pipeline the other scripts run).
    stdout, rows = _run_quick("bench_training_controls.py", "--variants", "jitter,photometric")
    assert rows[-2:] == ["jitter", "photometric"], rows
    assert "SUMMARY training controls: jitter mAP" in stdout and "photometric mAP" in stdout


def test_bench_startup_quick_times_the_floor_predict_and_serve():
    # Real processes: import tensorflow, a command's imports, frcnn predict, frcnn serve up to
    # its first 200 answer (started together in --quick: the structure, not the speed).
    stdout, rows = _run_quick("bench_startup.py")
    assert rows[1:] == ["floor: import tensorflow", "import frcnn_lib (a command's imports)",
                        "frcnn predict (1 image)", "frcnn serve (to first 200)"], rows
    for line in stdout.splitlines():
        if line.startswith("| ") and not line.startswith("| process"):
            cells = [c.strip() for c in line.split("|")[2:-1]]
            seconds, ratio, cpu, rss = float(cells[0]), float(cells[2]), float(cells[4]), float(cells[6])
            assert seconds > 0 and ratio > 0 and cpu > 0 and rss > 100, line
    assert "SUMMARY predict = floor" in stdout and "serve first answer" in stdout


def test_bench_demo_quick_curve_ends_at_the_demos_own_result(tmp_path):
    # run_demo (what `frcnn demo --seed` runs) with the curve's callback: its last point is the
    # final model on the same test images, so it must equal the demo's own final evaluation.
    stdout, _ = _run_quick("bench_demo.py", "--seeds", "1", "--out", str(tmp_path))
    curve = [line for line in stdout.splitlines() if line.startswith("2 | ")]
    final = [line for line in stdout.splitlines() if line.startswith("seed 1: final VOC07")]
    assert len(curve) == 1 and len(final) == 1, stdout
    voc07, voc2010 = (float(v) for v in curve[0].split("|")[1].split("/"))
    words = final[0].replace(",", "").split()
    assert (f"{voc07:.3f}", f"{voc2010:.3f}") == (words[4], words[6]), (curve, final)
    assert "misses the goal" in final[0] and stdout.splitlines()[-1].startswith("SUMMARY demo")
    assert "goal NOT met for seeds 1" in stdout
    metrics = json.loads((tmp_path / "seed1" / "metrics.json").read_text())
    assert metrics["seed"] == 1 and metrics["steps"] == 2 and metrics["median_step_seconds"] > 0


def test_bench_demo_applies_and_records_its_overrides(tmp_path):
    # A lever of the recipe goes to every seed's model and schedule, and the run says so.
    stdout, _ = _run_quick("bench_demo.py", "--seeds", "0", "--out", str(tmp_path),
                           "--set", "image_min_side=96", "--set", "image_max_side=96",
                           "--train-set", "warmup_steps=1", "--train-set", "learning_rate=0.002")
    assert "overrides: model {'image_min_side': 96, 'image_max_side': 96}, train " \
           "{'warmup_steps': 1, 'learning_rate': 0.002}" in stdout
    run = tmp_path / "seed0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["overrides"] == {"model": {"image_min_side": 96, "image_max_side": 96},
                                    "train": {"warmup_steps": 1, "learning_rate": 0.002}}
    config = json.loads((run / "config.json").read_text())
    assert '"image_min_side": 96' in json.dumps(config) and '"warmup_steps": 1' in json.dumps(config)
    assert "preset with image_min_side=96, image_max_side=96, warmup_steps=1, learning_rate=0.002" \
        in (run / "report.md").read_text()


def test_bench_demo_rejects_an_unknown_setting_before_training(tmp_path):
    done = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "bench_demo.py"), "--quick",
                           "--out", str(tmp_path), "--train-set", "warmup=200"],
                          cwd=BENCHMARKS, env=subprocess_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0 and "--train-set warmup: not a training setting" in done.stderr
    assert "warmup_steps" in done.stderr and not any(tmp_path.iterdir())
