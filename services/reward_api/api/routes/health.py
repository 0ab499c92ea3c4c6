"""``/healthz`` (the process answers), ``/readyz`` (render workers up), ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.reward_api.api.deps import ServiceDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: cheap, no dependency checked."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(service: ServiceDep, response: Response) -> dict[str, object]:
    """Readiness: every render worker has started (503 until then)."""
    pool = getattr(service.pipeline.backend, "pool", None)
    ready = pool.ready_workers if pool is not None and not pool.closed else 0
    wanted = service.settings.workers
    if ready < wanted:
        response.status_code = 503
    return {"status": "ok" if ready >= wanted else "starting", "render_workers": ready, "wanted": wanted}


@router.get("/metrics")
async def metrics(service: ServiceDep) -> Response:
    """Prometheus text format: requests, rollouts, statuses, stage latencies, queue depth."""
    pool = getattr(service.pipeline.backend, "pool", None)
    if pool is not None:
        service.metrics.queue_depth.set(pool.queued)
        service.metrics.worker_restarts.set(pool.restarts)
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
