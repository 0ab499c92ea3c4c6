"""verl adapter: reward functions for ``reward.custom_reward_function`` (``path: pkg://trainer.verl``).

verl >= 0.7 (its reward loop) awaits ``compute_score(data_source, solution_str, ground_truth,
extra_info)`` once per sample, all samples of a worker's share at once. Calls that arrive together
(within ``RLRF_VERL_BATCH_MS``, default 50 ms; 0 sends each alone) are grouped by reference and sent
as one ``POST /score/batch``: one group per reference, so a group costs one call, not one per
sample. ``compute_score_sync`` is the per-sample blocking form for the classic managers (``naive``
in verl <= 0.6), and ``compute_score_batch(data_sources, solution_strs, ground_truths,
extra_infos)`` the entry point of verl's ``batch`` reward manager (``BatchRewardManager``).

The ground truth is the reference: SVG code, or a JSON object with the fields of ``reference`` in
``POST /score`` (``{"svg": ...}``, ``{"image_b64": ...}``). The service URL comes from ``RLRF_URL``
(default ``http://127.0.0.1:8000``), a token from ``RLRF_API_TOKEN``.

Every path returns the same keys: ``score``, one key per component in ``COMPONENTS`` (a component
the service did not compute reads 0.0) and ``status``; verl puts them in ``reward_extra_info``.
verl has no "no reward" value, so an infrastructure error raises ``RewardServiceError`` after the
client's retries: the step fails loudly instead of training on an invented score. The errors
pickle, so they cross Ray's actor boundary as themselves.

verl does not pass the training step to reward functions; the step for weight warm-up schedules
is read from ``extra_info["global_step"]`` (or a ``global_step`` keyword), which
``trainer.verl_agent_loop.StepAgentLoopManager`` fills in from verl's trainer: see trainer/README.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import weakref
from collections.abc import Sequence
from typing import Any

from trainer._client import AsyncRewardClient, RewardClient, ScoreResponse
from trainer._exceptions import RewardServiceError

COMPONENTS = ("pixel_l2", "canny_l2", "length")
MAX_GROUPS = 256  # the service's limit of groups per POST /score/batch
_async_client: AsyncRewardClient | None = None
_sync_client: RewardClient | None = None
_Key = tuple[str, int | None]  # (ground truth, step): one group each


async def compute_score(
    data_source: str | None,
    solution_str: str,
    ground_truth: str,
    extra_info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Score one rollout against its reference; concurrent calls share one HTTP request."""
    global _async_client
    if _async_client is None:
        _async_client = AsyncRewardClient(_url(), token=os.environ.get("RLRF_API_TOKEN"))
    body = _body(solution_str, ground_truth, extra_info, kwargs)
    window_s = float(os.environ.get("RLRF_VERL_BATCH_MS", "50")) / 1000
    if window_s <= 0:
        return _scores(await _async_client.score(body))
    loop = asyncio.get_running_loop()
    batcher = _batchers.get(loop)
    if batcher is None:
        batcher = _batchers[loop] = _Batcher(_async_client, window_s)
    return await batcher.add((ground_truth, body.get("step")), body)


def compute_score_sync(
    data_source: str | None,
    solution_str: str,
    ground_truth: str,
    extra_info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Blocking ``compute_score`` for reward managers that call the function synchronously."""
    return _scores(_client().score(_body(solution_str, ground_truth, extra_info, kwargs)))


def compute_score_batch(
    data_sources: Sequence[str | None],
    solution_strs: Sequence[str],
    ground_truths: Sequence[str],
    extra_infos: Sequence[dict[str, Any] | None] | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Score a whole batch for verl's ``batch`` reward manager: one group per reference.

    Returns one dict per rollout, in order, with the keys of ``compute_score``.
    """
    infos = list(extra_infos) if extra_infos is not None else [None] * len(solution_strs)
    bodies = [_body(s, t, i, kwargs) for s, t, i in zip(solution_strs, ground_truths, infos, strict=True)]
    groups, slots = _group([((t, b.get("step")), b) for t, b in zip(ground_truths, bodies, strict=True)])
    keys = list(groups)
    answers: dict[_Key, ScoreResponse] = {}
    for start in range(0, len(keys), MAX_GROUPS):
        chunk = keys[start : start + MAX_GROUPS]
        answers.update(zip(chunk, _client().score_batch([groups[k] for k in chunk]), strict=True))
    return [_scores(answers[key], position) for key, position in slots]


class _Batcher:
    """Collects the ``compute_score`` calls of one event loop for a short window, then sends them."""

    def __init__(self, client: AsyncRewardClient, window_s: float) -> None:
        self.client, self.window_s = client, window_s
        self.pending: list[tuple[_Key, dict[str, Any], asyncio.Future[dict[str, Any]]]] = []
        self._flushes: set[asyncio.Task[None]] = set()  # held so a running flush is not collected

    async def add(self, key: _Key, body: dict[str, Any]) -> dict[str, Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if not self.pending:
            asyncio.get_running_loop().call_later(self.window_s, self._start_flush)
        self.pending.append((key, body, future))
        return await future

    def _start_flush(self) -> None:
        task = asyncio.ensure_future(self._flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self) -> None:
        batch, self.pending = self.pending, []
        groups, slots = _group([(key, body) for key, body, _ in batch])
        keys = list(groups)
        try:
            answers: dict[_Key, ScoreResponse] = {}
            for start in range(0, len(keys), MAX_GROUPS):
                chunk = keys[start : start + MAX_GROUPS]
                answers.update(zip(chunk, await self.client.score_batch([groups[k] for k in chunk]), strict=True))
        except BaseException as exc:  # every waiting rollout learns why; nothing is scored
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), (key, position) in zip(batch, slots, strict=True):
            if not future.done():
                try:
                    future.set_result(_scores(answers[key], position))
                except RewardServiceError as exc:
                    future.set_exception(exc)


_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Batcher] = weakref.WeakKeyDictionary()


def _client() -> RewardClient:
    global _sync_client
    if _sync_client is None:
        _sync_client = RewardClient(_url(), token=os.environ.get("RLRF_API_TOKEN"))
    return _sync_client


def _url() -> str:
    return os.environ.get("RLRF_URL", "http://127.0.0.1:8000")


def _body(
    solution: str, ground_truth: str, extra_info: dict[str, Any] | None, kwargs: dict[str, Any]
) -> dict[str, Any]:
    text = str(ground_truth).strip()
    reference = json.loads(text) if text.startswith("{") else {"svg": str(ground_truth)}
    body: dict[str, Any] = {"reference": reference, "completions": [solution]}
    step = (extra_info or {}).get("global_step", kwargs.get("global_step"))
    if step is not None:
        body["step"] = int(step)
    return body


def _group(
    items: Sequence[tuple[_Key, dict[str, Any]]],
) -> tuple[dict[_Key, dict[str, Any]], list[tuple[_Key, int]]]:
    """Merge one-completion bodies with the same reference and step into one group each."""
    groups: dict[_Key, dict[str, Any]] = {}
    slots: list[tuple[_Key, int]] = []
    for key, body in items:
        group = groups.setdefault(key, {**body, "completions": []})
        slots.append((key, len(group["completions"])))
        group["completions"].extend(body["completions"])
    return groups, slots


def _scores(answer: ScoreResponse, position: int = 0) -> dict[str, Any]:
    result = answer["results"][position]
    if result["status"] == "error":
        raise RewardServiceError(f"reward service could not score this rollout: {result.get('detail')}")
    reward = result["reward"]
    assert reward is not None  # only an "error" has no reward
    out: dict[str, Any] = {"score": float(reward)}
    for name in COMPONENTS:
        out[name] = float(result["components"].get(name, 0.0))
    out["status"] = result["status"]
    return out
