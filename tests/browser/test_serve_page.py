"""The ``frcnn serve`` web page, driven for real: uvicorn on a free local port, headless
Chromium (Playwright), images uploaded through the page's file input.

The model is the tiny detector trained for a few seconds on the synthetic red (class 1) and
green (class 2) rectangles (``helpers.synthetic.train_overfit``), named ``red`` / ``green``,
so its confident boxes are real detections.  The test checks, on the canvas pixels:

* each uploaded image is drawn with exactly the boxes of its JSON answer that pass the
  slider, in the colour of their class, at the answer's coordinates times the canvas scale;
* moving the slider above every score removes the boxes (the canvas is the plain image
  again), and a middle value keeps exactly the boxes at or above it -- without any new
  request to the server;
* the caption shows the server time and the round trip.

Run with ``make browser``.  The page's screenshot goes to ``tests/_artifacts/serve_page.png``
(and, if ``FRCNN_SERVE_SCREENSHOT`` names a file, there too: that is how docs/serve.png was made).
"""
import io
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.synthetic import make_batch, train_overfit
from test_jupyterlab_widget import CHROMIUM_ARGS, chromium  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "_artifacts"
PALETTE = {1: (0xe6, 0x19, 0x4b), 2: (0x3c, 0xb4, 0x4b)}   # page.html's first two colours


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """``base_url`` of a uvicorn serving the trained tiny model."""
    import uvicorn

    from frcnn_lib.serve import ServeSettings, create_app

    model, _, _, _ = train_overfit(150, seed=0)
    model.class_names = ["red", "green"]
    port = _free_port()
    app = create_app(model, ServeSettings(max_batch=2))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(30)


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


# Canvas pixels read in the page: the differing pixels against the plain image drawn at the
# same size, and the colour at given points.
CANVAS_PROBE = """([index, points]) => {
  const entry = window.frcnn.results.find(e => e.file.name === index);
  const c = entry.canvas, ctx = c.getContext("2d");
  const plain = document.createElement("canvas");
  plain.width = c.width; plain.height = c.height;
  const p = plain.getContext("2d");
  p.imageSmoothingEnabled = ctx.imageSmoothingEnabled;
  p.drawImage(entry.image, 0, 0, c.width, c.height);
  const a = ctx.getImageData(0, 0, c.width, c.height).data;
  const b = p.getImageData(0, 0, c.width, c.height).data;
  let differing = 0;
  for (let i = 0; i < a.length; i += 4)
    if (Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]) > 30) differing++;
  const colours = points.map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3)));
  return {differing, colours, scale: parseFloat(c.dataset.scale), drawn: parseInt(c.dataset.drawn),
          width: c.width, height: c.height};
}"""


def _probe(page, name, data, threshold):
    """Canvas facts of image ``name``; checks the last drawn box's left edge colour."""
    kept = [i for i, s in enumerate(data["scores"]) if s >= threshold]
    scale = page.evaluate(f"parseFloat(window.frcnn.results.find(e => e.file.name === "
                          f"'{name}').canvas.dataset.scale)")
    points = []
    if kept:
        x1, y1, x2, y2 = data["boxes"][kept[-1]]   # drawn last: nothing covers its edges
        points.append([int(x1 * scale), int((y1 + y2) / 2 * scale)])
    facts = page.evaluate(CANVAS_PROBE, [name, points])
    return kept, facts


def test_page_draws_boxes_and_filters_them_client_side(chromium, server, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright

    batch, _ = make_batch()
    # A landscape image (the model's 64 x 96) and a portrait one (96 x 64, at the same scale:
    # the middle of image 1, with its green rectangle, above a strip of the empty image 2),
    # so that both canvases of the model and both layouts of the page are used.
    portrait = np.concatenate([batch[1][:, 16:80], batch[2][:32, 16:80]], axis=0)
    uploads = {"landscape.png": batch[0].astype(np.uint8), "portrait.png": portrait.astype(np.uint8)}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 900, "height": 720})
        page.set_default_timeout(30_000)
        detect_requests, console_errors = [], []
        page.on("request", lambda r: detect_requests.append(r.url) if "/v1/detect" in r.url else None)
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        try:
            page.goto(server)
            page.locator("#model").filter(has_text="red, green").wait_for()
            page.set_input_files("#file", files=[{"name": n, "mimeType": "image/png", "buffer": _png(a)}
                                                 for n, a in uploads.items()])
            page.locator("figure[data-state='done']").nth(1).wait_for(timeout=60_000)
            assert page.locator("figure[data-state='error']").count() == 0
            assert len(detect_requests) == 2
            answers = {n: page.evaluate(f"window.frcnn.results.find(e => e.file.name === '{n}').data")
                       for n in uploads}

            for threshold in (0.0, 0.5):      # the screenshot at 0.5
                page.locator("#threshold").fill(str(threshold))
                for name, data in answers.items():
                    assert (data["height"], data["width"]) == uploads[name].shape[:2]
                    kept, facts = _probe(page, name, data, threshold)
                    assert facts["drawn"] == len(kept), (name, threshold, facts)
                    assert (facts["width"], facts["height"]) == (round(data["width"] * facts["scale"]),
                                                                 round(data["height"] * facts["scale"]))
                    if threshold == 0.5:      # the trained model finds the rectangles
                        assert len(kept) >= 1, (name, data["scores"])
                    if kept:
                        assert facts["differing"] > 100, facts
                        expected = PALETTE[data["labels"][kept[-1]]]
                        got = facts["colours"][0]
                        assert max(abs(g - e) for g, e in zip(got, expected)) <= 40, (name, got, expected)
            page.screenshot(path=str(tmp_path / "serve_page.png"))

            # Above every score: no box, the canvas is the plain image.
            page.locator("#threshold").fill("1")
            for name, data in answers.items():
                _, facts = _probe(page, name, {**data, "scores": []}, 1.0)
                assert facts["drawn"] == 0 and facts["differing"] == 0, (name, facts)
            # A middle value keeps exactly the boxes at or above it.
            scores = sorted(s for d in answers.values() for s in d["scores"])
            middle = round(scores[len(scores) // 2], 2)
            page.locator("#threshold").fill(str(middle))
            for name, data in answers.items():
                kept, facts = _probe(page, name, data, middle)
                assert facts["drawn"] == len(kept)
            assert page.locator("#threshold-value").inner_text() == f"{middle:.2f}"
            assert len(detect_requests) == 2, "moving the slider sent requests"
            caption = page.locator("figure").first.inner_text()
            assert "server" in caption and "round trip" in caption and " ms" in caption, caption
            assert not console_errors, console_errors
        except BaseException:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            try:
                page.screenshot(path=str(ARTIFACTS / "serve_page_at_failure.png"), full_page=True)
            except Exception:
                pass
            raise
        finally:
            browser.close()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "serve_page.png", ARTIFACTS / "serve_page.png")
    if os.environ.get("FRCNN_SERVE_SCREENSHOT"):
        shutil.copy(tmp_path / "serve_page.png", os.environ["FRCNN_SERVE_SCREENSHOT"])
