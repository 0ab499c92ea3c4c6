"""A pool of spawned worker processes that run untrusted rendering under hard limits.

Why not ``concurrent.futures`` or ``pebble``: a crashed worker breaks a whole
``ProcessPoolExecutor``, and neither lets us (1) stream results of a chunk back one by one, so the
wall-clock limit applies to each SVG and not to the chunk, nor (2) keep the group's reference in the
worker that already has it. This pool does both, and little else:

* Each worker is a *spawned* process (no forked locks or CUDA state) that sets ``RLIMIT_AS``, pins
  OpenCV to one thread and raises glibc's mmap threshold (per-image arrays then reuse the heap
  instead of faulting in fresh pages: metric code ran 2-4x faster here).
* A dispatcher thread hands out chunks of up to ``chunk_size`` items. A worker answers each item as
  soon as it is done, so the parent always knows which item is running and since when.
* An item over ``timeout_s`` has its worker SIGKILLed: that item fails with ``TaskTimeout``. A
  worker that dies (segfault, abort, OOM kill) fails its current item with ``TaskCrash``. Either
  way the rest of its chunk is re-queued and a fresh worker takes the slot.
* Contexts (the prepared reference) are sent once per worker and kept there in a small LRU that the
  parent owns: it tells the worker what to drop, so both sides always agree on what the worker holds.

Callers get one ``Future`` per item; ``run`` is the blocking convenience. It is thread-safe.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import select
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger(__name__)

_CONTEXT_SLOTS = 32


class TaskFailure(Exception):
    """Base of the per-item failures a pool reports instead of a result."""


class TaskTimeout(TaskFailure):
    """The item ran past the wall-clock limit; its worker was killed."""


class TaskCrash(TaskFailure):
    """The worker died while running the item (signal, abort, out of memory)."""


class TaskError(TaskFailure):
    """The item's function raised: a bug on our side, never a verdict on the input."""


class PoolClosed(TaskFailure):
    """The pool was shut down before the item ran."""


@dataclass(eq=False)
class _Task:
    fn: Callable[..., Any]
    context_key: Hashable
    context: Any
    item: Any
    future: Future[Any]


@dataclass(eq=False)
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    ready: bool = False
    contexts: OrderedDict[Hashable, None] = field(default_factory=OrderedDict)
    inflight: deque[_Task] = field(default_factory=deque)
    started: float = 0.0


class WorkerPool:
    """Supervised process pool with per-item timeouts and crash isolation.

    Args:
        workers: number of worker processes.
        timeout_s: wall-clock limit per item.
        memory_mb: ``RLIMIT_AS`` of each worker (address space, so leave room for libraries).
        chunk_size: items sent to a worker per message.
    """

    def __init__(self, *, workers: int = 2, timeout_s: float = 3.0, memory_mb: int = 2048, chunk_size: int = 8) -> None:
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.chunk_size = chunk_size
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._incoming: deque[_Task] = deque()
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self._poller = select.poll()
        self._poller.register(self._wake_r.fileno(), select.POLLIN)
        self._closed = False
        self.restarts = 0  # workers replaced after timeouts and crashes
        self._startup_failures = 0
        self._pending_len = 0
        self._workers = [self._spawn() for _ in range(workers)]
        self._thread = threading.Thread(target=self._dispatch, name="rlrf-dispatcher", daemon=True)
        self._thread.start()

    # public ---------------------------------------------------------------------------------
    def submit(
        self, fn: Callable[..., Any], items: Sequence[Any], *, context_key: Hashable = None, context: Any = None
    ) -> list[Future[Any]]:
        """Queue ``fn(context, item)`` for every item; one future per item, in order."""
        tasks = [_Task(fn, context_key, context, item, Future()) for item in items]
        with self._lock:
            if self._closed:
                raise PoolClosed("the worker pool is closed")
            self._incoming.extend(tasks)
        self._wake_w.send_bytes(b"x")
        return [task.future for task in tasks]

    def run(
        self, fn: Callable[..., Any], items: Sequence[Any], *, context_key: Hashable = None, context: Any = None
    ) -> list[Any]:
        """Blocking ``submit``: each entry is the result or the ``TaskFailure`` that replaced it."""
        try:
            futures = self.submit(fn, items, context_key=context_key, context=context)
        except PoolClosed as exc:
            return [exc] * len(items)
        out: list[Any] = []
        for future in futures:
            try:
                out.append(future.result())
            except TaskFailure as exc:
                out.append(exc)
        return out

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def queued(self) -> int:
        """Items waiting for a worker (for the queue-depth metric)."""
        return len(self._incoming) + self._pending_len

    @property
    def size(self) -> int:
        """Worker processes this pool keeps."""
        return len(self._workers)

    @property
    def ready_workers(self) -> int:
        """Workers that finished starting and can take work (for readiness probes)."""
        return sum(worker.ready for worker in self._workers)

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Block until every worker has started, or ``timeout`` passes; True if all are ready."""
        deadline = time.monotonic() + timeout
        while self.ready_workers < len(self._workers):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        """Stop the dispatcher and the workers; pending items fail with ``PoolClosed``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake_w.send_bytes(b"x")
        self._thread.join(timeout=10)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # dispatcher -----------------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=_worker_main, args=(child, self.memory_mb), name="rlrf-render", daemon=True)
        process.start()
        child.close()
        self._poller.register(parent.fileno(), select.POLLIN)
        self._poller.register(process.sentinel, select.POLLIN)
        return _Worker(process, parent)

    def _dispatch(self) -> None:
        pending: deque[_Task] = deque()
        try:
            while True:
                with self._lock:
                    pending.extend(self._incoming)
                    self._incoming.clear()
                    closed = self._closed
                if closed:
                    break
                self._pending_len = len(pending)
                # Split what is queued evenly over the workers, so one group never lands on one worker.
                size = min(self.chunk_size, -(-len(pending) // len(self._workers)))
                for worker in self._workers:
                    if worker.ready and not worker.inflight and pending:
                        self._assign(worker, pending, size)
                self._wait_and_collect(pending)
        except Exception:  # pragma: no cover - a dispatcher bug must not hang callers
            log.exception("worker pool dispatcher failed")
        finally:
            self._shutdown(pending)

    def _assign(self, worker: _Worker, pending: deque[_Task], size: int) -> None:
        head = pending.popleft()
        chunk = [head]
        while pending and len(chunk) < size and pending[0].fn is head.fn and pending[0].context_key == head.context_key:
            chunk.append(pending.popleft())
        chunk = [task for task in chunk if not task.future.cancelled()]
        if not chunk:
            return
        try:
            # The parent alone decides what a worker holds: it evicts (least recently used first) with an
            # explicit "drop", and the worker never evicts on its own, so the two sides cannot disagree.
            if head.context_key not in worker.contexts:
                while len(worker.contexts) >= _CONTEXT_SLOTS:
                    evicted, _ = worker.contexts.popitem(last=False)
                    worker.conn.send(("drop", evicted))
                worker.conn.send(("context", head.context_key, head.context))
                worker.contexts[head.context_key] = None
            else:
                worker.contexts.move_to_end(head.context_key)
            worker.conn.send(("run", head.fn, head.context_key, [task.item for task in chunk]))
        except (OSError, ValueError):  # worker died between checks; its sentinel will fire
            pass
        worker.inflight.extend(chunk)
        worker.started = time.monotonic()

    def _wait_and_collect(self, pending: deque[_Task]) -> None:
        now = time.monotonic()
        busy = [w for w in self._workers if w.inflight]
        timeout = min((w.started + self.timeout_s - now for w in busy), default=None)
        # One persistent poll set (fds registered at spawn): wait() would rebuild a selector per call.
        events = self._poller.poll(None if timeout is None else max(0, math.ceil(timeout * 1000)))
        ready = {fd for fd, _ in events}
        if self._wake_r.fileno() in ready:
            while self._wake_r.poll():
                self._wake_r.recv_bytes()
        for index, worker in enumerate(self._workers):
            exited = worker.process.sentinel in ready
            readable = worker.conn.fileno() in ready or exited
            if readable and (not self._drain(worker) or exited):  # results first, then the death
                self._replace(index, pending, TaskCrash(f"render worker died (exit code {worker.process.exitcode})"))
                continue
            if worker.inflight and time.monotonic() - worker.started > self.timeout_s:
                worker.process.kill()
                self._replace(index, pending, TaskTimeout(f"render exceeded {self.timeout_s:g} s"))

    def _drain(self, worker: _Worker) -> bool:
        """Read every message the worker has sent; False once its pipe is closed."""
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                kind = message[0]
                if kind == "ready":
                    worker.ready = True
                    self._startup_failures = 0
                    continue
                task = worker.inflight.popleft()
                _settle(task.future, message[1] if kind == "ok" else TaskError(message[1]))
                worker.started = time.monotonic()
        except (EOFError, OSError):
            return False
        return True

    def _replace(self, index: int, pending: deque[_Task], failure: TaskFailure) -> None:
        worker = self._workers[index]
        worker.process.join(timeout=5)
        self._poller.unregister(worker.conn.fileno())
        self._poller.unregister(worker.process.sentinel)
        worker.conn.close()
        if not worker.ready:  # died before it could serve: a broken install, not a hostile SVG
            self._startup_failures += 1
            if self._startup_failures >= 3:
                broken = TaskError(f"render workers fail to start (exit code {worker.process.exitcode})")
                while pending:
                    _settle(pending.popleft().future, broken)
            time.sleep(min(2.0, 0.1 * self._startup_failures))
        log.warning("replacing render worker pid=%s: %s", worker.process.pid, failure)
        self.restarts += 1
        self._workers[index] = self._spawn()
        if worker.inflight:
            pending.extendleft(reversed(worker.inflight))  # the rest of the chunk goes first, in order
            _settle(pending.popleft().future, failure)

    def _shutdown(self, pending: deque[_Task]) -> None:
        with self._lock:
            self._closed = True
            pending.extend(self._incoming)
            self._incoming.clear()
        for task in [*pending, *(task for worker in self._workers for task in worker.inflight)]:
            _settle(task.future, PoolClosed("the worker pool is closed"))
        for worker in self._workers:
            try:
                worker.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 2
        for worker in self._workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=2)
            worker.conn.close()


def _settle(future: Future[Any], outcome: Any) -> None:
    """Resolve a future unless its caller cancelled it meanwhile."""
    try:
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
    except InvalidStateError:
        pass


# worker process ------------------------------------------------------------------------------
def _worker_main(conn: Connection, memory_mb: int) -> None:
    """Entry point of a spawned worker: set limits, then serve chunks until told to stop."""
    _limit_worker(memory_mb)
    contexts: OrderedDict[Hashable, Any] = OrderedDict()
    conn.send(("ready",))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        if message[0] == "context":
            _, key, value = message
            contexts[key] = value
            continue
        if message[0] == "drop":
            contexts.pop(message[1], None)
            continue
        _, fn, key, items = message
        if key not in contexts:  # the parent sends every context before its first use: a protocol bug
            for _item in items:
                conn.send(("error", f"ContextMissing: context {key!r} was never sent to this worker"))
            continue
        context = contexts[key]
        for item in items:
            try:
                reply: tuple[str, Any] = ("ok", fn(context, item))
            except Exception as exc:  # reported per item as TaskError
                reply = ("error", f"{type(exc).__name__}: {exc}"[:2000])
            conn.send(reply)


def _limit_worker(memory_mb: int) -> None:
    import ctypes
    import resource

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 * 1024 * 1024)  # M_MMAP_THRESHOLD: keep image buffers on the heap
        libc.mallopt(-1, 256 * 1024 * 1024)  # M_TRIM_THRESHOLD: do not hand them back each time
    except OSError:  # not glibc: the defaults are merely slower
        pass
    import cv2  # imported here, before the memory cap, so its start-up allocations fit

    cv2.setNumThreads(1)
    import services.reward_api.scoring  # noqa: F401 - warm imports (numpy, renderers) before the cap

    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
