"""Run ``frcnn serve``: load a ``.keras`` model once, serve it with uvicorn, warm it.

uvicorn runs the app's lifespan (batching worker, and the warm-up if ``warm_first``)
before it opens the port.  By default the port opens as soon as the model is loaded and the
worker traces the serving canvases while no request waits (``create_app(warm="background")``):
the first request is answered within seconds, and ``/healthz`` says ``"warming"`` until
every canvas is traced, then ``"ok"``.  With ``warm_first`` the port opens warm:
``/healthz`` answering means ready and no request ever pays a trace.
"""
import errno
import socket

from frcnn_lib.runtime.errors import FrcnnError


def check_port(host, port):
    """Fail early, before the model loads, if ``host:port`` cannot be bound."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise FrcnnError(f"--host {host}: not a known address ({err.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind(address)
        except OSError as err:
            why = "already in use" if err.errno == errno.EADDRINUSE else err.strerror
            raise FrcnnError(f"--host {host} --port {port}: cannot listen there ({why})") from None


def serve(model_path, host="127.0.0.1", port=8000, settings=None, access_log=True, announce=print,
          warm_first=False):
    """Load ``model_path`` and serve it until interrupted (Ctrl-C); ``warm_first``: trace
    every canvas before the port opens (else in the background, see the module docstring)."""
    import uvicorn

    from frcnn_lib.training import checkpoints
    from frcnn_lib.serve.app import ServeSettings, create_app

    settings = settings or ServeSettings()
    check_port(host, port)
    model = checkpoints.load_model(model_path, compile=False)
    app = create_app(model, settings, warm=True if warm_first else "background")
    shown = f"[{host}]" if ":" in host else host
    announce(f"serving {model_path} on http://{shown}:{port}/ (API: /v1/detect, docs: /docs); "
             f"{'warming up, then ' if warm_first else ''}Ctrl-C to stop")
    uvicorn.run(app, host=host, port=port, log_level="info" if access_log else "warning",
                access_log=access_log, timeout_graceful_shutdown=10)
