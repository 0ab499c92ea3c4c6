"""Gemini through the google-genai SDK (``client.aio.models.generate_content``).

The SDK sends ``POST {base_url}/v1beta/models/{model}:generateContent`` with the images as
``inlineData`` parts and ``generationConfig.responseMimeType``/``responseJsonSchema``, and reads
``usageMetadata`` back. Four things are set explicitly because the SDK's defaults do not suit:

- **Retries are ours, not the SDK's** (``HttpRetryOptions(attempts=1)``). The service's retry loop
  honours ``Retry-After`` and Gemini's ``RetryInfo``, stops at the per-call deadline, takes rate-limit
  quota for each attempt and counts every retry in the metrics; the SDK's tenacity loop does none
  of that. One owner means no double retries (6 of ours x 5 of the SDK's = 30 calls).
- **Timeouts** (``HttpOptions.timeout``, in ms): unset, the SDK waits forever. Each call passes the
  smaller of the attempt timeout and what is left of the deadline.
- **Transport**: we hand the SDK our own ``httpx.AsyncClient``. That pins httpx (the SDK would pick
  aiohttp or httpx2 when installed, with other exception types and an implicit retry on aiohttp
  connection errors) and sizes the connection pool to the concurrency limit.
- **API version** ``v1beta`` (``gemini_api_version``): google-genai 3.x defaults to ``v1``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from services.judge_proxy.backends.base import Backend, Call, Reply
from services.judge_proxy.errors import MalformedVerdictError, RejectedError, TransientError
from services.judge_proxy.limits import Limiter, parse_retry_after

_TILE_PX = 768  # images over 384 px a side are cut into 768 px tiles
_TOKENS_PER_TILE = 258  # Gemini 2.x: one small image, or one tile, costs 258 tokens


class GeminiBackend(Backend):
    """Gemini API (AI Studio key); ``base_url`` redirects it to a gateway or a test server."""

    name = "gemini"

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        limiter: Limiter,
        base_url: str | None = None,
        api_version: str = "v1beta",
        attempt_timeout_s: float = 60.0,
        temperature: float = 0.0,
        max_output_tokens: int = 8192,
        thinking_budget: int | None = None,
    ) -> None:
        super().__init__(model=model, limiter=limiter)
        self.temperature = temperature
        self.max_output_tokens = max_output_tokens
        self.thinking_budget = thinking_budget
        slots = limiter.max_concurrency
        self._http = httpx.AsyncClient(limits=httpx.Limits(max_connections=slots, max_keepalive_connections=slots))
        options = types.HttpOptions(
            base_url=base_url,
            api_version=api_version,
            timeout=_ms(attempt_timeout_s),
            retry_options=types.HttpRetryOptions(attempts=1),
            httpx_async_client=self._http,
        )
        self._client = genai.Client(api_key=api_key, vertexai=False, http_options=options)

    def config(self, call: Call, *, timeout_s: float) -> types.GenerateContentConfig:
        """Generation config: JSON constrained by the rubric's schema, and this attempt's timeout."""
        thinking = None if self.thinking_budget is None else types.ThinkingConfig(thinking_budget=self.thinking_budget)
        return types.GenerateContentConfig(
            system_instruction=call.system,
            response_mime_type="application/json",
            response_json_schema=call.schema,
            temperature=self.temperature,
            max_output_tokens=self.max_output_tokens,
            thinking_config=thinking,
            http_options=types.HttpOptions(timeout=_ms(timeout_s)),
        )

    async def generate(self, call: Call, *, timeout_s: float) -> Reply:
        parts = [
            types.Part.from_text(text=p) if isinstance(p, str) else types.Part.from_bytes(data=p, mime_type="image/png")
            for p in call.parts
        ]
        try:
            response = await self._client.aio.models.generate_content(
                model=self.model,
                contents=[types.Content(role="user", parts=parts)],
                config=self.config(call, timeout_s=timeout_s),
            )
        except genai_errors.APIError as exc:
            raise _map_api_error(exc) from exc
        except httpx.TimeoutException as exc:
            raise TransientError(
                f"gemini: timed out after {timeout_s:.1f}s ({type(exc).__name__})", reason="timeout"
            ) from exc
        except httpx.TransportError as exc:
            raise TransientError(f"gemini: {type(exc).__name__}: {exc}", reason="connection_error") from exc
        except genai_errors.UnknownApiResponseError as exc:
            raise TransientError(f"gemini: unreadable response: {exc}", reason="server_error") from exc
        text = response.text
        if not text:
            raise MalformedVerdictError(f"malformed: empty reply ({_why_empty(response)})")
        usage = response.usage_metadata
        prompt = completion = None
        if usage is not None and usage.prompt_token_count is not None:
            prompt = usage.prompt_token_count
            completion = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
        return Reply(text=text, prompt_tokens=prompt, completion_tokens=completion)

    def image_tokens(self, width: int, height: int) -> int:
        if width <= 384 and height <= 384:
            return _TOKENS_PER_TILE
        return math.ceil(width / _TILE_PX) * math.ceil(height / _TILE_PX) * _TOKENS_PER_TILE

    async def aclose(self) -> None:
        await self._client.aio.aclose()
        self._client.close()  # the sync pool the SDK builds beside ours
        await self._http.aclose()


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _map_api_error(exc: genai_errors.APIError) -> TransientError | RejectedError:
    code = exc.code or 0
    status = f" {exc.status}" if exc.status else ""
    message = f"gemini: HTTP {code}{status}: {exc.message or ''}".rstrip(": ")
    if code == 429 or code == 408 or code >= 500:
        return TransientError(
            message, reason="rate_limited" if code == 429 else "server_error", retry_after_s=_retry_after(exc)
        )
    return RejectedError(message)


def _retry_after(exc: genai_errors.APIError) -> float | None:
    """A ``Retry-After`` header, else the ``google.rpc.RetryInfo`` detail Gemini puts in 429 bodies."""
    headers = getattr(exc.response, "headers", None)
    if headers is not None:
        seconds = parse_retry_after(headers.get("retry-after"))
        if seconds is not None:
            return seconds
    details: Any = exc.details
    if isinstance(details, dict):
        details = details.get("error", details).get("details", [])
    for item in details if isinstance(details, list) else []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = re.fullmatch(r"\s*([0-9.]+)s\s*", str(item.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def _why_empty(response: types.GenerateContentResponse) -> str:
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        return f"prompt blocked: {feedback.block_reason}"
    if response.candidates:
        reason = response.candidates[0].finish_reason
        if reason == types.FinishReason.MAX_TOKENS:
            return "finish_reason=MAX_TOKENS: raise gemini_max_output_tokens or lower gemini_thinking_budget"
        return f"finish_reason={reason}"
    return "no candidates"
