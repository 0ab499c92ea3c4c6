"""Reward functions for TRL's ``GRPOTrainer`` that call the reward service.

TRL calls ``reward_func(prompts=..., completions=..., completion_ids=..., trainer_state=...,
**dataset_columns)`` and awaits ``async`` reward functions concurrently. Ours read the reference
from the dataset columns ``svg`` (ground-truth code), ``image`` (PIL image, bytes or base64; or the
image inside a multimodal prompt) and ``text``, group the batch by reference (a rank may hold parts
of several groups; each part is scored against its reference), send the groups concurrently and
return one float per completion, or ``None`` where the service reports an infrastructure error or
cannot be reached (TRL then leaves that sample out instead of scoring it as a bad drawing).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from trainer._client import AsyncRewardClient, RolloutResult, ScoreResponse
from trainer._exceptions import RewardServiceError

log = logging.getLogger("trainer.rewards")


class _Service:
    """One client and one per-batch cache, shared by the reward functions made together."""

    def __init__(
        self,
        url: str,
        token: str | None,
        profile: str | None,
        weights: dict[str, float] | None,
        retries: int = 5,
        run_id: str | None = None,
    ) -> None:
        self.url, self.token, self.profile, self.weights, self.retries = url, token, profile, weights, retries
        self.run_id = run_id
        self._client: AsyncRewardClient | None = None
        self._batches: OrderedDict[str, asyncio.Future[list[RolloutResult | None]]] = OrderedDict()
        # Set by trainer.callbacks.RenderLogCallback: every `render_every` steps the first
        # `render_groups` groups ask for thumbnails, kept in `rendered` as (step, [(group, answer)]).
        self.render_every = 0
        self.render_groups = 0
        self.rendered: tuple[int, list[tuple[dict[str, Any], ScoreResponse]]] | None = None
        self._next_render = 0

    def __getstate__(self) -> dict[str, Any]:  # picklable: clients and futures are rebuilt lazily
        return {
            "url": self.url,
            "token": self.token,
            "profile": self.profile,
            "weights": self.weights,
            "retries": self.retries,
            "run_id": self.run_id,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    async def results(self, kwargs: dict[str, Any]) -> list[RolloutResult | None]:
        """Per-completion result dicts (``None``: no reward), one service round per batch."""
        groups, slots = _groups(kwargs, self.profile, self.weights)
        key = hashlib.sha256(repr((groups, slots)).encode("utf-8", "surrogatepass")).hexdigest()
        future = self._batches.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._batches[key] = future
            while len(self._batches) > 8:
                self._batches.popitem(last=False)
            try:
                future.set_result(await self._score(groups, slots))
            except BaseException as exc:
                future.set_exception(exc)
                self._batches.pop(key, None)
                raise
        return await asyncio.shield(future)

    async def _score(self, groups: list[dict[str, Any]], slots: list[tuple[int, int]]) -> list[RolloutResult | None]:
        if self._client is None:
            self._client = AsyncRewardClient(self.url, token=self.token, retries=self.retries, run_id=self.run_id)
        step = groups[0].get("step") if groups else None
        render = bool(self.render_every) and step is not None and step >= self._next_render
        if render:
            groups = [{**g, "renders": True} if i < self.render_groups else g for i, g in enumerate(groups)]
        try:
            answers = await self._client.score_groups(groups)
        except RewardServiceError as exc:
            log.warning("reward service unavailable (%s): no reward for %d completions", exc, len(slots))
            return [None] * len(slots)
        if render and step is not None:
            self._next_render = step + self.render_every
            self.rendered = (step, [(g, a) for g, a in zip(groups, answers) if a.get("renders")])
        out: list[RolloutResult | None] = []
        for group_index, position in slots:
            result = answers[group_index]["results"][position]
            if result["status"] == "error":
                log.warning("reward service error for one rollout: %s", result.get("detail"))
                out.append(None)
            else:
                out.append(result)
        return out


class _SVGReward:
    """A TRL reward function: the service's total, or one component of it.

    The total also reports, through TRL's ``log_metric`` hook, the mean of every component the
    service returned (``rewards/<component>/mean``, the keys per-component functions would log)
    and the shares of rollouts that were not ``ok``, were ``ok`` but flagged (a guard fired: a hack
    in the making) or got no reward (``rlrf/non_ok``, ``rlrf/flagged``, ``rlrf/unscored``): one
    function keeps the service's step schedule and still shows its parts.
    """

    def __init__(self, service: _Service, component: str | None) -> None:
        self._service = service
        self._component = component
        self.__name__ = component or "svg_reward"

    async def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        results = await self._service.results({**kwargs, "completions": completions})
        if self._component is not None:
            return [None if r is None else r["components"].get(self._component) for r in results]
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            for name, value in batch_metrics(results).items():
                log_metric(name, value)
        return [None if r is None else r["reward"] for r in results]


def batch_metrics(results: Sequence[RolloutResult | None]) -> dict[str, float]:
    """Component means and failure/flag shares over the scored rollouts of one batch."""
    scored = [r for r in results if r is not None]
    if not scored:
        return {"rlrf/unscored": 1.0} if results else {}
    sums: dict[str, list[float]] = {}
    for r in scored:
        for name, value in (r.get("components") or {}).items():
            if value is not None:
                sums.setdefault(name, []).append(float(value))
    out = {f"rewards/{name}/mean": sum(v) / len(v) for name, v in sorted(sums.items())}
    out["rlrf/non_ok"] = sum(r["status"] != "ok" for r in scored) / len(scored)
    # Failed rollouts carry their status as a flag; only an ok rollout's flags are guards that fired.
    out["rlrf/flagged"] = sum(r["status"] == "ok" and bool(r.get("flags")) for r in scored) / len(scored)
    out["rlrf/unscored"] = (len(results) - len(scored)) / len(results)  # infrastructure errors: no reward
    return out


def get_svg_reward(
    url: str,
    *,
    profile: str | None = None,
    weights: dict[str, float] | None = None,
    token: str | None = None,
    retries: int = 5,
    run_id: str | None = None,
) -> _SVGReward:
    """The service's weighted total as one TRL reward function.

    Args:
        url: the reward service, e.g. ``http://reward-api:8000``.
        profile: a weight profile of the service (its default when ``None``).
        weights: per-component weight overrides sent with every request.
        token: bearer token when the service sets ``RLRF_API_TOKEN``.
        retries: attempts after the first before the batch gets ``None`` rewards.
        run_id: the training run, for the service's run view (``RLRF_RUN_ID``, else one per process).

    Example:
        >>> trainer = GRPOTrainer(model, reward_funcs=[get_svg_reward("http://127.0.0.1:8000")], ...)  # doctest: +SKIP
    """
    return _SVGReward(_Service(url, token, profile, weights, retries, run_id), None)


def get_component_rewards(
    url: str,
    components: Sequence[str] = ("pixel_l2", "canny_l2", "length"),
    *,
    profile: str | None = None,
    token: str | None = None,
    retries: int = 5,
    run_id: str | None = None,
) -> list[_SVGReward]:
    """One TRL reward function per component, sharing one service call per batch.

    TRL logs each as ``rewards/<component>/mean``; weight them with ``GRPOConfig.reward_weights``.
    The components are requested with weight 1 on top of ``profile`` so the service computes them.
    """
    service = _Service(url, token, profile, {name: 1.0 for name in components}, retries, run_id)
    return [_SVGReward(service, name) for name in components]


# request building ------------------------------------------------------------------------------
def _groups(
    kwargs: dict[str, Any], profile: str | None, weights: dict[str, float] | None
) -> tuple[list[dict[str, Any]], list[tuple[int, int]]]:
    completions = [_text(c) for c in kwargs["completions"]]
    n = len(completions)
    prompts = kwargs.get("prompts") or [None] * n
    # Token counts only when the reference's are known in the same tokenizer (a ``reference_tokens``
    # column); otherwise both sides use the service's character proxy, so the ratio stays honest.
    ids = kwargs.get("completion_ids") if kwargs.get("reference_tokens") is not None else None
    state = kwargs.get("trainer_state")
    step = getattr(state, "global_step", None)
    groups: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    slots: list[tuple[str, int]] = []
    for i in range(n):
        reference = _reference(kwargs, i, prompts[i])
        key = repr(sorted(reference.items()))
        if key not in groups:
            # A ``task`` column wins; a text-only reference is Text2SVG (the service then strips <text>).
            task = _column(kwargs, "task", i) or ("text2svg" if set(reference) == {"text"} else None)
            groups[key] = {
                "reference": reference,
                "completions": [],
                "completion_tokens": [] if ids else None,
                "task": task,
            }
            if profile:
                groups[key]["profile"] = profile
            if weights:
                groups[key]["weights"] = weights
            if step is not None:
                groups[key]["step"] = int(step)
            ref_tokens = _column(kwargs, "reference_tokens", i)
            if ref_tokens is not None:
                groups[key]["reference_tokens"] = int(ref_tokens)
            order.append(key)
        slots.append((key, len(groups[key]["completions"])))
        groups[key]["completions"].append(completions[i])
        if ids:
            groups[key]["completion_tokens"].append(len(ids[i]))
    index = {key: i for i, key in enumerate(order)}
    bodies = [{k: v for k, v in groups[key].items() if v is not None} for key in order]
    return bodies, [(index[key], position) for key, position in slots]


def _text(completion: Any) -> str:
    """Plain text of a completion: a string, or the last message of a conversation."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        content = completion[-1].get("content", "")
        if isinstance(content, list):  # multimodal message parts
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return str(content)
    return str(completion)


def _column(kwargs: dict[str, Any], name: str, i: int) -> Any:
    values = kwargs.get(name)
    return values[i] if values is not None else None


def _reference(kwargs: dict[str, Any], i: int, prompt: Any) -> dict[str, Any]:
    reference: dict[str, Any] = {}
    svg = _column(kwargs, "svg", i)
    if svg:
        reference["svg"] = svg
    image = _column(kwargs, "image", i)
    if image is None:
        image = _prompt_image(prompt)
    if image is not None and not svg:
        reference["image_b64"] = _image_b64(image)
    text = _column(kwargs, "text", i)
    if text:
        reference["text"] = text
    if not reference:
        raise ValueError("each sample needs an 'svg', 'image' or 'text' column (or an image in its prompt)")
    return reference


def _prompt_image(prompt: Any) -> Any:
    if not isinstance(prompt, list):
        return None
    for message in prompt:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image":
                    return part.get("image")
    return None


def _image_b64(image: Any) -> str:
    if isinstance(image, str):
        return image  # already base64
    if isinstance(image, dict) and "bytes" in image:  # datasets' Image feature, decode=False
        image = image["bytes"]
    if isinstance(image, (bytes, bytearray)):
        return base64.b64encode(bytes(image)).decode("ascii")
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")  # PIL image
    return base64.b64encode(buffer.getvalue()).decode("ascii")
