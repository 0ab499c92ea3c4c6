"""The tasks a ``rlrf worker`` runs: the very functions of embedded mode, behind Celery.

CPU workers (``--queue cpu``) own one ``WorkerPool`` each (spawned render processes with per-SVG
limits), so a hostile SVG still costs one rollout, never the task. References travel once through
Redis (``rlrf:ref:<key>``) and are kept in a small per-process LRU.

GPU workers (``--queue gpu``) own one ``ModelScorer``: the models are loaded once per process and
its batchers merge the embedding tasks that the worker's threads run at once (several groups, from
several API processes) into full forward passes.
"""

from __future__ import annotations

import threading
import time
from typing import Any, cast

from celery import Celery

from services.reward_api import png
from services.reward_api.components import Canvas
from services.reward_api.core.settings import Settings
from services.reward_api.lru import LRU
from services.reward_api.models.scorer import FEATURES, ModelScorer
from services.reward_api.pipeline import LocalBackend, check_settings, render_pool
from services.reward_api.sandbox import TaskFailure
from services.reward_api.worker import wire
from services.reward_api.worker.celery_app import (
    EMBED,
    REFERENCE_KEY,
    RENDER_REFERENCE,
    SCORE_CHUNK,
    make_celery,
    redis_client,
)


class WorkerState:
    """What one worker process shares across its task threads: the render pool and references."""

    def __init__(self, settings: Settings) -> None:
        check_settings(settings)
        self.settings = settings
        self.redis = redis_client(settings)
        self._lock = threading.Lock()
        self._backend: LocalBackend | None = None
        self._references: LRU[str, Canvas] = LRU(settings.reference_cache_size)
        self.models = ModelScorer(settings)

    @property
    def backend(self) -> LocalBackend:
        with self._lock:
            if self._backend is None:
                self._backend = LocalBackend(render_pool(self.settings))
            return self._backend

    def reference(self, key: str | None) -> Canvas | None:
        if key is None:  # a text-only group: nothing to compare canvases against
            return None
        canvas = self._references.get(key)  # least recently used goes first: a hot reference stays in use
        if canvas is None:
            stored = self.redis.get(REFERENCE_KEY.format(key))
            if stored is None:
                raise LookupError(f"reference {key[:12]} is not in Redis (expired or never stored)")
            canvas = Canvas(png.decode(cast(bytes, stored)))  # the client does not decode responses: bytes
            self._references.put(key, canvas)
        return canvas

    def close(self) -> None:
        self.models.close()
        with self._lock:
            if self._backend is not None:
                self._backend.pool.close()


def make_worker_app(settings: Settings) -> tuple[Celery, WorkerState]:
    """The Celery app with the tasks registered, bound to one ``WorkerState``."""
    app = make_celery(settings)
    state = WorkerState(settings)

    @app.task(name=SCORE_CHUNK)
    def score_chunk(reference_key: str | None, job: dict[str, Any], svgs: list[str]) -> list[dict[str, Any]]:
        # The threads pool cannot enforce Celery's time limit: the render pool does (what has not started by then
        # fails as TaskDeadline, status error; what runs is bounded by render_timeout_s).
        backend = state.backend
        deadline = time.monotonic() + state.settings.task_time_limit_s
        outcomes = backend.score(
            reference_key, state.reference(reference_key), svgs, wire.job_from_wire(job), deadline=deadline
        )
        return [wire.outcome_to_wire(o) for o in outcomes]

    @app.task(name=RENDER_REFERENCE)
    def render_reference(svg: str, job: dict[str, Any]) -> dict[str, Any]:
        rendered = state.backend.render_reference(svg, wire.job_from_wire(job))
        if isinstance(rendered, TaskFailure):
            return wire.outcome_to_wire(rendered)
        return {
            "status": rendered.status.value,
            "detail": rendered.detail,
            "intrinsic_size": list(rendered.intrinsic_size),
            "png_b64": None if rendered.image is None else wire.b64(png.encode(rendered.image)),
        }

    @app.task(name=EMBED)
    def embed(inputs: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
        texts = {f for f in inputs if FEATURES[f].input == "text"}
        embedded = state.models.embed(wire.inputs_from_wire(inputs, texts))
        return {feature: wire.array_to_wire(array) for feature, array in embedded.items()}

    return app, state
