"""Routes: ``/v1/judge`` and ``/v1/rubrics`` (token-protected), ``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

import hmac
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services._http import error_responses
from services.judge_proxy.errors import UnauthorizedError
from services.judge_proxy.rubrics import RUBRICS
from services.judge_proxy.schemas import AxisInfo, JudgeRequest, JudgeResponse, RubricInfo, RubricsResponse
from services.judge_proxy.service import JudgeService


def get_service(request: Request) -> JudgeService:
    service: JudgeService = request.app.state.service
    return service


def require_token(request: Request) -> None:
    """With ``RLRF_JUDGE_API_TOKEN`` set, every /v1 route needs ``Authorization: Bearer <token>``."""
    token = get_service(request).settings.api_token
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise UnauthorizedError("missing or wrong bearer token")


ServiceDep = Annotated[JudgeService, Depends(get_service)]

api = APIRouter(prefix="/v1", tags=["judging"], dependencies=[Depends(require_token)])
_ERRORS = error_responses(400, 401, 422, 500, 503)
_Responses = dict[int | str, dict[str, Any]]  # FastAPI's type of a route's extra responses
_NOT_READY: _Responses = {503: {"description": "Not ready: the same body, with status 'not ready'."}}
_PROMETHEUS: _Responses = {200: {"description": "Prometheus text format.", "content": {CONTENT_TYPE_LATEST: {}}}}
operations = APIRouter(tags=["operations"])


@api.post("/judge", response_model=JudgeResponse, responses=_ERRORS)
async def judge(request: JudgeRequest, service: ServiceDep) -> JudgeResponse:
    """Judge each candidate against the reference image and/or prompt; results in candidate order.

    A candidate whose call failed gets ``status: "error"`` with ``retryable``, never a score.
    """
    started = time.monotonic()
    try:
        return await service.judge(request)
    finally:
        service.metrics.request_seconds.observe(time.monotonic() - started)


@api.get("/rubrics", response_model=RubricsResponse, responses=error_responses(401))
async def rubrics() -> RubricsResponse:
    """Registered rubrics: name, version, required inputs, axes with ranges and weights, verdict schema."""
    return RubricsResponse(
        rubrics=[
            RubricInfo(
                name=r.name,
                version=r.version,
                description=r.description,
                inputs=r.inputs,
                axes=[
                    AxisInfo(name=a.name, description=a.description, min=a.low, max=a.high, weight=a.weight)
                    for a in r.axes
                ],
                verdict_schema=r.schema,
            )
            for r in RUBRICS.values()
        ]
    )


@operations.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: cheap, no dependency checked."""
    return {"status": "ok"}


@operations.get("/readyz", responses=_NOT_READY)
async def readyz(service: ServiceDep, response: Response) -> dict[str, object]:
    """Readiness: at least one backend configured and, with caching on, Redis answers."""
    state = await service.readiness()
    if not state["ready"]:
        response.status_code = 503
    return {"status": "ok" if state["ready"] else "not ready", **state}


@operations.get("/metrics", response_class=Response, responses=_PROMETHEUS)
async def metrics(service: ServiceDep) -> Response:
    """Prometheus text format: calls by outcome, cache, retries, tokens, cost, latency."""
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
