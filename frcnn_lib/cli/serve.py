"""``frcnn serve``: a web page and a JSON API for a saved model (``frcnn_lib/serve``, the
optional extra ``frcnn_lib[serve]``; see docs/serve.md)."""
from frcnn_lib.cli.common import existing_file, positive


def add_parser(subparsers):
    v = subparsers.add_parser("serve", help="a web page and a JSON API for a saved model",
                              description="Serve a .keras model: a web page at / (upload or drop images, "
                              "boxes drawn), POST /v1/detect and /v1/detect/batch (JSON), GET /healthz and "
                              "the OpenAPI description at /openapi.json (/docs). Needs the serve extra: "
                              "pip install 'frcnn_lib[serve]'.")
    v.add_argument("--model", required=True, help="a .keras file written by 'frcnn train' or 'frcnn demo'")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this "
                   "machine only; 0.0.0.0 exposes the server to the network)")
    v.add_argument("--port", type=positive(int), default=8000, help="TCP port (default 8000)")
    v.add_argument("--max-upload-mb", type=positive(float), default=10.0,
                   help="largest request body in MB, batch included; larger gets 413 (default 10)")
    v.add_argument("--max-megapixels", type=positive(float), default=25.0,
                   help="largest image in megapixels, checked before decoding; larger gets 413 (default 25)")
    v.add_argument("--queue-size", type=positive(int), default=16,
                   help="images allowed to wait for the model; beyond, 503 with Retry-After (default 16)")
    v.add_argument("--max-batch", type=positive(int), default=8,
                   help="most images per model call; 1 turns batching off (default 8)")
    v.add_argument("--max-wait-ms", type=float, default=0.0,
                   help="how long a short batch waits for more requests, in ms (default 0: "
                   "group only what is already queued)")
    v.add_argument("--warm-first", action="store_true",
                   help="trace the model for every canvas shape before the port opens (slower start; "
                   "no request ever waits for a trace). Default: the port opens once the model is "
                   "loaded and the canvases are traced while no request waits; /healthz says "
                   "\"warming\" until done, then \"ok\"")
    v.add_argument("--quiet", action="store_true", help="no access log")
    return v


def run(args, session):
    from frcnn_lib.runtime.errors import FrcnnError

    existing_file(args.model, "--model")
    if not 0 <= args.max_wait_ms <= 1000:
        raise FrcnnError(f"--max-wait-ms {args.max_wait_ms}: expected 0 to 1000")
    if args.port > 65535:
        raise FrcnnError(f"--port {args.port}: expected 1 to 65535")
    try:  # FastAPI and uvicorn are an optional extra: imported only by this command
        from frcnn_lib.serve import ServeSettings, serve
    except ImportError as err:
        raise FrcnnError(f"frcnn serve needs the serve extra ({err.name} is missing): "
                         f"pip install 'frcnn_lib[serve]'") from None
    settings = ServeSettings(max_upload_mb=args.max_upload_mb, max_megapixels=args.max_megapixels,
                             queue_size=args.queue_size, max_batch=args.max_batch,
                             max_wait_ms=args.max_wait_ms)
    serve(args.model, args.host, args.port, settings, access_log=not args.quiet, announce=session.result,
          warm_first=args.warm_first)
