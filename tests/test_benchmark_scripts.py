"""The benchmark scripts keep running as the library changes: ``profile_stages.py`` once broke
silently when the model's stages took a new argument.  A ``--quick`` run (tiny sizes, a few
repeats: seconds) only checks that the script works and prints its whole table, not speed."""
import os
import subprocess
import sys

from helpers.reliability import subprocess_env

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
STAGES = ("backbone", "rpn_head", "anchors", "proposals", "roi_pool", "roi_head", "predictor",
          "postprocess", "postprocess (all pass)", "sum of stages", "model (tf.function)", "floor")


def test_profile_stages_quick_prints_every_stage():
    done = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "profile_stages.py"),
                           "--config", "small", "--quick"], cwd=BENCHMARKS, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split("|")[1].strip() for line in done.stdout.splitlines() if line.startswith("| ")]
    assert set(STAGES) <= set(rows), rows


def test_bench_optimizer_quick_prints_both_optimizers_and_the_ratio():
    done = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "bench_optimizer.py"),
                           "--configs", "small", "--quick"], cwd=BENCHMARKS, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [[c.strip() for c in line.split("|")[1:3]] for line in done.stdout.splitlines()
            if line.startswith("| small")]
    assert [r[1] for r in rows] == ["keras", "fused", "keras / fused"], rows
    assert "small: keras / fused" in done.stdout


def test_profile_ops_quick_prints_the_parts_of_the_step():
    done = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "profile_ops.py"), "--quick"],
                          cwd=BENCHMARKS, env=subprocess_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split("|")[1].strip() for line in done.stdout.splitlines() if line.startswith("| ")]
    assert {"grad:small_backbone", "small_backbone", "rpn_head", "optimizer"} <= set(rows), rows
    assert "ResourceApplyAdam" in rows, rows          # the preset's optimizer is the fused one
    assert "SUMMARY op time per step" in done.stdout
