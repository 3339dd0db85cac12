"""``frcnn train --strategy multiworker``: two worker processes of a
``MultiWorkerMirroredStrategy`` cluster on 127.0.0.1, a tiny model, 2 steps, then a resumed
run of 2 more.

Each worker is tests/helpers/multiworker_check.py (TF_CONFIG must be set before TensorFlow
starts); it prints one ``RESULT {json}`` line and the assertions are here.  Every process
is bounded by a timeout and both are killed if either fails or hangs (a worker whose peer
died waits for it forever).  Loopback only: the ports are free ports of 127.0.0.1.
"""
import json
import os
import socket
import subprocess
import sys
import time

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helpers", "multiworker_check.py")
TIMEOUT_S = 300


def _free_ports(n):
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _run_cluster(out, *extra):
    """Start both workers, wait for both (killing both on a failure or the timeout),
    return their RESULT dicts by task index."""
    ports = ",".join(str(p) for p in _free_ports(2))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "-1"}
    env.pop("TF_CONFIG", None)
    procs = [subprocess.Popen([sys.executable, HELPER, "--index", str(i), "--ports", ports,
                               "--out", str(out), *extra],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(2)]
    deadline = time.monotonic() + TIMEOUT_S
    outputs = [None, None]
    try:
        while any(o is None for o in outputs):
            for i, proc in enumerate(procs):
                if outputs[i] is None and proc.poll() is not None:
                    outputs[i] = proc.communicate()
                    if proc.returncode != 0:
                        raise AssertionError(f"worker {i} exited with {proc.returncode}\n--- stdout\n"
                                             f"{outputs[i][0][-3000:]}\n--- stderr\n{outputs[i][1][-6000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the cluster did not finish in {TIMEOUT_S} s")
            time.sleep(0.2)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    results = []
    for stdout, _ in outputs:
        lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
        assert lines, stdout[-3000:]
        results.append(json.loads(lines[-1][len("RESULT "):]))
    return results


def test_two_workers_on_localhost_train_shard_checkpoint_and_resume(tmp_path):
    out = tmp_path / "run"
    chief, worker = _run_cluster(out, "--epochs", "1")
    for r in (chief, worker):
        assert r["exit"] == 0 and r["replicas"] == 2 and r["num_images"] == 8, r

    # Each worker decoded only its own shard (records i::2 of the 8 images).
    assert chief["read"] == [0, 2, 4, 6] and worker["read"] == [1, 3, 5, 7], (chief["read"], worker["read"])

    # Same start, same updates: the weights are identical on both workers, and they moved.
    assert chief["start_digest"] == worker["start_digest"]
    assert chief["end_digest"] == worker["end_digest"]
    assert chief["end_digest"] != chief["start_digest"]
    assert chief["iterations_start"] == 0 and chief["iterations_end"] == worker["iterations_end"] == 2
    assert chief["losses"] == worker["losses"]  # logs are the mean over the workers

    # Only the chief wrote the run folder; the other worker wrote to a temp dir, now gone.
    assert chief["run_out"] == str(out) and chief["run_out_exists_after"]
    assert worker["run_out"] != str(out) and not worker["run_out_exists_after"]
    assert sorted(os.listdir(out / "checkpoints")) == ["last.keras", "state.json"]
    assert json.loads((out / "checkpoints" / "state.json").read_text()) == {"epoch": 1, "step": 2, "epoch_step": 0}
    assert (out / "model.keras").is_file()

    # A resumed run starts from the chief's checkpoint on both workers and continues.
    chief2, worker2 = _run_cluster(out, "--epochs", "2", "--resume")
    for r in (chief2, worker2):
        assert r["exit"] == 0, r
        assert r["start_digest"] == chief["end_digest"], "resumed from other weights"
        assert r["iterations_start"] == 2 and r["iterations_end"] == 4, r
    assert chief2["end_digest"] == worker2["end_digest"] != chief["end_digest"]
    assert json.loads((out / "checkpoints" / "state.json").read_text()) == {"epoch": 2, "step": 4, "epoch_step": 0}
    assert len((out / "history.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs
    assert not worker2["run_out_exists_after"]


def test_multiworker_without_or_with_a_bad_tf_config_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    from frcnn_lib import cli

    argv = ["train", "--strategy", "multiworker", "--out", str(tmp_path / "run"), "--quiet"]
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("frcnn: error: --strategy multiworker: the TF_CONFIG") and "\n" not in err, err
    for bad, words in (("{not json", "not a valid cluster description"),
                       ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "task"),
                       ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
                        "task worker 3 is not in the cluster")):
        monkeypatch.setenv("TF_CONFIG", bad)
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("frcnn: error: TF_CONFIG: ") and words in err and "\n" not in err, (bad, err)


def test_strategy_mirrored_trains_through_the_command_line(tmp_path, capsys):
    """``--strategy mirrored`` (here: MirroredStrategy over this machine's one CPU) builds,
    trains and saves inside the strategy's scope."""
    import keras

    from frcnn_lib import cli

    out = tmp_path / "run"
    argv = ["train", "--strategy", "mirrored", "--data", "shapes", "--train-images", "4",
            "--batch-size", "2", "--epochs", "1", "--out", str(out), "--quiet"]
    tiny = dict(anchor_scales=[16.0, 32.0, 64.0], rpn_channels=16, rpn_pre_nms_top_n_train=200,
                rpn_post_nms_top_n_train=64, roi_batch_size=16, roi_head_units=32,
                image_min_side=96, image_max_side=96)
    argv += [f"--set={k}={json.dumps(v)}" for k, v in tiny.items()]
    assert cli.main(argv) == 0, capsys.readouterr().err[-2000:]
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert state == {"epoch": 1, "step": 2, "epoch_step": 0}
    model = keras.models.load_model(out / "model.keras")
    assert int(model.optimizer.iterations.numpy()) == 2
