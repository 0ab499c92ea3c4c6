"""Any OpenAI-compatible chat-completions server with image input (vLLM serving Qwen2.5-VL, ...).

Wire format: ``POST {base}/v1/chat/completions`` with images as ``data:image/png;base64,...`` URLs
in ``image_url`` content parts and ``response_format={"type": "json_schema", ...}``, which vLLM
enforces with guided decoding. Usage comes back as ``usage.prompt_tokens``/``completion_tokens``.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import httpx

from services.judge_proxy.backends.base import Backend, Call, Reply
from services.judge_proxy.errors import MalformedVerdictError, RejectedError, TransientError
from services.judge_proxy.limits import Limiter, parse_retry_after

_PATCH_PX = 28  # Qwen2.5-VL: 14 px patches merged 2x2, so one token per 28x28 pixels


class OpenAICompatBackend(Backend):
    """Chat completions over httpx; one connection per concurrency slot."""

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        limiter: Limiter,
        api_key: str | None = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
    ) -> None:
        super().__init__(model=model, limiter=limiter)
        root = base_url.rstrip("/")
        root = root.removesuffix("/v1")
        self.url = f"{root}/v1/chat/completions"
        self.temperature = temperature
        self.max_tokens = max_tokens
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        slots = limiter.max_concurrency
        self._http = httpx.AsyncClient(
            headers=headers, limits=httpx.Limits(max_connections=slots, max_keepalive_connections=slots)
        )

    def body(self, call: Call) -> dict[str, Any]:
        """The request body for ``call``."""
        content: list[dict[str, Any]] = []
        for part in call.parts:
            if isinstance(part, str):
                content.append({"type": "text", "text": part})
            else:
                url = "data:image/png;base64," + base64.b64encode(part).decode("ascii")
                content.append({"type": "image_url", "image_url": {"url": url}})
        return {
            "model": self.model,
            "messages": [{"role": "system", "content": call.system}, {"role": "user", "content": content}],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": call.schema_name, "schema": call.schema, "strict": True},
            },
        }

    async def generate(self, call: Call, *, timeout_s: float) -> Reply:
        try:
            response = await self._http.post(self.url, json=self.body(call), timeout=timeout_s)
        except httpx.TimeoutException as exc:
            raise TransientError(
                f"openai: timed out after {timeout_s:.1f}s ({type(exc).__name__})", reason="timeout"
            ) from exc
        except httpx.TransportError as exc:
            raise TransientError(f"openai: {type(exc).__name__}: {exc}", reason="connection_error") from exc
        code = response.status_code
        if code == 429 or code == 408 or code >= 500:
            raise TransientError(
                f"openai: HTTP {code}: {response.text[:300]}",
                reason="rate_limited" if code == 429 else "server_error",
                retry_after_s=parse_retry_after(response.headers.get("retry-after")),
            )
        if code >= 400:
            raise RejectedError(f"openai: HTTP {code}: {response.text[:300]}")
        try:
            data = response.json()
            choice = data["choices"][0]
            text = _text(choice["message"].get("content"))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise TransientError(
                f"openai: unreadable response: {response.text[:300]!r}", reason="server_error"
            ) from exc
        if not text:
            reason = choice.get("finish_reason")
            raise MalformedVerdictError(f"malformed: empty reply (finish_reason={reason})")
        usage = data.get("usage") or {}
        return Reply(
            text=text, prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens")
        )

    def image_tokens(self, width: int, height: int) -> int:
        return math.ceil(width / _PATCH_PX) * math.ceil(height / _PATCH_PX) + 2  # + vision start/end

    async def aclose(self) -> None:
        await self._http.aclose()


def _text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))
