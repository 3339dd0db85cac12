"""``frcnn serve`` under concurrent load: throughput, p50/p95 latency and the server's peak
memory, with micro-batching on (the default: grouping what is already queued; or also waiting
``--max-wait-ms`` for a fuller batch) and off, and with a queue too small for the load.

Each configuration is a real server (``python -m frcnn_lib.cli serve``) in a subprocess on
127.0.0.1; a bounded number of requests (``--requests``) is sent by ``--clients`` threads
(httpx2, one connection each), localhost only, with an overall time bound.  The servers run
side by side and the requests go to them in interleaved rounds (A, B, C, A, B, C, ...), so a
burst of load from another process on a shared machine hits every configuration alike.

The model is the ``shapes_cpu`` preset (small backbone, 160 px canvas, 5 classes) with
random weights, saved to a temporary folder, unless ``--model`` names a ``.keras`` file:
speed does not depend on the weights' values (``detections_score_threshold=0`` keeps the
detection count, hence NMS work, at its maximum whatever the weights).  The images are
240 x 320 JPEGs of blocky noise, resized by the server as any upload is.

Latency is the client's round trip of the 200 answers; throughput counts 200 answers per
second of wall time of the rounds; "CPU ms/req" is the server process's CPU time (all threads)
per 200 answer, the steadier number on a shared machine (it does not grow while another
process holds the cores); "model ms/img" is the median of ``model_ms / batch_images`` over
the answers (wall time of the model call, so it includes the time the call was preempted by
decoding and HTTP work on the same cores); peak RSS is the server's ``VmHWM`` (Linux) at the end.
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
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine_info, untrained_shapes_model  # noqa: E402  (also sets TF_CPP_MIN_LOG_LEVEL)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        blocks = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
        image = np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


class Server:
    def __init__(self, name, model, max_batch, queue_size, max_wait_ms, log_folder):
        self.name, self.port = name, _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(log_folder, f"{name.replace(' ', '_')}.log")
        command = [sys.executable, "-m", "frcnn_lib.cli", "serve", "--model", model,
                   "--port", str(self.port), "--max-batch", str(max_batch),
                   "--queue-size", str(queue_size), "--max-wait-ms", str(max_wait_ms), "--quiet"]
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self.results = []          # (status, seconds, batch_images, model_ms)
        self.wall = self.cpu = 0.0

    def wait_ready(self, http, seconds=300):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name}: server exited:\n{open(self.log_path).read()[-2000:]}")
            try:
                if http.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            except Exception:  # noqa: BLE001 -- not listening yet
                pass
            time.sleep(0.3)
        raise SystemExit(f"{self.name}: no answer on {self.base}/healthz within {seconds} s")

    def peak_rss_mb(self):
        try:
            with open(f"/proc/{self.process.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def cpu_seconds(self):
        """User + system CPU time of the server process so far (Linux), else NaN."""
        try:
            with open(f"/proc/{self.process.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return float("nan")

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def _round(server, images, requests, clients, deadline):
    """``requests`` posts from ``clients`` threads; results appended to ``server.results``."""
    import httpx2

    lock = threading.Lock()
    remaining = [requests]

    def client(index):
        with httpx2.Client(base_url=server.base, timeout=120) as http:
            while time.monotonic() < deadline:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                    n = remaining[0]
                data = images[n % len(images)]
                start = time.perf_counter()
                r = http.post("/v1/detect", files={"file": (f"{n}.jpg", data, "image/jpeg")})
                seconds = time.perf_counter() - start
                body = r.json() if r.status_code == 200 else {}
                with lock:
                    server.results.append((r.status_code, seconds, body.get("batch_images", 0),
                                           body.get("model_ms", 0.0)))
                if r.status_code == 503:    # a polite client: back off a little
                    time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start, cpu = time.perf_counter(), server.cpu_seconds()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    server.wall += time.perf_counter() - start
    server.cpu += server.cpu_seconds() - cpu


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help=".keras file (default: untrained shapes_cpu preset)")
    p.add_argument("--requests", type=int, default=240, help="requests per configuration (default 240)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--max-batch", type=int, default=8, help="max batch when batching (default 8)")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="batching wait of the 'batching + wait' row (default 5)")
    p.add_argument("--max-seconds", type=float, default=600, help="overall time bound (default 600)")
    p.add_argument("--quick", action="store_true", help="30 requests, 4 clients: a smoke run")
    args = p.parse_args()
    if args.quick:
        args.requests, args.clients, args.rounds = 30, 4, 1
    import httpx2

    print(machine_info())
    with tempfile.TemporaryDirectory() as folder:
        model = args.model or untrained_shapes_model(folder)
        queue = 2 * args.clients            # never full: every request is served
        configs = [("batching", args.max_batch, queue, 0.0, args.clients),        # the default
                   ("batching off", 1, queue, 0.0, args.clients),
                   ("batch + wait", args.max_batch, queue, args.max_wait_ms, args.clients),
                   ("small queue", args.max_batch, 4, 0.0, 2 * args.clients)]
        servers = [Server(name, model, b, q, w, folder) for name, b, q, w, _ in configs]
        try:
            with httpx2.Client() as http:
                for server in servers:
                    server.wait_ready(http)
            deadline = time.monotonic() + args.max_seconds
            images = _images(16)
            per_round = max(1, args.requests // args.rounds)
            for _ in range(args.rounds):
                for server, config in zip(servers, configs):
                    _round(server, images, per_round, config[4], deadline)
            rows = []
            for server, (name, batch, queue_size, wait, clients) in zip(servers, configs):
                ok = [s for status, s, _, _ in server.results if status == 200]
                batches = [b for status, _, b, _ in server.results if status == 200]
                per_image = [m / b for status, _, b, m in server.results if status == 200]
                others = sorted({r[0] for r in server.results} - {200, 503})
                ms = sorted(1000 * s for s in ok)
                rows.append(dict(
                    name=name, setting=f"max-batch {batch}, queue {queue_size}, wait {wait:g} ms, "
                                       f"{clients} clients",
                    sent=len(server.results), ok=len(ok),
                    busy=sum(1 for r in server.results if r[0] == 503), others=others,
                    cpu_ms=1000 * server.cpu / max(1, len(ok)),
                    model_ms=statistics.median(per_image) if per_image else float("nan"),
                    rps=len(ok) / server.wall if server.wall else 0.0,
                    p50=statistics.median(ms) if ms else float("nan"),
                    p95=ms[min(len(ms) - 1, int(0.95 * len(ms)))] if ms else float("nan"),
                    batch=statistics.mean(batches) if batches else float("nan"),
                    rss=server.peak_rss_mb()))
        finally:
            for server in servers:
                server.stop()
    print(f"\n{'configuration':14s} {'setting':44s} {'sent':>5s} {'200':>5s} {'503':>5s} "
          f"{'req/s':>6s} {'p50 ms':>7s} {'p95 ms':>7s} {'batch':>5s} {'CPU ms/req':>10s} "
          f"{'model ms/img':>12s} {'peak RSS MB':>11s}")
    for r in rows:
        print(f"{r['name']:14s} {r['setting']:44s} {r['sent']:5d} {r['ok']:5d} {r['busy']:5d} "
              f"{r['rps']:6.1f} {r['p50']:7.0f} {r['p95']:7.0f} {r['batch']:5.1f} {r['cpu_ms']:10.1f} "
              f"{r['model_ms']:12.1f} {r['rss']:11.0f}")
        if r["others"]:
            print(f"  !! other statuses: {r['others']}")
    on, off, small = rows[0], rows[1], rows[3]
    print(f"SUMMARY throughput batching on / off = {on['rps'] / off['rps']:.2f}x "
          f"({on['rps']:.1f} vs {off['rps']:.1f} req/s), p50 {on['p50']:.0f} vs {off['p50']:.0f} ms, "
          f"server CPU per request {on['cpu_ms'] / off['cpu_ms']:.2f}x; "
          f"small queue: {small['busy']} of {small['sent']} answered 503; "
          f"statuses other than 200/503: {sum(len(r['others']) for r in rows)}")


if __name__ == "__main__":
    main()
