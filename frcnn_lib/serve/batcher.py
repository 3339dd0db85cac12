"""Micro-batching with a bounded queue: concurrent requests become one ``model.detect`` call.

Glossary: a *request* carries ``n >= 1`` decoded images and a ``Future``; a *batch* is what
the worker thread hands the model in one call: whole requests, oldest first, at most
``max_batch`` images (a single request with more images is a batch of its own, which
``model.detect`` cuts into chunks of ``max_batch``).

Flow of one request::

    with batcher.admit(n) as ticket:      # reserves n of queue_size slots, or raises Busy
        images = decode(...)              # the big allocation happens inside the bound
        future = ticket.submit(images)    # queued; the worker will fill the future
    results, info = future.result()

The bound counts the images admitted but not yet taken into a batch (being decoded or
waiting), so memory stays bounded by ``queue_size + max_batch`` decoded images whatever the
number of clients; beyond it ``admit`` raises :class:`Busy` at once (the app answers 503
with ``Retry-After``) rather than letting a backlog grow.

The worker takes the oldest request, then everything already waiting that fits, and, if the
batch is still short, waits up to ``max_wait_ms`` for more (the latency it trades for
throughput; 0 groups only what is already queued).  ``max_batch=1`` switches batching off.
The model is only ever called from this one thread.

*Idle work* (``idle_work``: callables, e.g. the server's warm-up traces) runs on the same
thread, one item at a time, whenever no request is waiting: a request that arrives during
an item waits for that item only, then goes first.  ``idle_left`` counts the items not yet
finished.
"""
import collections
import math
import threading
import time
from concurrent.futures import Future


class Busy(Exception):
    """The queue is full; ``retry_after`` is a whole number of seconds to wait."""

    def __init__(self, retry_after):
        super().__init__(f"the server is busy (queue full); retry in {retry_after} s")
        self.retry_after = retry_after


class _Request:
    __slots__ = ("images", "future", "queued_at")

    def __init__(self, images):
        self.images = images
        self.future = Future()
        self.queued_at = time.perf_counter()


class Ticket:
    """``n`` reserved slots; :meth:`submit` queues the images, leaving without it frees them."""

    def __init__(self, batcher, n):
        self._batcher, self.n, self._submitted = batcher, n, False

    def submit(self, images):
        if len(images) != self.n:
            raise ValueError(f"admitted {self.n} images, submitted {len(images)}")
        self._submitted = True
        return self._batcher._enqueue(_Request(list(images)))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if not self._submitted:
            self._batcher._release(self.n)
        return False


class Batcher:
    """Runs ``detect(list_of_images) -> list_of_results`` on a worker thread.

    Args:
      detect: called with a list of images, returns one result per image, in order.
      max_batch: most images per call (1: no batching).
      queue_size: most images admitted and not yet taken into a batch.
      max_wait_ms: how long a short batch waits for more requests.
      idle_work: callables run on the worker thread while no request waits (in order).
    """

    def __init__(self, detect, max_batch=8, queue_size=16, max_wait_ms=0.0, idle_work=()):
        if max_batch < 1 or queue_size < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and queue_size must be >= 1 and max_wait_ms >= 0")
        self._detect = detect
        self.max_batch, self.queue_size, self.max_wait = int(max_batch), int(queue_size), max_wait_ms / 1000
        self._cond = threading.Condition()
        self._queue = collections.deque()
        self._reserved = 0            # admitted images not yet taken into a batch
        self._closed = False
        self._idle = collections.deque(idle_work)
        self._idle_left = len(self._idle)   # idle items not yet finished (queued or running)
        self.idle_errors = []                # "TypeName: message" of idle items that failed
        self._seconds_per_image = None  # running mean of the model's time per image
        self.stats = {"batches": 0, "images": 0, "largest_batch": 0, "rejected": 0}
        self._thread = None

    # ------------------------------------------------------------------ lifecycle
    def start(self):
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="frcnn-batcher", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout=30):
        """Finish what is queued, then stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ admission
    def admit(self, n=1):
        """Reserve ``n`` slots (a :class:`Ticket`) or raise :class:`Busy`."""
        with self._cond:
            if self._closed or self._reserved + n > self.queue_size:
                self.stats["rejected"] += 1
                raise Busy(self._retry_after_locked())
            self._reserved += n
        return Ticket(self, n)

    @property
    def pending(self):
        """Images admitted and not yet taken into a batch."""
        with self._cond:
            return self._reserved

    @property
    def idle_left(self):
        """Idle work items not yet finished (queued or running)."""
        with self._cond:
            return self._idle_left

    def _retry_after_locked(self):
        per_image = self._seconds_per_image or 0.1
        return int(min(60, max(1, math.ceil((self._reserved + self.max_batch) * per_image))))

    def _release(self, n):
        with self._cond:
            self._reserved -= n
            self._cond.notify_all()

    def _enqueue(self, request):
        with self._cond:
            self._queue.append(request)
            self._cond.notify_all()
        return request.future

    # ------------------------------------------------------------------ worker
    def _next_batch(self):
        """The next batch of requests (blocking), an idle work item (a callable) when no
        request waits, or None once closed and drained (idle work left then is dropped)."""
        with self._cond:
            while not self._queue:
                if self._closed:
                    self._idle_left -= len(self._idle)
                    self._idle.clear()
                    return None
                if self._idle:
                    return self._idle.popleft()
                self._cond.wait()
            batch = [self._queue.popleft()]
            count = len(batch[0].images)
            deadline = time.monotonic() + self.max_wait
            while count < self.max_batch:
                if self._queue:
                    if count + len(self._queue[0].images) > self.max_batch:
                        break
                    batch.append(self._queue.popleft())
                    count += len(batch[-1].images)
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
            self._reserved -= count
            return batch

    def _run(self):
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if callable(batch):
                self._run_idle(batch)
                continue
            images = [image for request in batch for image in request.images]
            start = time.perf_counter()
            try:
                results = self._detect(images)
                if len(results) != len(images):
                    raise RuntimeError(f"detect returned {len(results)} results for {len(images)} images")
            except Exception as err:  # noqa: BLE001 -- reported to each waiting request
                for request in batch:
                    request.future.set_exception(err)
                continue
            seconds = time.perf_counter() - start
            per_image = seconds / len(images)
            self._seconds_per_image = per_image if self._seconds_per_image is None else (
                0.8 * self._seconds_per_image + 0.2 * per_image)
            self.stats["batches"] += 1
            self.stats["images"] += len(images)
            self.stats["largest_batch"] = max(self.stats["largest_batch"], len(images))
            info = {"model_ms": seconds * 1000, "batch_images": len(images)}
            offset = 0
            for request in batch:
                n = len(request.images)
                request.future.set_result((results[offset:offset + n],
                                           {**info, "queue_ms": (start - request.queued_at) * 1000}))
                offset += n

    def _run_idle(self, work):
        try:
            work()
        except Exception as err:  # noqa: BLE001 -- requests still run; the app reports it
            self.idle_errors.append(f"{type(err).__name__}: {err}")
        finally:
            with self._cond:
                self._idle_left -= 1
