"""verl adapter: ``compute_score`` for ``reward.custom_reward_function`` (``path`` = this file).

verl calls ``compute_score(data_source, solution_str, ground_truth, extra_info)`` per sample. The
ground truth is the reference: SVG code, or a JSON object with the fields of ``reference`` in
``POST /score`` (``{"svg": ...}``, ``{"image_b64": ...}``). The service URL comes from
``RLRF_URL`` (default ``http://127.0.0.1:8000``), a token from ``RLRF_API_TOKEN``.

Every path returns the same keys: ``score``, one key per component in ``COMPONENTS`` (a component
the service did not compute reads 0.0) and ``status``. verl has no "no reward" value, so an
infrastructure error raises ``RewardServiceError`` after the client's retries: the step fails
loudly instead of training on an invented score. ``compute_score`` is ``async`` (for verl's async
reward loop); ``compute_score_sync`` is the same for the classic reward managers.
"""

from __future__ import annotations

import json
import os
from typing import Any

from trainer._client import AsyncRewardClient, RewardClient
from trainer._exceptions import RewardServiceError

COMPONENTS = ("pixel_l2", "canny_l2", "length")
_async_client: AsyncRewardClient | None = None
_sync_client: RewardClient | None = None


async def compute_score(
    data_source: str | None,
    solution_str: str,
    ground_truth: str,
    extra_info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Score one rollout against its reference; see the module docstring for the keys."""
    global _async_client
    if _async_client is None:
        _async_client = AsyncRewardClient(_url(), token=os.environ.get("RLRF_API_TOKEN"))
    answer = await _async_client.score(_body(solution_str, ground_truth, extra_info, kwargs))
    return _scores(answer)


def compute_score_sync(
    data_source: str | None,
    solution_str: str,
    ground_truth: str,
    extra_info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Blocking ``compute_score`` for reward managers that call the function synchronously."""
    global _sync_client
    if _sync_client is None:
        _sync_client = RewardClient(_url(), token=os.environ.get("RLRF_API_TOKEN"))
    return _scores(_sync_client.score(_body(solution_str, ground_truth, extra_info, kwargs)))


def _url() -> str:
    return os.environ.get("RLRF_URL", "http://127.0.0.1:8000")


def _body(
    solution: str, ground_truth: str, extra_info: dict[str, Any] | None, kwargs: dict[str, Any]
) -> dict[str, Any]:
    text = ground_truth.strip()
    reference = json.loads(text) if text.startswith("{") else {"svg": ground_truth}
    body: dict[str, Any] = {"reference": reference, "completions": [solution]}
    step = (extra_info or {}).get("global_step", kwargs.get("global_step"))
    if step is not None:
        body["step"] = int(step)
    return body


def _scores(answer: dict[str, Any]) -> dict[str, Any]:
    result = answer["results"][0]
    if result["status"] == "error":
        raise RewardServiceError(f"reward service could not score this rollout: {result.get('detail')}")
    out: dict[str, Any] = {"score": float(result["reward"])}
    for name in COMPONENTS:
        out[name] = float(result["components"].get(name, 0.0))
    out["status"] = result["status"]
    return out
