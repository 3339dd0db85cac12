"""The HTTP surface of ``frcnn serve``: a FastAPI app around one loaded detector.

Routes::

    GET  /                  the web page (upload or drop images, boxes drawn on a canvas)
    POST /v1/detect         one image (multipart field ``file``)     -> Detections
    POST /v1/detect/batch   several images (multipart field ``files``) -> {"results": [...]}
    GET  /healthz           liveness ("warming" or "ok"), model summary, queue state
    GET  /openapi.json      the OpenAPI description (FastAPI)
    GET  /docs              an offline page listing the API from /openapi.json

Every error is ``{"error": "<one line>"}`` with a 4xx status (404 unknown route, 405 wrong
method, 413 body or image too large, 415 not an image, 400 empty/truncated/corrupt,
422 missing field, 503 queue full with ``Retry-After``) or 500 if the model itself fails;
none stops the server.  Boxes are ``xyxy`` floats in the pixels of the uploaded image (after
its EXIF orientation), labels the model's ``1..K``.
"""
import asyncio
import dataclasses
import importlib.resources
import time
from contextlib import asynccontextmanager
from typing import Annotated, List, Optional

import numpy as np
from fastapi import FastAPI, File, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from frcnn_lib.serve.batcher import Batcher, Busy
from frcnn_lib.serve.images import FORMATS, BadImage, decode_image


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """Limits and batching of one server (the ``frcnn serve`` options)."""

    max_upload_mb: float = 10.0    # whole request body, batch included -> 413 beyond
    max_megapixels: float = 25.0   # declared H * W of one image -> 413 beyond (a 6000 x 4000 photo is 24)
    queue_size: int = 16           # images admitted and waiting -> 503 beyond
    # Measured in benchmarks/bench_serve.py (2-core shared CPU, 8 clients; benchmarks/README.md):
    # max_batch 8 without waiting used 0.85x the server CPU per request of max_batch 1 and
    # served 1.12x the requests/s (0.9x-1.6x over three runs: noisy); waiting 5 ms did not
    # help (under load, requests pile up while the model runs, so batches fill anyway).
    max_batch: int = 8             # images per model call; 1 switches batching off
    max_wait_ms: float = 0.0       # how long a short batch waits for more requests
    max_files: int = 16            # files in one /v1/detect/batch request

    def __post_init__(self):
        for name in ("max_upload_mb", "max_megapixels", "queue_size", "max_batch", "max_files"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ServeSettings.{name}={getattr(self, name)}: expected a positive value")
        if not self.max_wait_ms >= 0:
            raise ValueError(f"ServeSettings.max_wait_ms={self.max_wait_ms}: expected >= 0")


# ---------------------------------------------------------------------- response schemas
class Detections(BaseModel):
    """Detections in one image, sorted by descending score."""

    filename: Optional[str] = Field(None, description="the upload's file name")
    width: int = Field(description="image width in pixels (after EXIF orientation)")
    height: int = Field(description="image height in pixels")
    boxes: List[List[float]] = Field(description="[[x1, y1, x2, y2], ...] in the image's pixels")
    scores: List[float] = Field(description="class probability of each box, 0..1")
    labels: List[int] = Field(description="the model's class index of each box, 1..K")
    class_names: List[str] = Field(description="name of each box's class")
    category_ids: List[int] = Field(description="dataset category id of each box's class "
                                                "(COCO ids for a COCO model, else the label)")
    time_ms: float = Field(description="server time for this request: decoding, queue and model")
    model_ms: float = Field(description="time of the model call this image was part of")
    queue_ms: float = Field(description="time the request waited for the model")
    batch_images: int = Field(description="number of images in that model call")


class BatchDetections(BaseModel):
    results: List[Detections]
    time_ms: float


class Error(BaseModel):
    error: str = Field(description="what was wrong, in one line")


ERRORS = {400: {"model": Error, "description": "empty, truncated or corrupt image"},
          413: {"model": Error, "description": "body over --max-upload-mb or image over --max-megapixels"},
          415: {"model": Error, "description": "not an image in a supported format"},
          422: {"model": Error, "description": "missing multipart field"},
          503: {"model": Error, "description": "queue full; retry after the Retry-After header's seconds"}}


class BodyTooLarge(StarletteHTTPException):
    def __init__(self):
        super().__init__(status_code=413, detail="request body too large")


class BodyLimit:
    """ASGI middleware bounding the request body at ``max_bytes``: a declared
    ``Content-Length`` over it gets a JSON 413 before anything is read; a body streamed
    without one is counted as it arrives and stopped (``BodyTooLarge``) once over.

    (FastAPI's own ``max_body_size`` would answer the first case in plain text.)"""

    def __init__(self, app, max_bytes, message):
        self.app, self.max_bytes, self.message = app, max_bytes, message

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _error(413, self.message, headers={"Connection": "close"})(scope, receive, send)
        total = 0

        async def limited():
            nonlocal total
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > self.max_bytes:
                    raise BodyTooLarge()
            return message

        await self.app(scope, limited, send)


# ---------------------------------------------------------------------- model side
def warm_up_steps(model, max_batch):
    """The warm-up as a list of calls, in order: ``detect`` on two canvas shapes (landscape
    and portrait), with one image and (if batching) two, so that ``reduce_retracing`` relaxes
    the trace to any canvas and batch size and no later request retraces (under XLA each new
    canvas still compiles once; canvases are a bounded set, see ``canvas_for``).  The first
    call, one image on the landscape canvas, is the one a first single upload most likely
    needs."""
    low, high = model.settings["image_min_side"], model.settings["image_max_side"]
    steps = []
    for shape in sorted({(low, high), (high, low)}):
        dummy = np.zeros(shape + (3,), np.uint8)
        for n in ((1, 2) if max_batch > 1 else (1,)):
            steps.append(lambda images=[dummy] * n: model.detect(images, batch_size=max_batch))
    return steps


def warm_up(model, max_batch):
    """Run every :func:`warm_up_steps` call now."""
    for step in warm_up_steps(model, max_batch):
        step()


def _class_table(model):
    """``(names, category_ids)`` indexed by ``label - 1``, from the model's optional
    ``class_names`` / ``category_ids`` attributes, else ``"class N"`` and the labels."""
    k = int(model.num_classes)
    names = getattr(model, "class_names", None)
    names = ([str(n) for n in names] if names is not None and len(names) == k
             else [f"class {i}" for i in range(1, k + 1)])
    ids = getattr(model, "category_ids", None)
    ids = [int(i) for i in ids] if ids is not None and len(ids) == k else list(range(1, k + 1))
    return names, ids


def _as_json(result, image, filename, names, ids, info):
    labels = result["labels"].astype(int).tolist()
    return {"filename": filename, "width": int(image.shape[1]), "height": int(image.shape[0]),
            "boxes": np.round(result["boxes"].astype(np.float64), 2).tolist(),
            "scores": np.round(result["scores"].astype(np.float64), 4).tolist(),
            "labels": labels, "class_names": [names[i - 1] for i in labels],
            "category_ids": [ids[i - 1] for i in labels],
            "model_ms": round(info["model_ms"], 2), "queue_ms": round(info["queue_ms"], 2),
            "batch_images": info["batch_images"]}


def _error(status, message, headers=None):
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status, headers=headers)


def _page(name):
    return importlib.resources.files("frcnn_lib.serve").joinpath(name).read_text(encoding="utf-8")


# ---------------------------------------------------------------------- the app
def create_app(model, settings=None, warm=True):
    """A FastAPI app serving ``model`` (a built :class:`~frcnn_lib.FasterRCNN`).

    The batching worker starts when the app's lifespan starts -- under uvicorn, before the
    port accepts connections; in tests, on entering ``with TestClient(app)``.  ``warm``:

    * ``True``: the lifespan runs the whole warm-up first (the port opens warm: no request
      ever traces; ``frcnn serve --warm-first``);
    * ``"background"``: the port opens at once and the worker runs the warm-up steps
      while no request waits (``frcnn serve``'s default): the first request waits for at
      most the step in progress, plus its own trace if its shape is not traced yet, and once
      ``/healthz`` says ``"ok"`` no request traces;
    * ``False``: no warm-up (each new shape traces on first use).
    """
    if warm not in (True, False, "background"):
        raise ValueError(f"create_app(warm={warm!r}): expected True, False or 'background'")
    settings = settings or ServeSettings()
    background = warm_up_steps(model, settings.max_batch) if warm == "background" else ()
    batcher = Batcher(lambda images: model.detect(images, batch_size=settings.max_batch),
                      settings.max_batch, settings.queue_size, settings.max_wait_ms,
                      idle_work=background)
    names, ids = _class_table(model)
    max_pixels = int(settings.max_megapixels * 1e6)
    max_files = min(settings.max_files, settings.queue_size)

    @asynccontextmanager
    async def lifespan(app):
        if warm is True:
            warm_up(model, settings.max_batch)
        batcher.start()
        try:
            yield
        finally:
            batcher.close()

    app = FastAPI(
        title="frcnn serve", version="1", lifespan=lifespan,
        description="Faster R-CNN detections for uploaded images. Boxes are [x1, y1, x2, y2] in "
                    "the pixels of the uploaded image; errors are {\"error\": \"...\"}.",
        # FastAPI's Swagger UI and ReDoc load their scripts from a CDN; /docs is our own
        # offline page instead (users and tests may have no internet).
        docs_url=None, redoc_url=None,
        form_limits={"max_files": max_files, "max_fields": 8})
    app.state.batcher, app.state.settings, app.state.model = batcher, settings, model
    too_large = (f"request body over the limit of {settings.max_upload_mb:g} MB "
                 f"(frcnn serve --max-upload-mb)")
    app.add_middleware(BodyLimit, max_bytes=int(settings.max_upload_mb * 2**20), message=too_large)

    # -------------------------------------------------------------- errors: one JSON line
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        path = request.url.path
        if exc.status_code == 404:
            return _error(404, f"{request.method} {path}: no such route (see /docs)")
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            return _error(405, f"{request.method} {path}: method not allowed (use {allowed})",
                          headers=exc.headers)
        if isinstance(exc, BodyTooLarge) or isinstance(exc.__cause__, BodyTooLarge):
            return _error(413, too_large)
        cause = f" ({exc.__cause__})" if exc.__cause__ is not None and str(exc.__cause__) else ""
        return _error(exc.status_code, f"{exc.detail}{cause}", headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc):
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
                 for e in exc.errors()]
        return _error(422, "; ".join(parts) + " (send multipart/form-data: field 'file' for "
                                             "/v1/detect, 'files' for /v1/detect/batch)")

    @app.exception_handler(BadImage)
    async def bad_image(request, exc):
        return _error(exc.status, str(exc))

    @app.exception_handler(Busy)
    async def busy(request, exc):
        return _error(503, str(exc), headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(Exception)
    async def internal_error(request, exc):
        return _error(500, f"internal error ({type(exc).__name__}: {exc})")

    # -------------------------------------------------------------- detection
    async def run(uploads):
        """Decode inside the queue bound, wait for the worker, answer per image."""
        start = time.perf_counter()
        with batcher.admit(len(uploads)) as ticket:
            images = []
            for index, upload in enumerate(uploads):
                data = await upload.read()
                where = (f"files[{index}] ({upload.filename})" if len(uploads) > 1 or
                         upload.filename is None else upload.filename)
                images.append(await run_in_threadpool(decode_image, data, where, max_pixels))
            future = ticket.submit(images)
        results, info = await asyncio.wrap_future(future)
        items = [_as_json(r, image, u.filename, names, ids, info)
                 for r, image, u in zip(results, images, uploads)]
        return items, (time.perf_counter() - start) * 1000

    @app.post("/v1/detect", response_model=Detections, responses=ERRORS,
              summary="Detect objects in one image")
    async def detect(file: Annotated[UploadFile, File(description=f"an image ({', '.join(FORMATS)})")]):
        items, ms = await run([file])
        return JSONResponse({**items[0], "time_ms": round(ms, 2)})

    @app.post("/v1/detect/batch", response_model=BatchDetections, responses=ERRORS,
              summary="Detect objects in several images (one model call where they fit)")
    async def detect_batch(files: Annotated[List[UploadFile], File(description=f"1..{max_files} images")]):
        if not 1 <= len(files) <= max_files:   # (the multipart parser already stops at max_files)
            return _error(400, f"{len(files)} files: expected 1 to {max_files} per request")
        items, ms = await run(files)
        for item in items:
            item["time_ms"] = round(ms, 2)
        return JSONResponse({"results": items, "time_ms": round(ms, 2)})

    # -------------------------------------------------------------- pages and health
    @app.get("/healthz", summary="Liveness, model summary and queue state")
    async def healthz():
        left = batcher.idle_left
        return {"status": "warming" if left else "ok",
                "warm_up": {"steps_left": left, "errors": list(batcher.idle_errors)},
                "model": {"num_classes": int(model.num_classes), "class_names": names,
                          "category_ids": ids, "image_min_side": model.settings["image_min_side"],
                          "image_max_side": model.settings["image_max_side"]},
                "queue": {"pending": batcher.pending, "queue_size": settings.queue_size,
                          "max_batch": settings.max_batch, "max_wait_ms": settings.max_wait_ms},
                "limits": {"max_upload_mb": settings.max_upload_mb,
                           "max_megapixels": settings.max_megapixels, "max_files": max_files},
                "stats": dict(batcher.stats)}

    page, docs = _page("page.html"), _page("docs.html")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page)

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def api_docs():
        return HTMLResponse(docs)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return Response(status_code=204)

    return app
