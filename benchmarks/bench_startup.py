"""Start-up of the command line: ``frcnn predict`` on one image and ``frcnn serve`` up to its
first answer, against the floor ``python -c "import tensorflow"`` timed in the same run.

Each measurement is a fresh process, as a user starts it: ``frcnn`` means the console script
(``_frcnn_console.main``, which defers TensorFlow until a command needs it), run from this
checkout.  Per round, the four processes below run one after the other, and rounds repeat
(``--rounds``), so a burst of load from another process on a shared machine hits all four
alike; the table gives the median over rounds (and each run).

* floor: wall time of ``python -c "import tensorflow"`` (in TF 2.21 this imports Keras too);
* import: ``python -c "import frcnn_lib.cli.predict, frcnn_lib.model"``, what every command
  imports before it works;
* predict: ``frcnn predict --model M IMAGE --out D --quiet`` (one 240 x 320 JPEG);
* serve: from starting ``frcnn serve --model M --port P --quiet`` to the first 200 answer of
  ``POST /v1/detect`` (the client retries every 50 ms while the port is closed; a request the
  server accepts waits for its answer).

Each row gives wall seconds, their ratio and difference to the floor, the process's CPU time
(user + system, all threads; for serve up to the first answer) and its difference to the
floor's -- the steadier number on a shared machine, where another process's load stretches
wall times but not the work a start-up does -- and its peak memory (``ru_maxrss``).  The
model is the ``shapes_cpu`` preset (small backbone, 160 px canvas, 5 classes) with random
weights (``detections_score_threshold=0``, so NMS keeps its maximum work), saved to a
temporary folder, unless ``--model`` names a ``.keras`` file; start-up does not depend on
the weights.

``--quick`` (one round, the four processes started together): checks that the script and
the commands work and prints the whole table; its timings mean nothing.
"""
import argparse
import io
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine_info, untrained_shapes_model  # noqa: E402  (also sets TF_CPP_MIN_LOG_LEVEL)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRCNN = [sys.executable, "-c", "import sys, _frcnn_console; sys.argv[0] = 'frcnn'; "
         "sys.exit(_frcnn_console.main())"]      # what the installed ``frcnn`` script runs
ROWS = ("floor: import tensorflow", "import frcnn_lib (a command's imports)",
        "frcnn predict (1 image)", "frcnn serve (to first 200)")


def _env():
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=ROOT + (os.pathsep + path if path else ""),
                TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1", PYTHONUNBUFFERED="1")


def _image(folder):
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    path = os.path.join(folder, "image.jpg")
    Image.fromarray(np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)).save(path, quality=90)
    return path


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Run:
    """One timed process: ``Popen`` now; :meth:`finish` waits and records wall time and peak RSS."""

    def __init__(self, command, log):
        self.log = log
        self.start = time.perf_counter()
        with open(log, "w") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self.seconds = self.cpu = None

    def cpu_now(self):
        """User + system CPU seconds of the running process so far (Linux /proc)."""
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def finish(self, timeout):
        """Wait for the exit (killing it after ``timeout`` s): ``(seconds, CPU seconds, peak
        RSS MB)``; ``seconds`` and ``cpu`` stay as set if set before (serve: first answer)."""
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.killpg(self.process.pid, signal.SIGKILL)
                raise SystemExit(f"{self.process.args}: still running after {timeout} s; log:\n"
                                 f"{open(self.log).read()[-2000:]}")
            time.sleep(0.01)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        if self.seconds is None:
            self.seconds = time.perf_counter() - self.start
        if self.cpu is None:
            self.cpu = usage.ru_utime + usage.ru_stime
        return self.seconds, self.cpu, usage.ru_maxrss / 1024

    def check(self, expect=(0,)):
        if self.process.returncode not in expect:
            raise SystemExit(f"{self.process.args}: exit status {self.process.returncode}; log:\n"
                             f"{open(self.log).read()[-3000:]}")


def _multipart(path):
    boundary = uuid.uuid4().hex
    with open(path, "rb") as f:
        data = f.read()
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"image.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _first_answer(run, port, image, timeout):
    """Post the image to ``/v1/detect`` until a 200 (retrying while the port is closed): the
    seconds from the server's start to that answer."""
    import http.client

    body, content_type = _multipart(image)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run.process.poll() is not None:
            raise SystemExit(f"frcnn serve exited ({run.process.returncode}); log:\n"
                             f"{open(run.log).read()[-3000:]}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            connection.request("POST", "/v1/detect", body, {"Content-Type": content_type})
            response = connection.getresponse()
            answer = response.read()
            if response.status == 200:
                return time.perf_counter() - run.start, run.cpu_now()
            if response.status != 503:
                raise SystemExit(f"frcnn serve answered {response.status}: {answer[:500]!r}")
        except (ConnectionError, OSError):
            pass
        finally:
            connection.close()
        time.sleep(0.05)
    raise SystemExit(f"frcnn serve: no 200 answer within {timeout} s; log:\n{open(run.log).read()[-3000:]}")


def one_round(model, image, folder, together, timeout=300):
    """``{row: (seconds, CPU seconds, peak RSS MB)}`` of one run of each process."""
    port = _free_port()
    commands = {
        ROWS[0]: [sys.executable, "-c", "import tensorflow"],
        ROWS[1]: [sys.executable, "-c", "import frcnn_lib.cli.predict, frcnn_lib.model"],
        ROWS[2]: FRCNN + ["predict", "--model", model, image, "--out", os.path.join(folder, "out"),
                          "--quiet"],
        ROWS[3]: FRCNN + ["serve", "--model", model, "--port", str(port), "--quiet"],
    }

    def finish(row, run):
        if row != ROWS[3]:
            result = run.finish(timeout)
            run.check()
            return result
        run.seconds, run.cpu = _first_answer(run, port, image, timeout)
        os.killpg(run.process.pid, signal.SIGINT)
        result = run.finish(60)
        run.check((0, 130, -signal.SIGINT))
        return result

    runs, out = {}, {}
    for i, (row, command) in enumerate(commands.items()):
        runs[row] = Run(command, os.path.join(folder, f"{i}.log"))
        if not together:            # one after the other: each alone on the machine
            out[row] = finish(row, runs[row])
    for row, run in runs.items():
        if row not in out:
            out[row] = finish(row, run)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help=".keras file (default: untrained shapes_cpu preset)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the four processes (default 3)")
    p.add_argument("--quick", action="store_true",
                   help="one round, processes started together: a smoke run (timings mean nothing)")
    args = p.parse_args()
    if args.quick:
        args.rounds = 1
    print(machine_info())
    with tempfile.TemporaryDirectory() as folder:
        model = args.model or untrained_shapes_model(folder)
        image = _image(folder)
        rounds = [one_round(model, image, folder, together=args.quick) for _ in range(args.rounds)]
    model_name = args.model or "shapes_cpu preset, untrained"
    note = " (quick: started together, timings mean nothing)" if args.quick else ""
    print(f"model: {model_name}; {args.rounds} round(s){note}")
    floor = statistics.median(r[ROWS[0]][0] for r in rounds)
    floor_cpu = statistics.median(r[ROWS[0]][1] for r in rounds)
    print(f"\n| {'process':40s} | {'median s':>8s} | {'runs s':>16s} | {'/ floor':>7s} | "
          f"{'- floor s':>9s} | {'CPU s':>6s} | {'CPU - floor':>11s} | {'peak RSS MB':>11s} |")
    print("|" + "|".join("-" * (n + 2) for n in (40, 8, 16, 7, 9, 6, 11, 11)) + "|")
    medians = {}
    for row in ROWS:
        times = [r[row][0] for r in rounds]
        median, cpu = statistics.median(times), statistics.median(r[row][1] for r in rounds)
        medians[row] = median, cpu
        rss = max(r[row][2] for r in rounds)
        runs = " ".join(f"{t:.1f}" for t in times)
        print(f"| {row:40s} | {median:8.2f} | {runs:>16s} | {median / floor:7.2f} | "
              f"{median - floor:+9.2f} | {cpu:6.2f} | {cpu - floor_cpu:+11.2f} | {rss:11.0f} |")
    (predict, predict_cpu), (serve, serve_cpu) = medians[ROWS[2]], medians[ROWS[3]]
    print(f"SUMMARY predict = floor {predict - floor:+.2f} s ({predict / floor:.2f}x; goal <= +2 s; "
          f"CPU {predict_cpu - floor_cpu:+.2f} s), serve first answer {serve:.2f} s "
          f"({serve / floor:.2f}x floor, floor {serve - floor:+.2f} s; goal <= 10 s)")

if __name__ == "__main__":
    main()
