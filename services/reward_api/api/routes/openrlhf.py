"""``POST /openrlhf/reward``: OpenRLHF's remote reward protocol on top of the same pipeline.

OpenRLHF (``--remote_rm_url http://HOST:8000/openrlhf/reward``, with ``--label_key`` naming the
dataset column that holds the reference) posts ``{"query", "prompts", "labels"}``: each query is
prompt + response. The label carries the reference, either as raw SVG code or as a JSON object
with the fields of ``reference`` in ``POST /score`` (``{"svg": ...}``, ``{"image_b64": ...}``,
optionally ``"text"``). Samples with the same label form one rollout group.

OpenRLHF turns the rewards into a tensor and cannot represent "no reward", so when any rollout hits
an infrastructure error the whole request fails with 503 (its client retries) instead of scoring it.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, ValidationError

from services._http import error_responses
from services.reward_api.api.deps import ServiceDep, require_token
from services.reward_api.core.errors import BackendError, InvalidRequestError
from services.reward_api.core.results import Status
from services.reward_api.core.schemas import ReferenceIn, ScoreRequest

router = APIRouter(
    tags=["openrlhf"],
    dependencies=[Depends(require_token)],
    responses=error_responses(400, 401, 413, 422, 429, 500, 503),
)


class OpenRLHFRequest(BaseModel):
    query: list[str] = Field(min_length=1, description="Prompt + response, one per sample.")
    prompts: list[str] | None = Field(None, description="The prompts; stripped from the front of each query.")
    labels: list[str] = Field(description="The reference per sample: SVG code or a JSON reference object.")


class OpenRLHFResponse(BaseModel):
    rewards: list[float]
    scores: list[float]
    extra_logs: dict[str, list[float]]


@router.post("/openrlhf/reward", response_model=OpenRLHFResponse)
async def openrlhf_reward(request: OpenRLHFRequest, service: ServiceDep) -> OpenRLHFResponse:
    """Score a batch in OpenRLHF's format; groups are formed by identical labels."""
    if len(request.labels) != len(request.query) or (request.prompts and len(request.prompts) != len(request.query)):
        raise InvalidRequestError("query, prompts and labels must have the same length")
    groups: dict[str, list[int]] = {}
    for index, label in enumerate(request.labels):
        groups.setdefault(label, []).append(index)
    responses = [_response(q, request.prompts[i] if request.prompts else None) for i, q in enumerate(request.query)]
    try:
        score_requests = [
            ScoreRequest(reference=_reference(label), completions=[responses[i] for i in members])
            for label, members in groups.items()
        ]
    except ValidationError as exc:  # e.g. more samples under one label than a group may hold
        raise InvalidRequestError(f"these samples do not form valid rollout groups: {exc}") from None
    results = await service.score_groups(score_requests)
    per_sample: list[Any] = [None] * len(request.query)
    for members, group in zip(groups.values(), results):
        for index, result in zip(members, group.results):
            per_sample[index] = result
    if any(r.status is Status.error for r in per_sample):
        raise BackendError("infrastructure error while scoring; retry (no reward was invented)")
    rewards = [float(r.reward) for r in per_sample]
    names = sorted({name for r in per_sample for name in r.components})
    extra = {name: [r.components.get(name, 0.0) for r in per_sample] for name in names}
    extra["ok"] = [1.0 if r.status is Status.ok else 0.0 for r in per_sample]
    return OpenRLHFResponse(rewards=rewards, scores=rewards, extra_logs=extra)


def _response(query: str, prompt: str | None) -> str:
    return query[len(prompt) :] if prompt and query.startswith(prompt) else query


def _reference(label: str) -> ReferenceIn:
    text = label.strip()
    if text.startswith("{"):
        try:
            return ReferenceIn.model_validate(json.loads(text))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise InvalidRequestError(f"label is neither SVG code nor a reference object: {exc}") from None
    return ReferenceIn(svg=label)
