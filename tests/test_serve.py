"""``frcnn serve``: the JSON API with good and bad uploads, the micro-batcher, the queue bound
under load, warm-up, and the command line.

The API runs in-process (FastAPI's TestClient) around a tiny detector built from
``helpers.synthetic.TINY`` with ``detections_score_threshold=0``, so that every image gets
detections; the reference for each answer is ``model.detect`` called directly on the same
pixels.  The load test runs a real uvicorn on 127.0.0.1 (a free port) for a few seconds.
"""
import io
import socket
import struct
import threading
import time
import zlib

import httpx2 as httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from frcnn_lib import cli
from frcnn_lib.serve import (BadImage, Batcher, Busy, ServeSettings, create_app, decode_image,
                             warm_up)
from helpers.synthetic import built_tiny_model, make_batch, tiny_model

KEYS = {"filename", "width", "height", "boxes", "scores", "labels", "class_names",
        "category_ids", "time_ms", "model_ms", "queue_ms", "batch_images"}


# ----------------------------------------------------------------------------- uploads
def encode(array, fmt="PNG", **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def png_declaring(width, height):
    """A valid-looking PNG of ~60 bytes whose header declares ``width x height`` RGB pixels
    (one compressed row of data: a decoder that trusted the header would allocate W*H*3)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) +
            chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def images():
    """Three uint8 RGB images: the synthetic batch's first (64 x 96, the model's own size),
    a larger landscape one and a portrait one (resized by detect, boxes scaled back)."""
    batch, _ = make_batch()
    base = batch[0].astype(np.uint8)
    big = np.ascontiguousarray(np.repeat(np.repeat(base, 2, axis=0), 2, axis=1)[:, :150])
    portrait = np.ascontiguousarray(batch[1].astype(np.uint8).transpose(1, 0, 2))
    return {"base.png": base, "big.png": big, "portrait.png": portrait}


def test_decode_image_round_trips_png_and_reads_jpeg_gray_and_rgba(images):
    base = images["base.png"]
    np.testing.assert_array_equal(decode_image(encode(base)), base)
    jpeg = decode_image(encode(base, "JPEG", quality=95))
    assert jpeg.shape == base.shape and jpeg.dtype == np.uint8
    assert np.abs(jpeg.astype(int) - base).mean() < 8
    gray = decode_image(encode(base[..., 0]))
    assert gray.shape == base.shape and np.array_equal(gray[..., 2], base[..., 0])
    rgba = np.dstack([base, np.zeros(base.shape[:2], np.uint8)])   # fully transparent: white
    assert np.all(decode_image(encode(rgba)) == 255)


@pytest.mark.parametrize("data, status, words", [
    (b"", 400, "empty"),
    (b"this is not an image", 415, "not an image"),
    (b"%PDF-1.4\n" + bytes(300), 415, "not an image"),
    (png_declaring(100_000, 100_000), 413, "10000000000 pixels"),   # PIL's guard fires first
    (png_declaring(6000, 5000), 413, "6000 x 5000 = 30000000 pixels"),   # ours: 30 MP > 25
], ids=["empty", "text", "pdf", "bomb-100000x100000", "over-25-megapixels"])
def test_decode_image_refuses_bad_uploads_with_their_status(data, status, words):
    with pytest.raises(BadImage) as caught:
        decode_image(data, "x.png")
    assert caught.value.status == status
    assert words in str(caught.value) and str(caught.value).startswith("x.png: ")


def test_decompression_bomb_is_refused_from_the_header_without_decoding(monkeypatch):
    # If decoding were attempted, load() would be called: make that fail loudly.
    def load(self):
        raise AssertionError("pixels were decoded")
    monkeypatch.setattr(Image.Image, "load", load)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", load)
    data = png_declaring(100_000, 100_000)
    assert len(data) < 100
    with pytest.raises(BadImage) as caught:
        decode_image(data, "bomb.png")
    assert caught.value.status == 413 and "limit of 25 megapixels" in str(caught.value)
    # Below PIL's own guard, ours refuses from the header too.
    with pytest.raises(BadImage, match="2000 x 1000 = 2000000 pixels"):
        decode_image(png_declaring(2000, 1000), "big.png", max_pixels=1_000_000)
    assert Image.MAX_IMAGE_PIXELS == 89478485        # PIL's global guard is left alone


def test_truncated_images_are_400(images):
    data = encode(images["big.png"])
    for cut in (40, len(data) // 2, len(data) - 200):      # header, middle, last rows
        with pytest.raises(BadImage) as caught:
            decode_image(data[:cut], "cut.png")
        assert caught.value.status == 400, (cut, caught.value)
    jpeg = encode(images["big.png"], "JPEG")
    with pytest.raises(BadImage):
        decode_image(jpeg[: len(jpeg) // 2], "cut.jpg")


# ----------------------------------------------------------------------------- batcher
class Recorder:
    """A ``detect`` that records the size of each call and can hold the first one."""

    def __init__(self, hold_first=False):
        self.calls, self.release = [], threading.Event()
        self.started = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, images):
        self.calls.append(list(images))
        self.started.set()
        self.release.wait(10)
        return [f"result of {image}" for image in images]


def _submit(batcher, images):
    with batcher.admit(len(images)) as ticket:
        return ticket.submit(images)


def test_batcher_groups_waiting_requests_up_to_max_batch_and_routes_results():
    detect = Recorder(hold_first=True)
    batcher = Batcher(detect, max_batch=4, queue_size=16, max_wait_ms=0).start()
    try:
        first = _submit(batcher, ["a"])
        assert detect.started.wait(5)            # the worker is busy with "a"
        futures = [_submit(batcher, [f"r{i}"]) for i in range(5)] + [_submit(batcher, ["x", "y"])]
        assert batcher.pending == 7
        detect.release.set()
        outputs = [f.result(5) for f in [first] + futures]
    finally:
        batcher.close()
    # Oldest first; a batch stops before a request that would overflow max_batch.
    assert [len(c) for c in detect.calls] == [1, 4, 3]
    assert detect.calls[1] == ["r0", "r1", "r2", "r3"] and detect.calls[2] == ["r4", "x", "y"]
    for images, (results, info) in zip([["a"]] + [[f"r{i}"] for i in range(5)] + [["x", "y"]], outputs):
        assert results == [f"result of {image}" for image in images]
    assert outputs[-1][1]["batch_images"] == 3 and outputs[1][1]["batch_images"] == 4
    assert batcher.pending == 0 and batcher.stats["largest_batch"] == 4


def test_batcher_without_batching_calls_once_per_request_and_alone_for_large_requests():
    detect = Recorder(hold_first=True)
    batcher = Batcher(detect, max_batch=1, queue_size=16, max_wait_ms=50).start()
    try:
        futures = [_submit(batcher, ["a"])]
        assert detect.started.wait(5)
        futures += [_submit(batcher, ["b"]), _submit(batcher, ["c", "d", "e"]), _submit(batcher, ["f"])]
        detect.release.set()
        for f in futures:
            f.result(5)
    finally:
        batcher.close()
    assert detect.calls == [["a"], ["b"], ["c", "d", "e"], ["f"]]


def test_batcher_waits_max_wait_ms_for_a_fuller_batch():
    detect = Recorder()
    batcher = Batcher(detect, max_batch=2, queue_size=4, max_wait_ms=2000).start()
    try:
        first = _submit(batcher, ["a"])
        time.sleep(0.2)                          # well inside the 2 s wait
        second = _submit(batcher, ["b"])
        first.result(5), second.result(5)
    finally:
        batcher.close()
    assert detect.calls == [["a", "b"]]


def test_batcher_queue_bound_raises_busy_and_frees_slots_of_failed_requests():
    detect = Recorder(hold_first=True)
    batcher = Batcher(detect, max_batch=1, queue_size=2, max_wait_ms=0).start()
    try:
        running = _submit(batcher, ["a"])       # taken by the worker: no longer counts
        assert detect.started.wait(5)
        waiting = _submit(batcher, ["b"])
        with pytest.raises(Busy) as caught:
            batcher.admit(2)
        assert caught.value.retry_after >= 1
        with pytest.raises(ZeroDivisionError):  # a request failing while decoding
            with batcher.admit(1):
                1 / 0
        assert batcher.pending == 1
        with batcher.admit(1) as ticket:        # its slot was given back
            last = ticket.submit(["c"])
        assert batcher.pending == 2
        with pytest.raises(Busy):
            batcher.admit(1)
        detect.release.set()
        for f in (running, waiting, last):
            f.result(5)
    finally:
        batcher.close()
    assert batcher.stats["rejected"] == 2


def test_batcher_reports_model_failures_to_the_requests_and_keeps_running():
    calls = []

    def detect(images):
        calls.append(images)
        if len(calls) == 1:
            raise RuntimeError("model failed")
        return images

    batcher = Batcher(detect, max_batch=2, queue_size=4, max_wait_ms=0).start()
    try:
        with pytest.raises(RuntimeError, match="model failed"):
            _submit(batcher, ["a"]).result(5)
        assert _submit(batcher, ["b"]).result(5)[0] == ["b"]
    finally:
        batcher.close()


# ----------------------------------------------------------------------------- the API
@pytest.fixture(scope="module")
def model():
    return built_tiny_model(detections_score_threshold=0.0)


@pytest.fixture(scope="module")
def served(model):
    """``(client, app, traces_after_warm_up)`` around the tiny model, limits made small."""
    settings = ServeSettings(max_upload_mb=0.25, max_megapixels=1.0, queue_size=8, max_batch=4,
                             max_wait_ms=1.0, max_files=6)
    app = create_app(model, settings)
    with TestClient(app) as client:
        yield client, app, model._frcnn_detect_fn[1].experimental_get_tracing_count()


def _post(client, name, data, content_type="image/png"):
    return client.post("/v1/detect", files={"file": (name, data, content_type)})


def _assert_matches_detect(answer, model, image, name):
    assert set(answer) == KEYS, answer
    assert answer["filename"] == name
    assert (answer["height"], answer["width"]) == image.shape[:2]
    reference = model.detect(image)
    n = len(reference["scores"])
    assert n > 0 and len(answer["scores"]) == n
    np.testing.assert_allclose(answer["boxes"], reference["boxes"], atol=0.006)
    np.testing.assert_allclose(answer["scores"], reference["scores"], atol=6e-5)
    assert answer["labels"] == reference["labels"].tolist()
    assert answer["class_names"] == [f"class {i}" for i in answer["labels"]]
    assert answer["category_ids"] == answer["labels"]
    boxes = np.array(answer["boxes"])
    assert np.all(boxes >= 0) and np.all(boxes[:, [0, 2]] <= image.shape[1]) and \
        np.all(boxes[:, [1, 3]] <= image.shape[0])
    assert answer["time_ms"] >= answer["model_ms"] > 0 and 1 <= answer["batch_images"] <= 4


@pytest.mark.parametrize("name", ["base.png", "big.png", "portrait.png"])
def test_detect_answers_boxes_in_the_images_own_pixels(served, model, images, name):
    client, _, _ = served
    response = _post(client, name, encode(images[name]))
    assert response.status_code == 200, response.text
    _assert_matches_detect(response.json(), model, images[name], name)


def test_detect_reads_jpeg(served, model, images):
    client, _, _ = served
    data = encode(images["big.png"], "JPEG", quality=90)
    response = _post(client, "photo.jpg", data, "image/jpeg")
    assert response.status_code == 200, response.text
    _assert_matches_detect(response.json(), model, decode_image(data), "photo.jpg")


def test_batch_answers_each_image_in_order(served, model, images):
    client, _, _ = served
    names = ["portrait.png", "base.png", "big.png"]
    response = client.post("/v1/detect/batch",
                           files=[("files", (n, encode(images[n]), "image/png")) for n in names])
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"results", "time_ms"} and len(body["results"]) == 3
    for name, answer in zip(names, body["results"]):
        _assert_matches_detect(answer, model, images[name], name)


def test_no_request_retraces_after_warm_up(served, images):
    client, app, traces = served
    assert traces >= 1
    for name in ("base.png", "portrait.png"):
        for n in (1, 2, 3, 4, 5):
            files = [("files", (name, encode(images[name]), "image/png"))] * n
            assert client.post("/v1/detect/batch", files=files).status_code == 200
    assert app.state.model._frcnn_detect_fn[1].experimental_get_tracing_count() == traces


def test_warm_up_traces_every_canvas_and_batch_shape():
    fresh = tiny_model()
    warm_up(fresh, max_batch=3)
    traced = fresh._frcnn_detect_fn[1].experimental_get_tracing_count()
    for shape in ((64, 96, 3), (96, 64, 3), (40, 200, 3)):
        fresh.detect([np.zeros(shape, np.uint8)] * 3, batch_size=3)
    assert fresh._frcnn_detect_fn[1].experimental_get_tracing_count() == traced


def _assert_error(response, status, *words):
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    assert "\n" not in body["error"] and body["error"]
    for word in words:
        assert word in body["error"], (word, body["error"])
    return body["error"]


def test_bad_uploads_get_one_line_json_errors(served, images):
    client, _, _ = served
    good = encode(images["base.png"])
    _assert_error(_post(client, "notes.txt", b"hello, world", "text/plain"), 415, "notes.txt", "not an image")
    _assert_error(_post(client, "empty.png", b""), 400, "empty.png", "empty")
    _assert_error(_post(client, "cut.png", good[: len(good) // 2]), 400, "cut.png", "truncated")
    _assert_error(_post(client, "bomb.png", png_declaring(100_000, 100_000)), 413,
                  "bomb.png", "10000000000 pixels", "megapixels")
    _assert_error(_post(client, "big.png", png_declaring(1500, 1000)), 413, "1500 x 1000", "1 megapixels")
    _assert_error(_post(client, "huge.png", b"\x89PNG" + bytes(300_000)), 413, "0.25 MB", "--max-upload-mb")
    _assert_error(client.post("/v1/detect", data={"image": "x"}), 422, "file")
    _assert_error(client.post("/v1/detect", content=b"raw bytes",
                              headers={"content-type": "application/octet-stream"}), 422, "file")
    _assert_error(client.post("/v1/detect", content=b"--xx\r\nbroken",
                              headers={"content-type": "multipart/form-data; boundary=xx"}), 422, "file")
    batch = [("files", ("a.png", good, "image/png")), ("files", ("b.txt", b"no", "text/plain"))]
    _assert_error(client.post("/v1/detect/batch", files=batch), 415, "files[1] (b.txt)")
    too_many = [("files", (f"{i}.png", good, "image/png")) for i in range(7)]
    _assert_error(client.post("/v1/detect/batch", files=too_many), 400)
    _assert_error(client.get("/v2/nothing"), 404, "GET /v2/nothing", "no such route")
    _assert_error(client.post("/healthz"), 405, "POST /healthz")
    response = client.get("/v1/detect")
    _assert_error(response, 405, "GET /v1/detect", "POST")
    assert response.headers["allow"] == "POST"
    # ... and the server is still serving, its queue empty again.
    assert _post(client, "base.png", good).status_code == 200
    assert client.get("/healthz").json()["queue"]["pending"] == 0


def test_body_over_the_limit_without_content_length_is_stopped(served):
    client, _, _ = served

    def chunks():                               # a chunked upload: no Content-Length
        yield b"--xx\r\nContent-Disposition: form-data; name=\"file\"; filename=\"s.png\"\r\n\r\n"
        for _ in range(40):
            yield bytes(10_000)
    response = client.post("/v1/detect", content=chunks(),
                           headers={"content-type": "multipart/form-data; boundary=xx"})
    _assert_error(response, 413, "--max-upload-mb")


def test_full_queue_answers_503_with_retry_after(served, images, monkeypatch):
    client, app, _ = served

    def busy(n=1):
        raise Busy(7)
    monkeypatch.setattr(app.state.batcher, "admit", busy)
    response = _post(client, "base.png", encode(images["base.png"]))
    _assert_error(response, 503, "busy")
    assert response.headers["retry-after"] == "7"


def test_model_failure_is_a_500_and_the_server_goes_on(model, images):
    class Failing:
        """The tiny model, failing its first ``detect``."""
        def __init__(self):
            self.failures = 1

        def __getattr__(self, name):
            return getattr(model, name)

        def detect(self, images, batch_size=4):
            if self.failures:
                self.failures -= 1
                raise RuntimeError("out of memory, say")
            return model.detect(images, batch_size=batch_size)

    with TestClient(create_app(Failing(), warm=False), raise_server_exceptions=False) as client:
        data = encode(images["base.png"])
        _assert_error(_post(client, "base.png", data), 500, "RuntimeError", "out of memory, say")
        assert _post(client, "base.png", data).status_code == 200


def test_class_names_and_category_ids_come_from_the_model(model, images):
    saved = model.class_names, model.category_ids
    model.class_names, model.category_ids = ["red", "green"], [17, 42]
    try:
        with TestClient(create_app(model, warm=False)) as client:
            answer = _post(client, "base.png", encode(images["base.png"])).json()
            health = client.get("/healthz").json()
    finally:
        model.class_names, model.category_ids = saved
    table = {1: ("red", 17), 2: ("green", 42)}
    assert answer["labels"]
    for label, name, cid in zip(answer["labels"], answer["class_names"], answer["category_ids"]):
        assert (name, cid) == table[label]
    assert health["model"]["class_names"] == ["red", "green"]


def test_pages_health_and_openapi(served):
    client, _, _ = served
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for needle in ('type="file"', 'type="range"', "/v1/detect", "<canvas", "drop"):
        assert needle in page.text or needle.replace("<canvas", "createElement(\"canvas\")") in page.text
    assert "http://" not in page.text and "https://" not in page.text      # no CDN
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text and "https://" not in docs.text
    spec = client.get("/openapi.json").json()
    assert {"/v1/detect", "/v1/detect/batch", "/healthz"} <= set(spec["paths"])
    detect = spec["paths"]["/v1/detect"]["post"]
    assert {"200", "400", "413", "415", "503"} <= set(detect["responses"])
    assert "multipart/form-data" in detect["requestBody"]["content"]
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["queue"]["queue_size"] == 8
    assert health["model"]["num_classes"] == 2


# ----------------------------------------------------------------------------- under load
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_server_under_load_answers_only_200_or_503(model, images):
    """8 clients for 3 s against a queue of 2: every answer is a 200 or a 503 with
    Retry-After; both occur, and the server is healthy afterwards."""
    import uvicorn

    port = _free_port()
    settings = ServeSettings(queue_size=2, max_batch=2, max_wait_ms=2.0)
    app = create_app(model, settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        data = encode(images["big.png"])
        statuses, problems, lock = [], [], threading.Lock()
        stop = time.monotonic() + 3.0

        def client():
            with httpx.Client(base_url=base, timeout=30) as http:
                while time.monotonic() < stop:
                    r = http.post("/v1/detect", files={"file": ("big.png", data, "image/png")})
                    with lock:
                        statuses.append(r.status_code)
                        if r.status_code == 503 and ("retry-after" not in r.headers or
                                                     set(r.json()) != {"error"}):
                            problems.append(dict(r.headers))
                        if r.status_code == 200 and len(r.json()["boxes"]) == 0:
                            problems.append("200 without boxes")

        clients = [threading.Thread(target=client) for _ in range(8)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(60)
        counts = {s: statuses.count(s) for s in set(statuses)}
        assert set(counts) <= {200, 503}, counts
        assert counts.get(200, 0) > 0 and counts.get(503, 0) > 0, counts
        assert not problems, problems[:3]
        health = httpx.get(f"{base}/healthz", timeout=10).json()
        assert health["status"] == "ok" and health["queue"]["pending"] == 0
        assert 1 <= health["stats"]["largest_batch"] <= 2
        assert health["stats"]["rejected"] == counts[503]
    finally:
        server.should_exit = True
        thread.join(30)
    assert not thread.is_alive()


# ----------------------------------------------------------------------------- command line
def _call(argv):
    try:
        return cli.main([str(a) for a in argv])
    except SystemExit as stop:
        return stop.code


def test_serve_help_explains_every_option(capsys):
    assert _call(["serve", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--model", "--host", "--port", "--max-upload-mb", "--max-megapixels",
                   "--queue-size", "--max-batch", "--max-wait-ms", "--quiet", "127.0.0.1",
                   "frcnn_lib[serve]"):
        assert option in text, option
    assert _call(["--help"]) == 0 and "serve" in capsys.readouterr().out


def _one_error(capsys, code, *words):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("frcnn: error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_serve_misuse_is_one_error_line(tmp_path, capsys):
    _one_error(capsys, _call(["serve", "--model", tmp_path / "none.keras"]), "--model", "none.keras")
    _one_error(capsys, _call(["serve", "--model", tmp_path, "--port", "0"]), "--port")
    model_file = tmp_path / "m.keras"
    model_file.write_bytes(b"not a model")
    _one_error(capsys, _call(["serve", "--model", model_file, "--port", "70000"]), "--port 70000")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _one_error(capsys, _call(["serve", "--model", model_file, "--port", port]),
                   f"--port {port}", "in use")


def test_serve_without_the_extra_names_it(tmp_path, monkeypatch, capsys):
    import sys

    model_file = tmp_path / "m.keras"
    model_file.write_bytes(b"x")
    for name in [n for n in sys.modules if n == "frcnn_lib.serve" or n.startswith("frcnn_lib.serve.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)       # as if FastAPI were not installed
    _one_error(capsys, _call(["serve", "--model", model_file]), "fastapi", "frcnn_lib[serve]")


def test_serve_command_loads_the_model_and_hands_uvicorn_an_app_that_answers(model, images,
                                                                             tmp_path, monkeypatch,
                                                                             capsys):
    import uvicorn

    path = tmp_path / "tiny.keras"
    model.save(path)
    seen = {}

    def run(app, **kwargs):                     # instead of serving forever
        seen.update(kwargs)
        with TestClient(app) as client:         # the lifespan: worker (warm-up in the background)
            seen["answer"] = _post(client, "base.png", encode(images["base.png"])).json()
            seen["health"] = client.get("/healthz").json()
    monkeypatch.setattr(uvicorn, "run", run)
    port = _free_port()
    code = _call(["serve", "--model", path, "--port", port, "--max-batch", "3",
                  "--queue-size", "5", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert seen["host"] == "127.0.0.1" and seen["port"] == port and seen["access_log"] is False
    assert seen["health"]["queue"]["max_batch"] == 3 and seen["health"]["queue"]["queue_size"] == 5
    reference = model.detect(images["base.png"])
    np.testing.assert_allclose(seen["answer"]["boxes"], reference["boxes"], atol=0.006)
    assert seen["answer"]["labels"] == reference["labels"].tolist()
    assert f"http://127.0.0.1:{port}/" in capsys.readouterr().out
