"""``POST /score`` (one rollout group) and ``POST /score/batch`` (several, e.g. one trainer rank's)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from services._http import error_responses
from services.reward_api.api.deps import ServiceDep, require_token
from services.reward_api.api.recent import Renders
from services.reward_api.api.service import Scored
from services.reward_api.core.results import RolloutResult
from services.reward_api.core.schemas import ScoreRequest

router = APIRouter(
    tags=["scoring"],
    dependencies=[Depends(require_token)],
    responses=error_responses(400, 401, 413, 422, 429, 500, 503),
)


class ScoreResponse(BaseModel):
    """Per-rollout totals (``null`` = infrastructure error, never a score), details, stage timings."""

    rewards: list[float | None]
    results: list[RolloutResult]
    timings_ms: dict[str, float] = Field(default_factory=dict)
    renders: Renders | None = Field(None, description="Thumbnails, only when the request set 'renders'.")

    @classmethod
    def of(cls, scored: Scored, *, renders: bool = False) -> ScoreResponse:
        result, capture = scored
        thumbnails = Renders.of(capture) if renders and capture is not None else None
        return cls(rewards=result.rewards, results=result.results, timings_ms=result.timings_ms, renders=thumbnails)


class BatchRequest(BaseModel):
    groups: list[ScoreRequest] = Field(min_length=1, max_length=256)


class BatchResponse(BaseModel):
    groups: list[ScoreResponse]


@router.post("/score", response_model=ScoreResponse)
async def score(request: ScoreRequest, service: ServiceDep) -> ScoreResponse:
    """Score one rollout group against its reference; results come back in completion order."""
    (result,) = await service.score_groups([request])
    return ScoreResponse.of(result, renders=request.renders)


@router.post("/score/batch", response_model=BatchResponse)
async def score_batch(request: BatchRequest, service: ServiceDep) -> BatchResponse:
    """Score several groups concurrently; results in request order."""
    results = await service.score_groups(request.groups)
    return BatchResponse(groups=[ScoreResponse.of(r, renders=g.renders) for g, r in zip(request.groups, results)])
