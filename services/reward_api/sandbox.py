"""A pool of worker processes that run untrusted rendering under hard limits.

Why not ``concurrent.futures`` or ``pebble``: a crashed worker breaks a whole
``ProcessPoolExecutor``, and neither lets us (1) stream results of a chunk back one by one, so the
wall-clock limit applies to each SVG and not to the chunk, (2) keep the group's reference in the
worker that already has it, nor (3) share the workers fairly between the groups in flight. This
pool does those, and little else:

* Each worker is forked from a clean fork server with the renderers imported (none of our threads,
  locks or CUDA state; a replacement is ready in well under a second). It sets ``RLIMIT_AS``, pins
  OpenCV to one thread and raises glibc's mmap threshold (per-image arrays then reuse the heap
  instead of faulting in fresh pages: metric code ran 2-4x faster here).
* Every ``submit`` is a group with a queue of its own. A dispatcher thread hands an idle worker the
  next chunk of the next group in turn (round robin), so a group of SVGs that each run to the time
  limit slows itself, not the groups beside it. A group whose items turn out slow is handed out
  one item at a time, only when no fast group is waiting, and slow groups hold at most half the
  workers. A group may carry a deadline: items
  not started by then fail with ``TaskDeadline`` instead of holding a worker for a request that
  is gone.
* A worker answers each item as soon as it is done, so the parent always knows which item is
  running and since when.
* An item over ``timeout_s`` has its worker SIGKILLed; a worker that dies (segfault, abort, OOM
  kill) loses its item. Either way the rest of its chunk is re-queued and a spare worker, started
  beforehand, takes the slot at once (spawning one costs a second or more of imports). The item
  itself is tried once more on a fresh worker when the failure may not be its own (any crash: a
  kill from outside looks like one; a timeout during which the worker made next to no progress on
  the CPU, or that is stopped: frozen). A second crash is ``TaskCrash``; a second stall ``TaskStalled`` (ours, not the
  item's); a timeout spent rendering is ``TaskTimeout`` at once.
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


class TaskStalled(TaskFailure):
    """The item's worker made no progress through the limit, twice (frozen, starved): not the item's fault."""


class TaskDeadline(TaskFailure):
    """The item's group ran past its deadline before the item could start: nobody waits for it."""


@dataclass(eq=False)
class _Group:
    """The items of one ``submit``: they share a function, a context and a deadline."""

    fn: Callable[..., Any]
    context_key: Hashable
    context: Any
    deadline: float | None
    tasks: deque[_Task] = field(default_factory=deque)
    slow: bool = False  # an item took long: hand the rest out one by one


@dataclass(eq=False)
class _Task:
    group: _Group
    item: Any
    future: Future[Any]
    retried: bool = False


@dataclass(eq=False)
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    ready: bool = False
    contexts: OrderedDict[Hashable, None] = field(default_factory=OrderedDict)
    inflight: deque[_Task] = field(default_factory=deque)
    started: float = 0.0  # when its current item began (monotonic)
    cpu_at_start: float = 0.0  # the worker's CPU seconds then, as it last reported them


_PRELOAD = ["cv2", "resvg", "cairosvg.parser", "cairosvg.surface", "services.reward_api.scoring"]


def _context() -> multiprocessing.context.ForkServerContext:
    """Workers fork from a clean *fork server* that has the renderers imported: a replacement is ready in
    milliseconds instead of the seconds a spawned interpreter spends importing (it matters after every
    timeout). The server is started by exec, not forked from us, so it holds none of our threads or locks."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


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
        self.slow_s = timeout_s / 6  # an item this long marks its group slow
        self._ctx = _context()
        self._lock = threading.Lock()
        self._incoming: deque[_Group] = deque()
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self._poller = select.poll()
        self._poller.register(self._wake_r.fileno(), select.POLLIN)
        self._closed = False
        self.restarts = 0  # workers replaced after timeouts and crashes
        self.retries = 0  # items tried again on a fresh worker
        self._startup_failures = 0
        self._pending_len = 0
        self._workers = [self._spawn() for _ in range(workers)]
        self._spare = self._spawn()  # started and waiting: a killed worker's slot is filled at once
        self._thread = threading.Thread(target=self._dispatch, name="rlrf-dispatcher", daemon=True)
        self._thread.start()

    # public ---------------------------------------------------------------------------------
    def submit(
        self,
        fn: Callable[..., Any],
        items: Sequence[Any],
        *,
        context_key: Hashable = None,
        context: Any = None,
        deadline: float | None = None,
    ) -> list[Future[Any]]:
        """Queue ``fn(context, item)`` for every item as one group; one future per item, in order.

        ``deadline`` (``time.monotonic()`` seconds): items not started by then fail with ``TaskDeadline``.
        """
        group = _Group(fn, context_key, context, deadline)
        group.tasks.extend(_Task(group, item, Future()) for item in items)
        futures = [task.future for task in group.tasks]
        with self._lock:
            if self._closed:
                raise PoolClosed("the worker pool is closed")
            self._incoming.append(group)
        self._wake_w.send_bytes(b"x")
        return futures

    def run(
        self,
        fn: Callable[..., Any],
        items: Sequence[Any],
        *,
        context_key: Hashable = None,
        context: Any = None,
        deadline: float | None = None,
    ) -> list[Any]:
        """Blocking ``submit``: each entry is the result or the ``TaskFailure`` that replaced it."""
        try:
            futures = self.submit(fn, items, context_key=context_key, context=context, deadline=deadline)
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
    def worker_pids(self) -> list[int | None]:
        """Process ids of the serving workers (not the spare), for operators and fault-injection tests."""
        return [worker.process.pid for worker in self._workers]

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
        groups: deque[_Group] = deque()  # groups with queued items, in turn order
        try:
            while True:
                with self._lock:
                    groups.extend(self._incoming)
                    self._incoming.clear()
                    closed = self._closed
                if closed:
                    break
                self._expire(groups)
                for worker in self._workers:
                    if worker.ready and not worker.inflight and groups:
                        self._assign(worker, groups)
                self._pending_len = sum(len(group.tasks) for group in groups)
                self._wait_and_collect(groups)
        except Exception:  # pragma: no cover - a dispatcher bug must not hang callers
            log.exception("worker pool dispatcher failed")
        finally:
            self._shutdown(groups)

    def _expire(self, groups: deque[_Group]) -> None:
        """Fail the queued items of groups past their deadline; drop groups with nothing left."""
        now = time.monotonic()
        for group in list(groups):
            if group.deadline is not None and now > group.deadline:
                while group.tasks:
                    _settle(group.tasks.popleft().future, TaskDeadline("the group's deadline passed first"))
            group_tasks = [task for task in group.tasks if not task.future.cancelled()]
            if len(group_tasks) != len(group.tasks):
                group.tasks = deque(group_tasks)
            if not group.tasks:
                groups.remove(group)

    def _assign(self, worker: _Worker, groups: deque[_Group]) -> None:
        # A slow group waits while a fast one is queued (fast groups finish quickly, so it is not starved
        # for long), and slow groups together hold at most half the workers, so a fast group arriving
        # later finds one free: a group of SVGs that run to the limit costs its own latency, not its
        # neighbours'.
        fast = next((i for i, g in enumerate(groups) if not g.slow), None)
        if fast is None:
            slow_running = sum(1 for w in self._workers if w.inflight and w.inflight[0].group.slow)
            if slow_running >= max(1, len(self._workers) // 2):
                return
            fast = 0
        groups.rotate(-fast)
        group = groups.popleft()
        # Split a group evenly over the workers that can take work, so one group never waits on one worker.
        ready = sum(w.ready for w in self._workers)
        size = 1 if group.slow else min(self.chunk_size, -(-len(group.tasks) // max(1, ready)))
        chunk = [group.tasks.popleft() for _ in range(min(size, len(group.tasks)))]
        if group.tasks:
            groups.append(group)  # its turn comes again after every other group's
        try:
            # The parent alone decides what a worker holds: it evicts (least recently used first) with an
            # explicit "drop", and the worker never evicts on its own, so the two sides cannot disagree.
            if group.context_key not in worker.contexts:
                while len(worker.contexts) >= _CONTEXT_SLOTS:
                    evicted, _ = worker.contexts.popitem(last=False)
                    worker.conn.send(("drop", evicted))
                worker.conn.send(("context", group.context_key, group.context))
                worker.contexts[group.context_key] = None
            else:
                worker.contexts.move_to_end(group.context_key)
            worker.conn.send(("run", group.fn, group.context_key, group.deadline, [task.item for task in chunk]))
        except (OSError, ValueError):  # worker died between checks; its sentinel will fire
            pass
        worker.inflight.extend(chunk)
        worker.started = time.monotonic()

    def _wait_and_collect(self, groups: deque[_Group]) -> None:
        now = time.monotonic()
        wakeups = [w.started + self.timeout_s for w in self._workers if w.inflight]
        wakeups += [g.deadline for g in groups if g.deadline is not None]
        timeout = min((t - now for t in wakeups), default=None)
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
                worker.process.join(timeout=5)
                code = worker.process.exitcode
                # Anything may have killed it (an OOM kill or a SIGKILL from outside looks the same): the
                # item gets a second worker before the crash is blamed on it.
                self._replace(index, groups, TaskCrash(f"render worker died (exit code {code})"), retry=True)
                continue
            if worker.inflight and time.monotonic() - worker.started > self.timeout_s:
                # A worker that used the CPU during the limit was rendering: the SVG is slow. One that made
                # next to no progress was frozen (SIGSTOP, a stuck host): not the SVG's doing, so it is tried again.
                # A stopped process (state T/t) is frozen however much it rendered before the stop.
                cpu, state = _proc_stat(worker.process.pid)
                busy = cpu - worker.cpu_at_start
                worker.process.kill()
                if state in (b"T", b"t") or busy < 0.05 * self.timeout_s:
                    stalled = TaskStalled(f"render worker made no progress in {self.timeout_s:g} s (frozen?)")
                    self._replace(index, groups, stalled, retry=True)
                else:
                    self._replace(index, groups, TaskTimeout(f"render exceeded {self.timeout_s:g} s"), retry=False)
        spare = self._spare
        woke = spare.process.sentinel in ready or spare.conn.fileno() in ready
        if woke and (not self._drain(spare) or spare.process.sentinel in ready):
            self._retire(spare)
            self._spare = self._spawn()

    def _drain(self, worker: _Worker) -> bool:
        """Read every message the worker has sent; False once its pipe is closed."""
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                kind = message[0]
                if kind == "ready":
                    worker.ready = True
                    worker.cpu_at_start = message[1]
                    self._startup_failures = 0
                    continue
                task = worker.inflight.popleft()
                _settle(task.future, message[1] if kind == "ok" else _FAILURES[kind](message[1]))
                now = time.monotonic()
                if now - worker.started > self.slow_s:
                    task.group.slow = True
                worker.started = now
                worker.cpu_at_start = message[2]
        except (EOFError, OSError):
            return False
        return True

    def _retire(self, worker: _Worker) -> None:
        worker.process.join(timeout=5)
        self._poller.unregister(worker.conn.fileno())
        self._poller.unregister(worker.process.sentinel)
        worker.conn.close()

    def _replace(self, index: int, groups: deque[_Group], failure: TaskFailure, *, retry: bool) -> None:
        worker = self._workers[index]
        self._retire(worker)
        if not worker.ready:  # died before it could serve: a broken install, not a hostile SVG
            self._startup_failures += 1
            if self._startup_failures >= 3:
                broken = TaskError(f"render workers fail to start (exit code {worker.process.exitcode})")
                for group in groups:
                    while group.tasks:
                        _settle(group.tasks.popleft().future, broken)
            time.sleep(min(2.0, 0.1 * self._startup_failures))
        log.warning("replacing render worker pid=%s: %s", worker.process.pid, failure)
        self.restarts += 1
        if self._spare.ready:
            self._workers[index], self._spare = self._spare, self._spawn()
        else:
            self._workers[index] = self._spawn()
        if not worker.inflight:
            return
        current = worker.inflight.popleft()
        current.group.slow = True
        if retry and not current.retried:
            current.retried = True
            self.retries += 1
            worker.inflight.appendleft(current)
        else:
            _settle(current.future, failure)
        if worker.inflight:  # the rest of the chunk goes back to the front of its group, in order
            group = worker.inflight[0].group
            group.tasks.extendleft(reversed(worker.inflight))
            if group not in groups:
                groups.append(group)

    def _shutdown(self, groups: deque[_Group]) -> None:
        with self._lock:
            self._closed = True
            groups.extend(self._incoming)
            self._incoming.clear()
        queued = [task for group in groups for task in group.tasks]
        for task in [*queued, *(task for worker in self._workers for task in worker.inflight)]:
            _settle(task.future, PoolClosed("the worker pool is closed"))
        everyone = [*self._workers, self._spare]
        for worker in everyone:
            try:
                worker.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 2
        for worker in everyone:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=2)
            worker.conn.close()


_FAILURES: dict[str, type[TaskFailure]] = {"error": TaskError, "late": TaskDeadline}


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
    conn.send(("ready", time.process_time()))
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
        _, fn, key, deadline, items = message
        if key not in contexts:  # the parent sends every context before its first use: a protocol bug
            for _item in items:
                conn.send(("error", f"ContextMissing: context {key!r} was never sent to this worker", 0.0))
            continue
        context = contexts[key]
        for item in items:
            if deadline is not None and time.monotonic() > deadline:  # one clock for all processes on a host
                conn.send(("late", "the group's deadline passed before this item started", time.process_time()))
                continue
            try:
                reply: tuple[str, Any, float] = ("ok", fn(context, item), time.process_time())
            except Exception as exc:  # reported per item as TaskError
                reply = ("error", f"{type(exc).__name__}: {exc}"[:2000], time.process_time())
            conn.send(reply)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int | None) -> tuple[float, bytes]:
    """User + system CPU seconds and the state letter of a live process (``/proc``); (0, b"?") if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS, fields[0]
    except (OSError, IndexError, ValueError):
        return 0.0, b"?"


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

    try:  # the renderers import lazily; a first render must not spend its time limit importing them
        import cairosvg.parser
        import cairosvg.surface  # noqa: F401
        import resvg  # noqa: F401
    except ImportError:  # pragma: no cover - the render extra is not installed: scoring reports it per SVG
        pass

    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
