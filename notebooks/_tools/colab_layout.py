"""Run notebooks as Colab runs them: alone, outside the checkout, with the library from a wheel.

On Colab each notebook opens in a fresh runtime: `frcnn_lib` is pip-installed (a wheel of this
repository at COURSE_REF), there is no `runs/` folder, and the course's model comes from the
pinned download. This script builds that layout in a fresh folder outside the checkout:

    DIR/site/       frcnn_lib installed from `pip wheel --no-deps .` with `pip install --target`
                    (on PYTHONPATH, so it shadows the checkout's editable install)
    DIR/course/NN_*/ a copy of each notebook, executed there (no runs/, no pyproject.toml above)
    DIR/keras/NN_*/ an empty Keras cache per notebook (KERAS_HOME)

and runs each notebook there in fast mode under its own `pytest --nbval-lax` (a runtime of its
own, with its own empty Keras cache, `--jobs` of them at once), while `--model` (a `.keras` file)
is served on 127.0.0.1 and `FRCNN_COURSE_MODEL_URL` / `FRCNN_COURSE_MODEL_SHA256` point the
notebooks' `course_model()` at it: the download path of Colab, offline.

    python notebooks/_tools/colab_layout.py --model runs/course/model_fast.keras \\
        notebooks/06_proposals_and_nms.ipynb ...

`make notebooks` runs 06, 08, 10, 11 and 12 this way (after the other notebooks ran in the
checkout, so that 09's fast-mode model is the one served).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def install_wheel(folder: Path) -> Path:
    """Build this checkout's wheel and install it (no dependencies) into `folder/site`."""
    wheels, site = folder / "wheel", folder / "site"
    # setuptools stages the package in the checkout's (ignored) build/lib and reuses it: a module
    # deleted from frcnn_lib/ would still ship. Stage afresh.
    shutil.rmtree(ROOT / "build" / "lib" / "frcnn_lib", ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(wheels), str(ROOT)], check=True, cwd=folder)
    (wheel,) = wheels.glob("frcnn_lib-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                    str(wheel)], check=True, cwd=folder)
    return site


def imported_from(site: Path, cwd: Path) -> str:
    """Where `import frcnn_lib` resolves with `site` on PYTHONPATH, run from `cwd`."""
    out = subprocess.run([sys.executable, "-c", "import frcnn_lib; print(frcnn_lib.__file__)"], check=True,
                         capture_output=True, text=True, cwd=cwd, env={**os.environ, "PYTHONPATH": str(site)})
    return out.stdout.strip()


def serve(path: Path):
    """Serve `path`'s folder on 127.0.0.1 in a thread; returns (server, url of `path`)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(path.parent), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/{path.name}"


def prepare(folder: Path, notebooks: list[Path]) -> dict:
    """The layout in `folder`: the wheel in site/, the notebooks copied to course/, an empty cache."""
    folder = folder.resolve()
    if folder == ROOT or ROOT in folder.parents:
        raise SystemExit(f"{folder}: must be outside the checkout {ROOT}")
    folder.mkdir(parents=True, exist_ok=True)
    site = install_wheel(folder)
    course = folder / "course"
    course.mkdir()
    for notebook in notebooks:                 # a folder each, as each Colab runtime has its own
        (course / notebook.stem).mkdir()
        shutil.copy(notebook, course / notebook.stem / notebook.name)
    where = imported_from(site, course)
    if not where.startswith(str(site)):
        raise SystemExit(f"frcnn_lib imports from {where}, not from the wheel in {site}")
    shipped = Path(where).parent / "course" / "course_model.json"
    if shipped.read_bytes() != (ROOT / "frcnn_lib" / "course" / "course_model.json").read_bytes():
        raise SystemExit(f"{shipped}: the wheel does not ship the checkout's pinned model record")
    return {"site": site, "course": course, "keras_home": folder / "keras"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the .keras file the notebooks download")
    parser.add_argument("--dir", type=Path, help="the layout's folder (default: a new temporary one)")
    parser.add_argument("--jobs", type=int, default=2, help="notebooks run at once (default 2)")
    parser.add_argument("notebooks", type=Path, nargs="+")
    args, pytest_args = parser.parse_known_args(argv)
    if not args.model.is_file():
        print(f"{args.model}: no such model file (notebook 09 writes it in fast mode)", file=sys.stderr)
        return 1
    folder = args.dir or Path(tempfile.mkdtemp(prefix="frcnn_colab_"))
    layout = prepare(folder, args.notebooks)
    server, url = serve(args.model.resolve())
    sha = hashlib.sha256(args.model.read_bytes()).hexdigest()
    print(f"colab layout in {folder}: frcnn_lib from {layout['site']}, model served at {url}", flush=True)

    def run(notebook: Path) -> tuple[str, int, str]:
        # A runtime of its own, as on Colab: a fresh Keras cache, so each notebook downloads.
        env = {**os.environ, "PYTHONPATH": str(layout["site"]),
               "KERAS_HOME": str(layout["keras_home"] / notebook.stem),
               "FRCNN_FAST": "1", "FRCNN_COURSE_MODEL_URL": url, "FRCNN_COURSE_MODEL_SHA256": sha}
        done = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:randomly",
                               "-p", "no:cacheprovider", *pytest_args, notebook.name],
                              cwd=layout["course"] / notebook.stem, env=env, capture_output=True, text=True)
        return notebook.name, done.returncode, done.stdout + done.stderr

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(run, args.notebooks))
    finally:
        server.shutdown()
    failed = 0
    for name, code, output in results:
        summary = (output.strip().splitlines() or ["(no output)"])[-1]
        print(f"{name}: {summary}", flush=True)
        if code:
            failed += 1
            print(output[-6000:], flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
