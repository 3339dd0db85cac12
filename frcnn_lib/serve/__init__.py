"""``frcnn serve``: a web page and a JSON API for a trained detector (optional extra
``frcnn_lib[serve]``: FastAPI, uvicorn, python-multipart).

Modules, one job each:

* :mod:`~frcnn_lib.serve.images` -- uploaded bytes to RGB arrays, refusing bombs before decoding;
* :mod:`~frcnn_lib.serve.batcher` -- the bounded queue and the micro-batching worker thread;
* :mod:`~frcnn_lib.serve.app` -- the FastAPI app (routes, JSON errors, warm-up);
* :mod:`~frcnn_lib.serve.server` -- loading a ``.keras`` file and running uvicorn;
* ``page.html`` (the web page) and ``docs.html`` (the offline API page), plain JS, no CDN.

See docs/serve.md.
"""
from frcnn_lib.serve.app import ServeSettings, create_app, warm_up, warm_up_steps
from frcnn_lib.serve.batcher import Batcher, Busy
from frcnn_lib.serve.images import BadImage, decode_image
from frcnn_lib.serve.server import serve

__all__ = ["BadImage", "Batcher", "Busy", "ServeSettings", "create_app", "decode_image",
           "serve", "warm_up", "warm_up_steps"]
