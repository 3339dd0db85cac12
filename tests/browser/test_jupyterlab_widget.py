"""A course widget, driven for real: JupyterLab in headless Chromium (Playwright).

Starts JupyterLab on a free local port with ``notebooks/`` as its root, opens
``03_anchors.ipynb``, runs all cells from the Run menu, waits for the anchor explorer's
sliders, then moves the ``stride`` slider with the keyboard and checks that the figure in the
widget's output (the bytes of its PNG or JPEG image) changes.  The kernel runs the notebook in fast mode
(``FRCNN_FAST=1``).  Autosave is switched off and checkpoints go to a temporary folder, so
nothing under ``notebooks/`` is written.

Run with ``make browser`` (it sets ``FRCNN_BROWSER=1`` and installs the ``browser`` extra).
Chromium is Debian's ``/usr/bin/chromium``; if it is missing the test installs it with
apt-get (root, or passwordless sudo) or fails saying what to run.  On failure, screenshots and
the server log go to ``tests/_artifacts/``.
"""
import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
NOTEBOOK = "03_anchors.ipynb"
SLIDER = "stride"                      # description of the slider we move
ARTIFACTS = ROOT / "tests" / "_artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

SERVER_START_S = 120                   # JupyterLab answering on its port
NOTEBOOK_OPEN_S = 120                  # the notebook rendered, its kernel idle
RUN_ALL_S = 420                        # every cell of 03 run, the widget's figure shown
FIGURE_UPDATE_S = 120                  # the figure redrawn after the slider moved
APT_S = 1200


def _tail(text, lines=15):
    return "\n".join(str(text).strip().splitlines()[-lines:])


@pytest.fixture
def chromium():
    """Path of Debian's chromium, installing it with apt-get if it is missing."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    command = "apt-get update && apt-get install -y chromium"
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    try:
        result = subprocess.run(prefix + ["bash", "-c", command], capture_output=True, text=True,
                                timeout=APT_S, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        failure = None if result.returncode == 0 else f"exit status {result.returncode}: {_tail(result.stderr)}"
    except (OSError, subprocess.TimeoutExpired) as err:
        failure = f"{type(err).__name__}: {err}"
    if failure or not os.path.exists(CHROMIUM):
        pytest.fail(f"Debian's chromium is needed at {CHROMIUM} and could not be installed with "
                    f"`{' '.join(prefix + [command])}` ({failure or 'it did not appear'}). "
                    f"Install it yourself (as root: {command}) and rerun `make browser`.",
                    pytrace=False)
    return CHROMIUM


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(folder):
    """User settings of this JupyterLab: no autosave, every cell kept in the DOM, the
    notebook's kernel started without asking, no news."""
    settings = {
        "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }
    for plugin, values in settings.items():
        path = folder / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _api(base, token, path, method="GET"):
    request = urllib.request.Request(f"{base}{path}", method=method,
                                     headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
        return json.loads(body) if body else None


def _stop(process, base, token):
    """Shut down the kernels, then the server (its process group), waiting boundedly."""
    if process.poll() is None:
        try:
            for kernel in _api(base, token, "/api/kernels") or []:
                _api(base, token, f"/api/kernels/{kernel['id']}", method="DELETE")
        except OSError:
            pass
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture
def jupyterlab(tmp_path):
    """``(base_url, token, log_path)`` of a JupyterLab serving ``notebooks/``."""
    port, token = _free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    _write_settings(tmp_path / "lab-settings")
    env = {**os.environ, "FRCNN_FAST": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    command = [sys.executable, "-m", "jupyterlab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={NOTEBOOKS}",
               "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly",
               # checkpoints (written when a notebook is opened) go to the temporary folder
               f"--FileCheckpoints.checkpoint_dir={tmp_path / 'checkpoints'}"]
    if os.geteuid() == 0:       # containers and CI runners often run as root
        command.append("--allow-root")
    log_path = tmp_path / "jupyterlab.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=NOTEBOOKS, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab exited with status {process.returncode}:\n"
                            f"{_tail(log_path.read_text(), 30)}", pytrace=False)
            try:
                _api(base, token, "/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer on {base} within {SERVER_START_S} s:\n"
                                f"{_tail(log_path.read_text(), 30)}", pytrace=False)
                time.sleep(0.5)
        yield base, token, log_path
    finally:
        _stop(process, base, token)


def _wait_for_idle_kernel(base, token, notebook, seconds):
    """Until the notebook's session has a kernel, started and idle."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sessions = [s for s in _api(base, token, "/api/sessions") if s["path"].endswith(notebook)]
        if sessions and (sessions[0].get("kernel") or {}).get("execution_state") == "idle":
            return
        time.sleep(0.5)
    pytest.fail(f"no idle kernel for {notebook} within {seconds} s (sessions: "
                f"{_api(base, token, '/api/sessions')})", pytrace=False)


def _wait_for(condition, page, seconds, what):
    """Poll ``condition()``; fail at once if JupyterLab shows a dialog, or after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        dialog = page.locator(".jp-Dialog")
        if dialog.count() and dialog.first.is_visible():
            raise AssertionError(f"waiting for {what}, JupyterLab showed a dialog: "
                                 f"{dialog.first.inner_text()[:300]!r}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {seconds} s")
        time.sleep(0.5)


def _figure_src(interact):
    """The ``src`` of the widget output's image (a data: URL), or None while it is redrawn."""
    images = interact.locator(".widget-output img")
    try:
        return images.first.get_attribute("src", timeout=1000) if images.count() else None
    except Exception:  # the output is being cleared and redrawn
        return None


def _image_bytes(src):
    """The encoded figure of a ``data:image/png`` or ``data:image/jpeg`` URL (the notebook's
    inline backend decides the format)."""
    match = re.match(r"data:image/(png|jpeg);base64,", src or "")
    assert match, f"not an inline PNG or JPEG figure: {str(src)[:60]!r}"
    data = base64.b64decode(src[match.end():])
    magic = b"\x89PNG\r\n\x1a\n" if match.group(1) == "png" else b"\xff\xd8\xff"
    assert data.startswith(magic), f"the {match.group(1)} figure does not start with its magic bytes"
    return data


def test_slider_redraws_figure(chromium, jupyterlab, tmp_path):
    from playwright.sync_api import sync_playwright

    base, token, log_path = jupyterlab
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        try:
            page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}", timeout=NOTEBOOK_OPEN_S * 1000)
            page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=NOTEBOOK_OPEN_S * 1000)
            _wait_for_idle_kernel(base, token, NOTEBOOK, NOTEBOOK_OPEN_S)

            # Run > Run All Cells
            page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-item:has(.lm-Menu-itemLabel:text-is('Run All Cells'))").click()

            interact = page.locator(".widget-interact").first
            _wait_for(lambda: interact.locator(".widget-output img").count() > 0, page, RUN_ALL_S,
                      f"the widget's figure after Run All Cells on {NOTEBOOK}")
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
            assert errors.count() == 0, f"a cell of {NOTEBOOK} failed: {errors.first.inner_text()[:2000]}"
            slider = interact.locator(".widget-slider").filter(
                has=page.locator(".widget-label", has_text=re.compile(rf"^{SLIDER}$")))
            assert slider.count() == 1, f"expected one slider labelled {SLIDER!r} in the first interact widget"
            readout = slider.locator(".widget-readout")
            before_value = readout.inner_text().strip()

            figure = interact.locator(".widget-output img").first
            figure.scroll_into_view_if_needed()
            before_src = _figure_src(interact)
            figure.screenshot(path=str(shots / "figure_before.png"))

            # Move the slider one step with the keyboard, on its handle.
            handle = slider.locator(".noUi-handle")
            handle.focus()
            handle.press("ArrowRight")
            deadline = time.monotonic() + FIGURE_UPDATE_S
            after_src = before_src
            while after_src in (None, before_src):
                assert time.monotonic() < deadline, (
                    f"the figure did not change within {FIGURE_UPDATE_S} s of moving {SLIDER!r} "
                    f"from {before_value} (readout now {readout.inner_text().strip()})")
                time.sleep(0.5)
                after_src = _figure_src(interact)
            after_value = readout.inner_text().strip()
            figure = interact.locator(".widget-output img").first
            figure.scroll_into_view_if_needed()
            figure.screenshot(path=str(shots / "figure_after.png"))

            assert after_value != before_value, f"the {SLIDER!r} readout stayed at {before_value}"
            before_image, after_image = _image_bytes(before_src), _image_bytes(after_src)
            assert before_image != after_image, "the widget's figure is byte-for-byte the same after the slider moved"
            assert (shots / "figure_before.png").read_bytes() != (shots / "figure_after.png").read_bytes()
        except BaseException:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            try:
                page.screenshot(path=str(shots / "page_at_failure.png"), full_page=True, timeout=10_000)
            except Exception:
                pass
            for item in shots.iterdir():
                shutil.copy(item, ARTIFACTS / f"browser_{item.name}")
            shutil.copy(log_path, ARTIFACTS / "browser_jupyterlab.log")
            raise
        finally:
            browser.close()
