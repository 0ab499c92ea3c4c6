"""``/healthz`` (the process answers), ``/readyz`` (render workers up), ``/metrics`` (Prometheus)."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.reward_api.api.deps import ServiceDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: cheap, no dependency checked."""
    return {"status": "ok"}


_Responses = dict[int | str, dict[str, Any]]  # FastAPI's type of a route's extra responses
_NOT_READY: _Responses = {503: {"description": "Not ready: the same body, with status 'not ready'."}}
_PROMETHEUS: _Responses = {200: {"description": "Prometheus text format.", "content": {CONTENT_TYPE_LATEST: {}}}}


@router.get("/readyz", responses=_NOT_READY)
async def readyz(service: ServiceDep, response: Response) -> dict[str, object]:
    """Readiness: render workers are up (embedded: all of them; distributed: Redis and >= 1 worker)."""
    state = await anyio.to_thread.run_sync(service.pipeline.backend.readiness)
    if not state["ready"]:
        response.status_code = 503
    return {"status": "ok" if state["ready"] else "not ready", **state}


@router.get("/metrics", response_class=Response, responses=_PROMETHEUS)
async def metrics(service: ServiceDep) -> Response:
    """Prometheus text format: requests, rollouts, statuses, stage latencies, queue depth."""
    # Only the queue length: readiness would broadcast a ping to every Celery worker on each scrape.
    queued = await anyio.to_thread.run_sync(service.pipeline.backend.queue_depth)
    if queued is not None:
        service.metrics.queue_depth.set(queued)
    pool = getattr(service.pipeline.backend, "pool", None)
    if pool is not None:
        service.metrics.worker_restarts.set(pool.restarts)
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
