"""One judge request: validate, decode, look up the cache, call the backend within its limits, parse.

Retries live here, once for every backend (the Gemini SDK's own retries are switched off; see
``backends/gemini.py``). A candidate's call retries transient failures (429, 408, 5xx, timeouts,
dropped connections) with jittered exponential back-off, or exactly the server's ``Retry-After``
when it sends one, until it succeeds, ``max_attempts`` is spent, or the next attempt could not
start before the deadline. The deadline runs from the request's arrival and covers queueing for
quota too, so an answer (a verdict or an explicit error) is always back by then.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping

from pydantic import ValidationError

from services.judge_proxy.backends.base import Backend, Call, Reply
from services.judge_proxy.cache import VerdictCache, context_sha256
from services.judge_proxy.errors import (
    BadImageError,
    CallError,
    ConfigError,
    InvalidRequestError,
    MalformedVerdictError,
    MissingInputError,
    NoBackendError,
    TransientError,
    UnknownBackendError,
    UnknownRubricError,
)
from services.judge_proxy.images import FlatImage, decode_b64, flatten
from services.judge_proxy.limits import Limiter, backoff_s
from services.judge_proxy.metrics import Metrics
from services.judge_proxy.rubrics import RUBRICS, ParsedVerdict, Rubric
from services.judge_proxy.schemas import JudgeError, JudgeRequest, JudgeResponse, Result, Verdict
from services.judge_proxy.settings import JudgeSettings

log = logging.getLogger(__name__)


def build_backends(settings: JudgeSettings) -> dict[str, Backend]:
    """The backends the settings configure (Gemini by API key, OpenAI-compatible by base URL)."""
    backends: dict[str, Backend] = {}
    if settings.gemini_api_key is not None:
        from services.judge_proxy.backends.gemini import GeminiBackend  # the SDK loads only when used

        backends["gemini"] = GeminiBackend(
            api_key=settings.gemini_api_key.get_secret_value(),
            model=settings.gemini_model,
            base_url=settings.gemini_base_url,
            api_version=settings.gemini_api_version,
            limiter=Limiter(
                max_concurrency=settings.gemini_max_concurrency,
                rpm=settings.gemini_rpm,
                tpm=settings.gemini_tpm,
                burst_s=settings.burst_s,
            ),
            attempt_timeout_s=settings.attempt_timeout_s,
            temperature=settings.temperature,
            max_output_tokens=settings.gemini_max_output_tokens,
            thinking_budget=settings.gemini_thinking_budget,
        )
    if settings.openai_base_url:
        from services.judge_proxy.backends.openai_compat import OpenAICompatBackend

        backends["openai"] = OpenAICompatBackend(
            base_url=settings.openai_base_url,
            model=settings.openai_model,
            api_key=settings.openai_api_key.get_secret_value() if settings.openai_api_key else None,
            limiter=Limiter(
                max_concurrency=settings.openai_max_concurrency,
                rpm=settings.openai_rpm,
                tpm=settings.openai_tpm,
                burst_s=settings.burst_s,
            ),
            temperature=settings.temperature,
            max_tokens=settings.openai_max_tokens,
        )
    return backends


class JudgeService:
    """Backends, cache and metrics; one per app, built inside its event loop."""

    def __init__(
        self,
        settings: JudgeSettings,
        backends: Mapping[str, Backend],
        cache: VerdictCache | None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.backends = dict(backends)
        self.cache = cache
        self.metrics = metrics or Metrics()
        if cache is not None:
            cache.on_error = lambda op: self.metrics.cache_errors.labels(op).inc()
        default = settings.default_backend
        if default is not None and default not in self.backends:
            raise ConfigError(f"default_backend {default!r} is not configured (configured: {sorted(self.backends)})")
        self.default_backend: str | None = default or next(iter(self.backends), None)

    @classmethod
    def from_settings(cls, settings: JudgeSettings) -> JudgeService:
        cache = None
        if settings.cache_ttl_s > 0:
            cache = VerdictCache.from_url(settings.redis_url, ttl_s=settings.cache_ttl_s, prefix=settings.cache_prefix)
        return cls(settings, build_backends(settings), cache)

    async def aclose(self) -> None:
        for backend in self.backends.values():
            await backend.aclose()
        if self.cache is not None:
            await self.cache.aclose()

    def backend(self, name: str | None) -> Backend:
        if not self.backends:
            raise NoBackendError(
                "no judge backend configured: set RLRF_JUDGE_GEMINI_API_KEY or RLRF_JUDGE_OPENAI_BASE_URL"
            )
        name = name or self.default_backend
        if name not in self.backends:
            raise UnknownBackendError(f"backend {name!r} is not configured; configured: {sorted(self.backends)}")
        return self.backends[name]

    async def readiness(self) -> dict[str, object]:
        """Ready when a backend is configured and, with caching on, Redis answers."""
        redis = await self.cache.ping() if self.cache is not None else None
        ready = bool(self.backends) and redis is not False
        return {
            "ready": ready,
            "redis": "disabled" if redis is None else ("ok" if redis else "unreachable"),
            "backends": {name: b.model for name, b in self.backends.items()},
            "default_backend": self.default_backend,
        }

    async def judge(self, request: JudgeRequest) -> JudgeResponse:
        """Judge every candidate (concurrently, within the backend's limits); results in candidate order."""
        deadline = time.monotonic() + self.settings.deadline_s
        rubric = RUBRICS.get(request.rubric)
        if rubric is None:
            raise UnknownRubricError(f"unknown rubric {request.rubric!r}; known: {sorted(RUBRICS)}")
        backend = self.backend(request.backend)
        reference, prompt = await self._inputs(rubric, request)
        images = await asyncio.to_thread(self._decode_all, request.candidates_b64)

        context = context_sha256(reference_sha256=reference.sha256 if reference else None, prompt=prompt)
        keys: list[str | None] = []
        todo: dict[str, FlatImage] = {}  # identical candidates are judged once
        for image in images:
            if isinstance(image, BadImageError):
                keys.append(None)
                continue
            key = self._key(rubric, backend, context, image.sha256)
            keys.append(key)
            todo.setdefault(key, image)

        done: dict[str, Result] = {}
        if self.cache is not None:
            for key, hit in zip(todo, await self.cache.get_many(list(todo))):
                if hit is not None:
                    try:
                        done[key] = Verdict.model_validate({**hit, "cached": True})
                    except ValidationError:
                        pass  # a foreign value under our key: judge again and overwrite it
        hits = len(done)
        if hits:
            self.metrics.cache_hits.labels(backend.name, rubric.name).inc(hits)
        misses = [key for key in todo if key not in done]
        if misses:
            self.metrics.cache_misses.labels(backend.name, rubric.name).inc(len(misses))
        judged = await asyncio.gather(
            *(self._judge_one(rubric, backend, reference, prompt, todo[key], deadline) for key in misses)
        )
        done.update(zip(misses, judged))
        if self.cache is not None:
            fresh = {k: r for k, r in zip(misses, judged) if isinstance(r, Verdict)}  # errors are never cached
            await self.cache.put_many({k: v.model_dump(include={"score", "axes", "flags"}) for k, v in fresh.items()})

        results: list[Result] = []
        for slot, image in zip(keys, images):
            if slot is None:
                assert isinstance(image, BadImageError)
                results.append(JudgeError(error=f"invalid candidate image: {image}", retryable=False))
            else:
                results.append(done[slot])
        for result in results:
            self.metrics.results.labels(backend.name, rubric.name, result.status).inc()
        return JudgeResponse(
            rubric=rubric.name,
            rubric_version=rubric.version,
            backend=backend.name,
            model=backend.model,
            results=results,
        )

    async def _inputs(self, rubric: Rubric, request: JudgeRequest) -> tuple[FlatImage | None, str | None]:
        """The reference image and prompt the rubric uses; inputs it does not use are ignored."""
        reference = None
        if rubric.needs_reference_image:
            if not request.reference_image_b64:
                raise MissingInputError(f"rubric {rubric.name!r} needs reference_image_b64")
            try:
                data = decode_b64(request.reference_image_b64)
                reference = await asyncio.to_thread(flatten, data, max_pixels=self.settings.max_image_pixels)
            except BadImageError as exc:
                raise InvalidRequestError(f"reference_image_b64: {exc}") from exc
        prompt = None
        if rubric.needs_prompt:
            if not request.prompt or not request.prompt.strip():
                raise MissingInputError(f"rubric {rubric.name!r} needs a prompt")
            prompt = request.prompt
        return reference, prompt

    def _decode_all(self, candidates_b64: list[str]) -> list[FlatImage | BadImageError]:
        out: list[FlatImage | BadImageError] = []
        for data in candidates_b64:
            try:
                out.append(flatten(decode_b64(data), max_pixels=self.settings.max_image_pixels))
            except BadImageError as exc:
                out.append(exc)
        return out

    def _key(self, rubric: Rubric, backend: Backend, context: str, candidate: str) -> str:
        if self.cache is None:
            return f"{context}:{candidate}"  # only deduplicates within the request
        return self.cache.key(
            rubric=rubric, backend=backend.name, model=backend.model, context_sha256=context, candidate_sha256=candidate
        )

    async def _judge_one(
        self,
        rubric: Rubric,
        backend: Backend,
        reference: FlatImage | None,
        prompt: str | None,
        candidate: FlatImage,
        deadline: float,
    ) -> Result:
        call = Call(
            system=rubric.instructions,
            parts=rubric.parts(
                candidate_png=candidate.png, reference_png=reference.png if reference else None, prompt=prompt
            ),
            schema=rubric.schema,
            schema_name=rubric.name,
        )
        try:
            parsed = await self._with_retries(rubric, backend, call, deadline)
        except CallError as exc:
            return JudgeError(error=str(exc), retryable=exc.retryable)
        except Exception as exc:  # a bug must cost one candidate, loudly, not the whole group
            log.exception("judge call failed unexpectedly")
            return JudgeError(error=f"internal error: {type(exc).__name__}: {exc}", retryable=False)
        return Verdict(score=parsed.score, axes=parsed.axes, flags=parsed.flags)

    async def _with_retries(self, rubric: Rubric, backend: Backend, call: Call, deadline: float) -> ParsedVerdict:
        settings = self.settings
        estimate = backend.estimate_tokens(call, completion_tokens=settings.estimated_completion_tokens)
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise asyncio.TimeoutError
                return await asyncio.wait_for(self._attempt(rubric, backend, call, estimate, deadline), remaining)
            except asyncio.TimeoutError:
                raise TransientError(
                    f"deadline of {settings.deadline_s:g}s exceeded during attempt {attempt}", reason="deadline"
                ) from None
            except TransientError as exc:
                if attempt >= settings.max_attempts:
                    raise TransientError(f"gave up after {attempt} attempts: {exc}", reason=exc.reason) from exc
                if exc.retry_after_s is not None:
                    delay = exc.retry_after_s * random.uniform(1.0, 1.1)  # the server's wait, spread a little
                else:
                    delay = backoff_s(attempt, initial_s=settings.backoff_initial_s, max_s=settings.backoff_max_s)
                if time.monotonic() + delay >= deadline:
                    raise TransientError(
                        f"deadline of {settings.deadline_s:g}s would pass before retry {attempt + 1}"
                        f" (wait {delay:.1f}s): {exc}",
                        reason=exc.reason,
                    ) from exc
                self.metrics.retries.labels(backend.name, exc.reason).inc()
                await asyncio.sleep(delay)

    async def _attempt(
        self, rubric: Rubric, backend: Backend, call: Call, estimate: int, deadline: float
    ) -> ParsedVerdict:
        """One attempt inside the backend's limits; counts the outcome, tokens, cost and latency."""
        async with backend.limiter.slot(estimate):
            gauge = self.metrics.inflight.labels(backend.name)
            gauge.inc()
            started = time.monotonic()
            outcome = "deadline"  # stays so if the deadline cancels the call
            try:
                timeout_s = max(0.001, min(self.settings.attempt_timeout_s, deadline - started))
                reply = await backend.generate(call, timeout_s=timeout_s)
                self._account(backend, reply, estimate)
                parsed = rubric.parse(reply.text)
                outcome = "ok"
                return parsed
            except TransientError as exc:
                outcome = exc.reason
                raise
            except MalformedVerdictError:
                outcome = "malformed"
                raise
            except CallError:
                outcome = "rejected"
                raise
            except Exception:
                outcome = "internal_error"
                raise
            finally:
                gauge.dec()
                self.metrics.call_seconds.labels(backend.name).observe(time.monotonic() - started)
                self.metrics.calls.labels(backend.name, outcome).inc()

    def _account(self, backend: Backend, reply: Reply, estimate: int) -> None:
        if reply.prompt_tokens is None:
            return  # no usage reported: the estimate stays charged
        completion = reply.completion_tokens or 0
        backend.limiter.settle(estimated_tokens=estimate, used_tokens=reply.prompt_tokens + completion)
        self.metrics.usage(
            backend=backend.name,
            model=backend.model,
            prompt=reply.prompt_tokens,
            completion=completion,
            price=self.settings.prices.get(backend.model),
        )
