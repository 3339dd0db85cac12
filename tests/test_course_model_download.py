"""frcnn_lib.course.course_model: the local file, the pinned download (against a local HTTP
server), and the stated stand-in when the download is unavailable."""
import hashlib
import http.server
import importlib.util
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from frcnn_lib import FasterRCNN
from frcnn_lib.course import trained_model
from frcnn_lib.course.trained_model import course_model, course_model_record, download_course_model

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(backbone="small", anchor_scales=(16, 32), anchor_ratios=(1.0,), image_min_side=64,
            image_max_side=64, rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=10,
            roi_head_units=32, rpn_channels=16, detections_score_threshold=0.0)
IMAGE = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)


class Served:
    """A folder served over HTTP on 127.0.0.1 in a thread, counting the requests per path."""

    def __init__(self, folder):
        requests = self.requests = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def send_head(self):
                requests.append((self.command, self.path))
                return super().send_head()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny saved detector, its sha256 and its detections of IMAGE, served over HTTP."""
    folder = tmp_path_factory.mktemp("release")
    model = FasterRCNN(3, **TINY)
    model.build()
    path = folder / "frcnn-course-model.keras"
    model.save(path)
    served = Served(folder)
    yield {"path": path, "sha": hashlib.sha256(path.read_bytes()).hexdigest(),
           "detections": model.detect(IMAGE), "server": served}
    served.close()


@pytest.fixture
def env(monkeypatch, tmp_path, tiny):
    """Overrides pointing at the served tiny model; a working directory outside any checkout."""
    monkeypatch.setenv(trained_model.URL_ENV, f"{tiny['server'].url}/frcnn-course-model.keras")
    monkeypatch.setenv(trained_model.SHA256_ENV, tiny["sha"])
    work = tmp_path / "colab"
    work.mkdir()
    monkeypatch.chdir(work)
    tiny["server"].requests.clear()
    return {"work": work, "cache": tmp_path / "keras_cache", **tiny}


def stand_in_stub(calls):
    def train(fast=False):
        calls.append(fast)
        return "stand-in model"
    return train


def no_stand_in(fast=False):
    raise AssertionError("the stand-in was trained although the model was available")


def assert_same_detections(model, expected):
    got = model.detect(IMAGE)
    assert len(got["boxes"]) > 0
    np.testing.assert_array_equal(got["labels"], expected["labels"])
    np.testing.assert_allclose(got["scores"], expected["scores"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["boxes"], expected["boxes"], atol=1e-3)


def test_downloads_once_then_loads_from_the_cache(env):
    lines = []
    model, line = course_model(fast=False, cache_dir=env["cache"], train_stand_in=no_stand_in, log=lines.append)
    assert lines == [line]
    assert f"{env['server'].url}/frcnn-course-model.keras" in line
    assert f"sha256 {env['sha'][:12]}" in line and "MB" in line
    assert_same_detections(model, env["detections"])
    cached = list((env["cache"] / trained_model.CACHE_SUBDIR).iterdir())
    assert [p.name for p in cached] == [f"course_model-{env['sha'][:12]}.keras"]
    assert [c for c in env["server"].requests if c[0] == "GET"] == [("GET", "/frcnn-course-model.keras")]
    seen = len(env["server"].requests)

    model, line = course_model(fast=True, cache_dir=env["cache"], train_stand_in=no_stand_in, log=lambda _: None)
    assert len(env["server"].requests) == seen, "a cached file with the pinned sha256 was fetched again"
    assert_same_detections(model, env["detections"])   # fast mode: the same asset


def test_a_sha256_mismatch_keeps_no_file_and_trains_the_stand_in(env, monkeypatch):
    monkeypatch.setenv(trained_model.SHA256_ENV, "0" * 64)
    calls, lines = [], []
    model, line = course_model(fast=False, cache_dir=env["cache"], train_stand_in=stand_in_stub(calls),
                               log=lines.append)
    assert model == "stand-in model" and calls == [False] and lines == [line]
    assert "cannot be downloaded" in line and "does not have the pinned sha256 000000000000" in line
    assert f"training a {trained_model.STAND_IN_STEPS}-step stand-in (about" in line
    assert "min on a 2-core CPU; its detections are weaker than the course model's" in line
    folder = env["cache"] / trained_model.CACHE_SUBDIR
    assert not folder.exists() or not any(folder.iterdir()), "a file with the wrong sha256 was kept"


def test_a_corrupt_cached_file_is_downloaded_again(env):
    folder = env["cache"] / trained_model.CACHE_SUBDIR
    folder.mkdir(parents=True)
    (folder / f"course_model-{env['sha'][:12]}.keras").write_bytes(b"PK truncated")
    model, _ = course_model(cache_dir=env["cache"], train_stand_in=no_stand_in, log=lambda _: None)
    assert_same_detections(model, env["detections"])
    assert ("GET", "/frcnn-course-model.keras") in env["server"].requests


def test_http_404_says_so_and_trains_the_fast_stand_in(env, monkeypatch):
    monkeypatch.setenv(trained_model.URL_ENV, f"{env['server'].url}/no-such-asset.keras")
    calls = []
    model, line = course_model(fast=True, cache_dir=env["cache"], train_stand_in=stand_in_stub(calls),
                               log=lambda _: None)
    assert calls == [True] and "HTTP 404" in line
    assert f"training a {trained_model.STAND_IN_STEPS_FAST}-step stand-in (a few seconds" in line


def test_a_server_that_is_down_fails_fast(env, monkeypatch):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()                                   # nothing listens there now
    monkeypatch.setenv(trained_model.URL_ENV, f"http://127.0.0.1:{port}/m.keras")
    start = time.perf_counter()
    _, line = course_model(cache_dir=env["cache"], train_stand_in=stand_in_stub([]), log=lambda _: None)
    assert time.perf_counter() - start < 5
    assert f"cannot reach http://127.0.0.1:{port}/m.keras" in line and "stand-in" in line


def test_a_connection_that_never_answers_times_out(env, monkeypatch):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)                                 # accepts the connection, never answers
    try:
        monkeypatch.setenv(trained_model.URL_ENV, f"http://127.0.0.1:{sock.getsockname()[1]}/m.keras")
        monkeypatch.setattr(trained_model, "DOWNLOAD_TIMEOUT_S", 1)
        start = time.perf_counter()
        _, line = course_model(cache_dir=env["cache"], train_stand_in=stand_in_stub([]), log=lambda _: None)
        assert time.perf_counter() - start < 5
        assert "cannot reach" in line and "timed out" in line
    finally:
        sock.close()


def test_download_switched_off(env, monkeypatch):
    monkeypatch.setenv(trained_model.URL_ENV, "off")
    _, line = course_model(cache_dir=env["cache"], train_stand_in=stand_in_stub([]), log=lambda _: None)
    assert "download switched off (FRCNN_COURSE_MODEL_URL=off)" in line
    assert env["server"].requests == []


def test_the_local_file_of_notebook_09_comes_first(env):
    checkout = env["work"] / "repo"
    (checkout / "notebooks").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("")
    local = checkout / "runs" / "course" / "model_fast.keras"
    local.parent.mkdir(parents=True)
    local.write_bytes(env["path"].read_bytes())
    model, line = course_model(fast=True, start=checkout / "notebooks", cache_dir=env["cache"],
                               train_stand_in=no_stand_in, log=lambda _: None)
    assert line.startswith("loaded the course's model from") and "trained by notebook 09" in line
    assert_same_detections(model, env["detections"])
    assert env["server"].requests == []
    # without its fast-mode file, a checkout downloads like Colab does
    local.unlink()
    model, line = course_model(fast=True, start=checkout, cache_dir=env["cache"], train_stand_in=no_stand_in,
                               log=lambda _: None)
    assert "sha256" in line


def test_download_raises_one_line_reasons(env, monkeypatch):
    monkeypatch.setenv(trained_model.SHA256_ENV, "f" * 64)
    with pytest.raises(trained_model.DownloadUnavailable) as err:
        download_course_model(env["cache"])
    assert "\n" not in str(err.value)


def test_the_stand_in_is_a_working_detector_and_is_not_saved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = trained_model.train_stand_in(fast=True, steps=2)
    assert model.settings["anchor_scales"] == (16, 32, 64, 96)        # the shapes_cpu preset
    assert model.num_classes == 5
    out = model.detect(np.zeros((160, 160, 3), np.uint8))
    assert set(out) >= {"boxes", "scores", "labels"} and out["boxes"].shape[1:] == (4,)
    assert list(tmp_path.rglob("*.keras")) == []


def test_the_pinned_record_points_at_the_release_of_course_ref(monkeypatch):
    monkeypatch.delenv(trained_model.URL_ENV, raising=False)
    monkeypatch.delenv(trained_model.SHA256_ENV, raising=False)
    spec = importlib.util.spec_from_file_location("setup_cell", ROOT / "notebooks/_tools/setup_cell.py")
    cell = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cell)
    record = course_model_record()
    assert record["url"] == f"{cell.COURSE_REPO}/releases/download/{cell.COURSE_REF}/{record['file']}"
    assert record["repo"] == cell.COURSE_REPO and record["ref"] == cell.COURSE_REF
    assert len(record["sha256"]) == 64 and int(record["sha256"], 16) >= 0
    assert record["size"] > 1_000_000                   # the shapes_cpu model, not a test file


def test_publish_script_pins_a_model_and_prints_the_upload(tiny, tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("publish", ROOT / "notebooks/_tools/publish_course_model.py")
    publish = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(publish)
    record = tmp_path / "course_model.json"
    monkeypatch.setattr(publish, "RECORD", record)
    monkeypatch.setattr(publish, "ROOT", tmp_path)
    assert publish.main(["--model", str(tiny["path"]), "--dry-run"]) == 0
    written = json.loads(record.read_text())
    assert written["sha256"] == tiny["sha"] and written["size"] == tiny["path"].stat().st_size
    out = capsys.readouterr().out
    assert "not uploaded (--dry-run)" in out and "gh release upload v" in out and "--clobber" in out
    assert publish.main(["--model", str(tmp_path / "missing.keras")]) == 1
