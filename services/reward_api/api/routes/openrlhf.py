"""``POST /openrlhf/reward``: OpenRLHF's remote reward protocol on top of the same pipeline.

OpenRLHF (``--reward.remote_url http://HOST:8000/openrlhf/reward``, with ``--data.label_key``
naming the dataset column that holds the reference; before 0.10.2 ``--remote_rm_url`` and
``--label_key``) posts ``{"query", "prompts", "labels"}``: each query is prompt + response. The
label carries the reference, either as raw SVG code or as a JSON object with the fields of
``reference`` in ``POST /score`` (``{"svg": ...}``, ``{"image_b64": ...}``, optionally ``"text"``).
Samples with the same label in one request form one rollout group. Since 0.9.1 OpenRLHF sends one
sample per request; the samples of a prompt still share one reference render, because the pipeline
caches prepared references by content, and no component depends on the rest of the group.

OpenRLHF cannot represent "no reward": its client retries a failed request 5 times 1 s apart, then
leaves the reward ``None`` and the run dies in its experience maker. So a rollout that hits an
infrastructure error (or a 429) is scored again with backoff for up to ``openrlhf_hold_s`` (below
OpenRLHF's 180 s request timeout) before the request fails with 503; no score is ever invented.
"""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, ValidationError

from services._http import error_responses
from services.reward_api.api.deps import ServiceDep, require_token
from services.reward_api.api.service import RewardService
from services.reward_api.core.errors import BackendError, InvalidRequestError, OverloadedError
from services.reward_api.core.results import RolloutResult, Status
from services.reward_api.core.schemas import ReferenceIn, ScoreRequest

router = APIRouter(
    tags=["openrlhf"],
    dependencies=[Depends(require_token)],
    responses=error_responses(400, 401, 413, 422, 429, 500, 503),
)

_MAX_DELAY_S = 5.0


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
    pending = [(_reference(label), members) for label, members in groups.items()]
    per_sample = await _score_holding(service, pending, responses)
    rewards = [float(r.reward) for r in per_sample]  # type: ignore[arg-type]
    names = sorted({name for r in per_sample for name in r.components})
    extra = {name: [r.components.get(name, 0.0) for r in per_sample] for name in names}
    extra["ok"] = [1.0 if r.status is Status.ok else 0.0 for r in per_sample]
    return OpenRLHFResponse(rewards=rewards, scores=rewards, extra_logs=extra)


async def _score_holding(
    service: RewardService, pending: list[tuple[ReferenceIn, list[int]]], responses: list[str]
) -> list[RolloutResult]:
    """Score every sample; re-score only those that failed on our side until ``openrlhf_hold_s``."""
    deadline = time.monotonic() + service.settings.openrlhf_hold_s
    out: dict[int, RolloutResult] = {}
    attempt = 0
    while True:
        try:
            requests = [
                ScoreRequest(reference=ref, completions=[responses[i] for i in members]) for ref, members in pending
            ]
        except ValidationError as exc:  # e.g. more samples under one label than a group may hold
            raise InvalidRequestError(f"these samples do not form valid rollout groups: {exc}") from None
        failed: list[tuple[ReferenceIn, list[int]]] = []
        try:
            results = await service.score_groups(requests)
        except (BackendError, OverloadedError) as exc:
            failed, cause = pending, f"{type(exc).__name__}: {exc}"
        else:
            for (ref, members), (group, _) in zip(pending, results, strict=True):
                retry = [i for i, r in zip(members, group.results, strict=True) if r.status is Status.error]
                out.update((i, r) for i, r in zip(members, group.results, strict=True) if r.status is not Status.error)
                if retry:
                    failed.append((ref, retry))
                    cause = next(r.detail for r in group.results if r.status is Status.error) or "error"
        if not failed:
            return [out[i] for i in range(len(responses))]
        delay = min(_MAX_DELAY_S, 0.25 * 2**attempt)
        if time.monotonic() + delay > deadline:
            raise BackendError(
                f"infrastructure error while scoring, still failing after {attempt + 1} attempts ({cause}); "
                "retry (no reward was invented)"
            )
        await asyncio.sleep(delay)
        pending, attempt = failed, attempt + 1


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
