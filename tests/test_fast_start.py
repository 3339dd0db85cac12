"""Fast starts: ``detect`` traces without AutoGraph (same detections, a fallback to AutoGraph
for a model that needs it), the batcher's idle work, and ``frcnn serve``'s background
warm-up (the port opens at once, ``/healthz`` says "warming" until every canvas is traced,
then "ok", and no request retraces after that).

Timings are not tested here: benchmarks/bench_startup.py measures them (its ``--quick`` run
is checked in test_benchmark_scripts.py).
"""
import io
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
from fastapi.testclient import TestClient
from PIL import Image

from frcnn_lib import cli, detect
from frcnn_lib.serve import Batcher, ServeSettings, create_app, warm_up_steps
from helpers.synthetic import built_tiny_model, make_batch


@pytest.fixture(scope="module")
def model():
    return built_tiny_model(detections_score_threshold=0.0)


@pytest.fixture(scope="module")
def images():
    batch, _ = make_batch()
    base = batch[0].astype(np.uint8)                                       # 64 x 96, landscape
    portrait = np.ascontiguousarray(batch[1].astype(np.uint8).transpose(1, 0, 2))
    return [base, portrait]


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def _assert_same(a, b):
    for key in ("boxes", "scores", "labels"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# ----------------------------------------------------------------------------- detect
def test_detect_traces_without_autograph_and_gives_autographs_detections(model, images):
    model._frcnn_detect_fn = None
    plain = model.detect(images[0])
    assert model._frcnn_detect_fn[2] is False            # traced without AutoGraph
    detect._serving_function(model, autograph=True)      # the same graph, converted
    assert model._frcnn_detect_fn[2] is True
    converted = model.detect(images[0])
    assert len(plain["scores"]) > 0
    _assert_same(plain, converted)
    model._frcnn_detect_fn = None


def test_detect_falls_back_to_autograph_for_python_control_flow_on_tensors(model, images,
                                                                          monkeypatch):
    """A learner's part or a custom backbone may branch in Python on a tensor: without
    AutoGraph that trace fails, so detect traces again with it, once."""
    model._frcnn_detect_fn = None
    reference = model.detect(images[0])
    original = model.detect_padded

    def branching(images, image_sizes=None, training=False, portable=None):
        if tf.reduce_min(images) < -1.0:   # a Python `if` on a tensor: needs AutoGraph
            images = images * 0.0
        return original(images, image_sizes, training, portable)

    monkeypatch.setattr(model, "detect_padded", branching)
    model._frcnn_detect_fn = None
    got = model.detect(images[0])
    assert model._frcnn_detect_fn[2] is True
    _assert_same(got, reference)
    again = model.detect(images[0])            # the converted function is kept
    assert model._frcnn_detect_fn[1].experimental_get_tracing_count() == 1
    _assert_same(again, reference)
    monkeypatch.undo()
    model._frcnn_detect_fn = None


# ----------------------------------------------------------------------------- batcher
def test_idle_work_runs_when_no_request_waits_and_requests_go_first():
    gate, order = threading.Event(), []

    def idle(name, wait=False):
        def work():
            if wait:
                gate.wait(10)
            order.append(name)
        return work

    def failing():
        raise RuntimeError("trace failed")

    batcher = Batcher(lambda images: [order.append(("request", len(images))) or 0] * len(images),
                      max_batch=4, queue_size=4,
                      idle_work=[idle("warm 1", wait=True), failing, idle("warm 3")]).start()
    try:
        assert batcher.idle_left == 3
        with batcher.admit(2) as ticket:           # arrives while "warm 1" runs
            future = ticket.submit(["a", "b"])
        time.sleep(0.05)
        assert not future.done() and batcher.idle_left == 3
        gate.set()
        future.result(10)
        deadline = time.monotonic() + 10
        while batcher.idle_left and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        batcher.close()
    assert order == ["warm 1", ("request", 2), "warm 3"]   # the request before the rest
    assert batcher.idle_left == 0
    assert batcher.idle_errors == ["RuntimeError: trace failed"]


def test_closing_drops_idle_work_left():
    gate = threading.Event()
    ran = []
    batcher = Batcher(lambda images: images, idle_work=[lambda: gate.wait(10), lambda: ran.append(1)])
    batcher.start()
    time.sleep(0.05)
    closer = threading.Thread(target=batcher.close)
    closer.start()
    gate.set()
    closer.join(10)
    assert not closer.is_alive() and ran == [] and batcher.idle_left == 0


# ----------------------------------------------------------------------------- serve
def test_warm_up_steps_cover_both_canvases_and_batch_sizes(model):
    assert len(warm_up_steps(model, max_batch=4)) == 4     # (64, 96) and (96, 64), 1 and 2 images
    assert len(warm_up_steps(model, max_batch=1)) == 2


def test_background_warm_up_answers_at_once_and_says_warming_then_ok(model, images):
    """The first request is served while warm-up steps are left; /healthz is honest about
    them; once it says "ok" no request (any canvas, any batch size) retraces."""
    gate = threading.Event()
    calls = []

    class Gated:
        """The model, its first detect (the first warm-up step) held until ``gate``."""

        def __getattr__(self, name):
            return getattr(model, name)

        def detect(self, batch, batch_size=4):
            if not calls:
                calls.append("held")
                gate.wait(20)
            return model.detect(batch, batch_size=batch_size)

    model._frcnn_detect_fn = None
    settings = ServeSettings(max_batch=4, queue_size=8)
    with pytest.raises(ValueError, match="warm"):
        create_app(model, settings, warm="later")
    app = create_app(Gated(), settings, warm="background")
    with TestClient(app) as client:
        health = client.get("/healthz").json()
        assert health["status"] == "warming" and health["warm_up"]["steps_left"] == 4, health
        answer = {}
        poster = threading.Thread(target=lambda: answer.update(client.post(
            "/v1/detect", files={"file": ("base.png", _png(images[0]), "image/png")}).json()))
        poster.start()
        time.sleep(0.2)
        gate.set()
        poster.join(60)
        reference = model.detect(images[0])
        np.testing.assert_allclose(answer["boxes"], reference["boxes"], atol=0.006)
        assert answer["labels"] == reference["labels"].tolist()
        deadline = time.monotonic() + 60
        while client.get("/healthz").json()["status"] != "ok" and time.monotonic() < deadline:
            time.sleep(0.05)
        health = client.get("/healthz").json()
        assert health["status"] == "ok" and health["warm_up"] == {"steps_left": 0, "errors": []}
        traces = model._frcnn_detect_fn[1].experimental_get_tracing_count()
        for image in images:
            for n in (1, 3, 4):
                files = [("files", ("x.png", _png(image), "image/png"))] * n
                assert client.post("/v1/detect/batch", files=files).status_code == 200
        assert model._frcnn_detect_fn[1].experimental_get_tracing_count() == traces


def _call(argv):
    try:
        return cli.main([str(a) for a in argv])
    except SystemExit as stop:
        return stop.code


@pytest.mark.parametrize("flag, warm", [([], "background"), (["--warm-first"], True)])
def test_serve_command_warms_in_the_background_unless_warm_first(model, tmp_path, monkeypatch,
                                                                 capsys, flag, warm):
    import socket

    import uvicorn

    from frcnn_lib.serve import app as app_module

    path = tmp_path / "tiny.keras"
    model.save(path)
    seen = {}
    original = app_module.create_app

    def spy(*args, **kwargs):
        seen["warm"] = kwargs.get("warm")
        return original(*args, **kwargs)

    monkeypatch.setattr(app_module, "create_app", spy)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert _call(["serve", "--model", path, "--port", port, "--quiet", *flag]) == 0
    assert seen["warm"] == warm and seen["port"] == port
    out = capsys.readouterr().out
    assert ("warming up, then Ctrl-C" in out) == (warm is True), out
