"""Distributed mode's ``Backend``: the pipeline's sandboxed work as Celery tasks on Redis.

A group is split into chunks of ``celery_chunk_size`` so several workers share it. Results are
collected by one thread per API process that polls Redis for every outstanding task at once
(``MGET`` on Celery's result keys) and resolves futures: no request thread and no event loop ever
blocks in ``AsyncResult.get()``, and one Redis round trip serves all requests in flight. Rollouts
not back by ``request_deadline_s`` (a lost worker whose task was not redelivered in time, Redis
down) fail with ``TaskError``: status ``error``, reward null.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import numpy as np
import redis

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
)

log = logging.getLogger(__name__)
_POLL_S = 0.005


class CeleryBackend:
    """Sends sandboxed work to ``rlrf worker`` processes through Redis."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = make_celery(settings)
        self.redis = redis.Redis.from_url(settings.redis_url)
        self._pending: dict[str, Future[Any]] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._collector = threading.Thread(target=self._collect, name="rlrf-celery-results", daemon=True)
        self._collector.start()

    # Backend protocol ---------------------------------------------------------------------------
    def render_reference(self, svg: str, job: RenderJob) -> ReferenceRender | TaskFailure:
        (data,) = self._wait([self._send(RENDER_REFERENCE, [svg, wire.job_to_wire(job)])])
        if isinstance(data, TaskFailure):
            return data
        if "failure" in data:
            failure = wire.outcome_from_wire(data)
            assert isinstance(failure, TaskFailure)
            return failure
        image = None if data["png_b64"] is None else wire.image_from_png(wire.unb64(data["png_b64"]))
        return ReferenceRender(image, tuple(data["intrinsic_size"]), Status(data["status"]), data["detail"])

    def score(
        self, key: str, reference: Canvas | None, svgs: Sequence[str], job: RenderJob
    ) -> list[Outcome | TaskFailure]:
        if not svgs:
            return []
        try:  # workers fetch the canvas by key, once each: tasks stay small
            if reference is not None:
                self.redis.set(REFERENCE_KEY.format(key), wire.image_to_png(reference.image), ex=REFERENCE_TTL_S)
        except redis.RedisError as exc:
            return [TaskError(f"Redis unavailable: {exc}")] * len(svgs)
        reference_key = key if reference is not None else None
        size = self.settings.celery_chunk_size
        chunks = [list(svgs[i : i + size]) for i in range(0, len(svgs), size)]
        job_wire = wire.job_to_wire(job)
        replies = self._wait([self._send(SCORE_CHUNK, [reference_key, job_wire, chunk]) for chunk in chunks])
        outcomes: list[Outcome | TaskFailure] = []
        for chunk, reply in zip(chunks, replies):
            if isinstance(reply, TaskFailure):
                outcomes += [reply] * len(chunk)
            else:
                outcomes += [wire.outcome_from_wire(item) for item in reply]
        return outcomes

    def embed(self, inputs: Mapping[str, Sequence[Any]]) -> dict[str, np.ndarray]:
        """One task on the GPU queue per call; a GPU worker batches it with what else is in flight."""
        (reply,) = self._wait([self._send(EMBED, [wire.inputs_to_wire(inputs)], queue=self.settings.gpu_queue)])
        if isinstance(reply, TaskFailure):
            raise BackendError(f"GPU workers: {reply}")
        return {feature: wire.array_from_wire(data) for feature, data in reply.items()}

    def readiness(self) -> dict[str, object]:
        """Ready when Redis answers and at least one ``rlrf worker`` replies to a ping."""
        queued = self.queue_depth()
        if queued is None:
            return {"ready": False, "redis": "unavailable"}
        workers = self.app.control.ping(timeout=1.0) or []
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
        for future in pending:  # nobody will collect these any more: fail them now, not at the deadline
            if not future.done():
                future.set_result(TaskError("the backend was closed"))
        self.redis.close()

    # plumbing ---------------------------------------------------------------------------------
    def _send(self, name: str, args: list[Any], queue: str | None = None) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            # A task nobody took by the deadline is dropped (REVOKED), never run late for a request that is gone.
            result = self.app.send_task(
                name, args=args, queue=queue or self.settings.cpu_queue, expires=self.settings.request_deadline_s
            )
        except Exception as exc:  # broker down: kombu's publish retries are exhausted
            future.set_result(TaskError(f"could not queue {name}: {type(exc).__name__}: {exc}"))
            return future
        with self._lock:
            self._pending[result.id] = future
        return future

    def _wait(self, futures: list[Future[Any]]) -> list[Any]:
        deadline = time.monotonic() + self.settings.request_deadline_s
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
                if pending is future:
                    del self._pending[task_id]

    def _collect(self) -> None:
        backend = self.app.backend
        while not self._closed.is_set():
            with self._lock:
                ids = list(self._pending)
            if not ids:
                time.sleep(_POLL_S)
                continue
            try:
                values = self.redis.mget([backend.get_key_for_task(task_id) for task_id in ids])
            except redis.RedisError as exc:
                log.warning("result poll failed (%s); retrying", exc)
                time.sleep(0.5)
                continue
            done: list[str] = []
            for task_id, value in zip(ids, values):
                if value is None:
                    continue
                try:
                    meta = backend.decode_result(value)
                except Exception as exc:  # one unreadable value must not stop the collector
                    meta = {"status": "FAILURE", "result": f"undecodable result: {type(exc).__name__}: {exc}"}
                if meta["status"] not in ("SUCCESS", "FAILURE", "REVOKED"):
                    continue
                done.append(task_id)
                with self._lock:
                    future = self._pending.pop(task_id, None)
                if future is None:
                    continue
                if meta["status"] == "SUCCESS":
                    future.set_result(meta["result"])
                else:
                    future.set_result(TaskError(f"worker task failed: {meta.get('result')}"))
            if done:  # results carry renders and embeddings: free Redis now, not after result_expires
                try:
                    self.redis.delete(*[backend.get_key_for_task(task_id) for task_id in done])
                except redis.RedisError:
                    pass  # result_expires still removes them
            time.sleep(_POLL_S)
