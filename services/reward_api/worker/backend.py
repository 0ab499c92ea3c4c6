"""Distributed mode's ``Backend``: the pipeline's sandboxed work as Celery tasks on Redis.

A group is split into chunks of ``celery_chunk_size`` so several workers share it. Results are
collected by one thread per API process that resolves futures: no request thread and no event loop
ever blocks in ``AsyncResult.get()``. Celery's Redis result backend PUBLISHes every result on its own
key, so the collector SUBSCRIBEs to the keys of the tasks outstanding and waits for them instead of
polling (an ``MGET`` every 5 ms cost more CPU per reward than the rest of the API); one ``MGET`` when
a task is subscribed catches a result that came first, and a sweep every ``_SWEEP_S`` catches any
publish missed while the subscription was being rebuilt.

The API keeps everything needed to send a task again until its result is in, so Redis going away
costs latency, not rollouts:

* a publish that fails (Redis down or unreachable, a dead pooled connection) is retried by the
  collector until the group's deadline;
* a Redis restart (its ``run_id`` changes: the queues, unacknowledged tasks, results and stored
  references of a Redis without persistence are gone) has every outstanding task stored and sent
  again; a task a worker was running meanwhile may then run twice, but its future resolves once;
* a partition shorter than the deadline needs nothing: queued tasks stay in Redis, workers write
  their results there, and the collector reads them once it reaches Redis again.

Rollouts not back by the deadline fail with ``TaskError``: status ``error``, reward null.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis

from services.reward_api import png
from services.reward_api.components import Canvas
from services.reward_api.core.errors import BackendError
from services.reward_api.core.results import Status
from services.reward_api.core.settings import Settings
from services.reward_api.sandbox import TaskError, TaskFailure
from services.reward_api.scoring import Outcome, ReferenceRender, RenderJob
from services.reward_api.worker import wire
from services.reward_api.worker.celery_app import (
    EMBED,
    REFERENCE_KEY,
    REFERENCE_TTL_S,
    RENDER_REFERENCE,
    SCORE_CHUNK,
    make_celery,
    redis_client,
)

log = logging.getLogger(__name__)
_WAKE_S = 0.01  # the collector's longest wait on results before it looks at new tasks (no Redis call)
_SWEEP_S = 0.5  # MGET of every outstanding result: the safety net under the subscription
_EPOCH_CHECK_S = 0.5  # how often the collector asks Redis whether it restarted
_RESEND_S = 0.5  # how often a task that could not be published is tried again


@dataclass(eq=False)
class _Pending:
    """A task the API is waiting for, with what it takes to send it again."""

    name: str
    args: list[Any]
    queue: str
    deadline: float  # time.monotonic()
    future: Future[Any]
    stored: dict[str, bytes] = field(default_factory=dict)  # Redis keys the task reads (the reference canvas)
    task_id: str | None = None  # None: not queued (yet)
    sends: int = 0


class CeleryBackend:
    """Sends sandboxed work to ``rlrf worker`` processes through Redis."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = make_celery(settings)
        self.redis = redis_client(settings)
        self.resent = 0  # tasks sent again after a Redis restart or a failed publish
        self._pending: dict[str, _Pending] = {}  # by task id while queued, by a local id until then
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._work = threading.Event()  # set when a task is sent: an idle collector waits on it
        self._epoch: str | None = None  # Redis run_id the outstanding tasks were sent to
        self._collector = threading.Thread(target=self._collect, name="rlrf-celery-results", daemon=True)
        self._collector.start()

    # Backend protocol ---------------------------------------------------------------------------
    def render_reference(
        self, svg: str, job: RenderJob, *, deadline: float | None = None
    ) -> ReferenceRender | TaskFailure:
        deadline = self._deadline(deadline)
        (data,) = self._wait([self._send(RENDER_REFERENCE, [svg, wire.job_to_wire(job)], deadline)], deadline)
        if isinstance(data, TaskFailure):
            return data
        if "failure" in data:
            failure = wire.outcome_from_wire(data)
            assert isinstance(failure, TaskFailure)
            return failure
        image = None if data["png_b64"] is None else png.decode(wire.unb64(data["png_b64"]))
        return ReferenceRender(image, tuple(data["intrinsic_size"]), Status(data["status"]), data["detail"])

    def score(
        self, key: str, reference: Canvas | None, svgs: Sequence[str], job: RenderJob, *, deadline: float | None = None
    ) -> list[Outcome | TaskFailure]:
        if not svgs:
            return []
        deadline = self._deadline(deadline)
        # Workers fetch the canvas by key, once each: tasks stay small. It is stored again before any resend.
        stored = {} if reference is None else {REFERENCE_KEY.format(key): png.encode(reference.image)}
        reference_key = key if reference is not None else None
        size = self.settings.celery_chunk_size
        chunks = [list(svgs[i : i + size]) for i in range(0, len(svgs), size)]
        job_wire = wire.job_to_wire(job)
        futures = [
            self._send(SCORE_CHUNK, [reference_key, job_wire, chunk], deadline, stored=stored) for chunk in chunks
        ]
        outcomes: list[Outcome | TaskFailure] = []
        for chunk, reply in zip(chunks, self._wait(futures, deadline)):
            if isinstance(reply, TaskFailure):
                outcomes += [reply] * len(chunk)
            else:
                outcomes += [wire.outcome_from_wire(item) for item in reply]
        return outcomes

    def embed(self, inputs: Mapping[str, Sequence[Any]]) -> dict[str, np.ndarray]:
        """One task on the GPU queue per call; a GPU worker batches it with what else is in flight."""
        deadline = self._deadline(None)
        task = self._send(EMBED, [wire.inputs_to_wire(inputs)], deadline, queue=self.settings.gpu_queue)
        (reply,) = self._wait([task], deadline)
        if isinstance(reply, TaskFailure):
            raise BackendError(f"GPU workers: {reply}")
        return {feature: wire.array_from_wire(data) for feature, data in reply.items()}

    def readiness(self) -> dict[str, object]:
        """Ready when Redis answers and at least one ``rlrf worker`` replies to a ping."""
        queued = self.queue_depth()
        if queued is None:
            return {"ready": False, "redis": "unavailable"}
        try:
            workers = self.app.control.ping(timeout=1.0) or []
        except Exception as exc:  # Redis went away between the two calls: not ready, never a 500
            return {"ready": False, "redis": f"unavailable: {type(exc).__name__}"}
        return {"ready": bool(workers), "celery_workers": len(workers), "queued": queued}

    def queue_depth(self) -> int | None:
        """Tasks waiting on the CPU queue: one Redis LLEN, no worker broadcast."""
        try:
            return int(self.redis.llen(self.settings.cpu_queue))
        except redis.RedisError:
            return None

    def close(self) -> None:
        self._closed.set()
        self._collector.join(timeout=5)
        with self._lock:
            pending, self._pending = list(self._pending.values()), {}
        for task in pending:  # nobody will collect these any more: fail them now, not at the deadline
            _resolve(task, TaskError("the backend was closed"))
        self.redis.close()

    # plumbing ---------------------------------------------------------------------------------
    def _deadline(self, deadline: float | None) -> float:
        return time.monotonic() + self.settings.request_deadline_s if deadline is None else deadline

    def _send(
        self,
        name: str,
        args: list[Any],
        deadline: float,
        *,
        queue: str | None = None,
        stored: dict[str, bytes] | None = None,
    ) -> Future[Any]:
        task = _Pending(name, args, queue or self.settings.cpu_queue, deadline, Future(), stored or {})
        if not self._publish(task):  # the collector tries again until the deadline
            with self._lock:
                self._pending[f"unsent-{uuid.uuid4().hex}"] = task
        self._work.set()
        return task.future

    def _publish(self, task: _Pending) -> bool:
        """Store what the task reads and queue it; False (and logged) when Redis cannot be reached."""
        remaining = task.deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            for key, value in task.stored.items():
                self.redis.set(key, value, ex=REFERENCE_TTL_S)
            # A task nobody took by the deadline is dropped (REVOKED), never run late for a request that is gone.
            result = self.app.send_task(task.name, args=task.args, queue=task.queue, expires=remaining)
        except Exception as exc:  # broker down, unreachable, or a dead pooled connection
            log.warning("could not queue %s (%s: %s); retrying until the deadline", task.name, type(exc).__name__, exc)
            return False
        task.task_id = result.id
        task.sends += 1
        with self._lock:
            self._pending[result.id] = task
        return True

    def _wait(self, futures: list[Future[Any]], deadline: float) -> list[Any]:
        out: list[Any] = []
        for future in futures:
            try:
                out.append(future.result(timeout=max(0.0, deadline - time.monotonic())))
            except FutureTimeout:
                self._forget(future)
                out.append(TaskError(f"no result within the {self.settings.request_deadline_s:g} s deadline"))
        return out

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            for task_id, pending in list(self._pending.items()):
                if pending.future is future:
                    del self._pending[task_id]

    def _collect(self) -> None:
        backend = self.app.backend
        pubsub: redis.client.PubSub | None = None
        subscribed: dict[str, bytes] = {}  # task id -> its result key, the channel its result is published on
        by_channel: dict[bytes, str] = {}  # the same, the other way round
        last_epoch_check = last_resend = last_sweep = 0.0
        down_since: float | None = None  # when Redis last stopped answering the collector: logged on recovery
        while not self._closed.is_set():
            now = time.monotonic()
            with self._lock:
                expired = [tid for tid, t in self._pending.items() if t.deadline < now]
                for tid in expired:
                    del self._pending[tid]
                queued = [tid for tid, t in self._pending.items() if t.task_id == tid]
                unsent = {tid: t for tid, t in self._pending.items() if t.task_id != tid}
            try:
                if pubsub is None:
                    pubsub, subscribed, by_channel = self.redis.pubsub(ignore_subscribe_messages=True), {}, {}
                gone = subscribed.keys() - set(queued)  # settled, expired or forgotten
                if gone:
                    channels = [subscribed.pop(tid) for tid in gone]
                    for channel in channels:
                        del by_channel[channel]
                    pubsub.unsubscribe(*channels)
                if not queued and not unsent:
                    self._epoch = None  # nothing outstanding to lose: the next task's check only records the epoch
                    self._work.wait(_SWEEP_S)
                    self._work.clear()
                    continue
                if self._epoch is None or now - last_epoch_check > _EPOCH_CHECK_S:
                    last_epoch_check = now
                    self._check_epoch()
                if unsent and now - last_resend > _RESEND_S:
                    last_resend = now
                    self._resend(unsent)
                new = [tid for tid in queued if tid not in subscribed]
                if new:  # subscribe first, then read: a result stored in between is in one or the other
                    keys = {tid: _bytes(backend.get_key_for_task(tid)) for tid in new}
                    pubsub.subscribe(*keys.values())
                    subscribed.update(keys)
                    by_channel.update((key, tid) for tid, key in keys.items())
                sweep = now - last_sweep > _SWEEP_S
                if sweep:
                    last_sweep = now
                ids = queued if sweep else new
                values = self.redis.mget([backend.get_key_for_task(tid) for tid in ids]) if ids else []
                results = [(tid, value) for tid, value in zip(ids, values) if value is not None]
                message = pubsub.get_message(timeout=_WAKE_S)
                while message is not None:
                    if message["type"] == "message" and message["channel"] in by_channel:
                        results.append((by_channel[message["channel"]], message["data"]))
                    message = pubsub.get_message(timeout=0)
                if down_since is not None:
                    log.warning("Redis reachable again after %.1f s", time.monotonic() - down_since)
                    down_since = None
            except redis.RedisError as exc:
                down_since = time.monotonic() if down_since is None else down_since
                log.warning("Redis unreachable (%s); outstanding tasks wait for it until their deadline", exc)
                if pubsub is not None:
                    pubsub.close()
                pubsub = None  # a new subscription, and a sweep, once Redis answers again
                last_sweep = 0.0
                time.sleep(0.5)
                continue
            done = [tid for tid, value in results if self._settle(tid, value)]
            if done:  # results carry renders and embeddings: free Redis now, not after result_expires
                try:
                    self.redis.delete(*[backend.get_key_for_task(tid) for tid in done])
                except redis.RedisError:
                    pass  # result_expires still removes them
        if pubsub is not None:
            pubsub.close()

    def _settle(self, task_id: str, value: bytes | str) -> bool:
        """Resolve the task's future from its stored result; False while the task is not finished."""
        try:
            meta = self.app.backend.decode_result(value)
        except Exception as exc:  # one unreadable value must not stop the collector
            meta = {"status": "FAILURE", "result": f"undecodable result: {type(exc).__name__}: {exc}"}
        if meta["status"] not in ("SUCCESS", "FAILURE", "REVOKED"):
            return False
        with self._lock:
            task = self._pending.pop(task_id, None)
        if task is not None:
            ok = meta["status"] == "SUCCESS"
            _resolve(task, meta["result"] if ok else TaskError(f"worker task failed: {meta.get('result')}"))
        return True

    def _check_epoch(self) -> None:
        """After a Redis restart nothing sent before it exists any more: send every outstanding task again."""
        epoch = str(self.redis.info("server").get("run_id"))
        previous, self._epoch = self._epoch, epoch
        if previous is None or previous == epoch:
            return
        with self._lock:
            lost = {tid: t for tid, t in self._pending.items() if t.task_id == tid}
        log.warning("Redis restarted (run_id %s -> %s): sending %d outstanding tasks again", previous, epoch, len(lost))
        self._resend(lost)

    def _resend(self, tasks: dict[str, _Pending]) -> None:
        for old_id, task in tasks.items():
            if task.future.done():
                continue
            with self._lock:
                if self._pending.pop(old_id, None) is None:  # settled or forgotten meanwhile
                    continue
            if self._publish(task):
                self.resent += 1
            else:
                with self._lock:
                    self._pending[old_id] = task
                    task.task_id = None
                break  # Redis is not taking work right now: the next round tries again


def _bytes(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else key.encode()


def _resolve(task: _Pending, outcome: Any) -> None:
    if not task.future.done():
        task.future.set_result(outcome)
