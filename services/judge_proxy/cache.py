"""Verdicts cached in Redis.

A key names everything a verdict depends on: rubric name and version, backend and model, the hash
of the reference (image pixels and/or prompt) and the hash of the candidate's pixels. GRPO samples
many identical drawings across steps, so repeats cost nothing. Only verdicts are cached, never
errors. The cache is an optimisation: when Redis fails, judging goes on uncached.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from services.judge_proxy.rubrics import Rubric

log = logging.getLogger(__name__)


def context_sha256(*, reference_sha256: str | None, prompt: str | None) -> str:
    """One hash for what the candidate is judged against (``-`` stands for an absent input)."""
    text = f"image:{reference_sha256 or '-'}\nprompt:{'-' if prompt is None else prompt}"
    return hashlib.sha256(text.encode()).hexdigest()


class VerdictCache:
    """``GET``/``SET EX`` of JSON verdicts; every Redis failure is logged, counted and treated as a miss."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        ttl_s: int,
        prefix: str,
        on_error: Callable[[str], None] = lambda what: None,
    ) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.prefix = prefix
        self.on_error = on_error  # called with "read" or "write" (a metric)

    @classmethod
    def from_url(
        cls, url: str, *, ttl_s: int, prefix: str, on_error: Callable[[str], None] = lambda what: None
    ) -> VerdictCache:
        # Short socket timeouts: a dead Redis must cost a judge request a second, not its deadline.
        redis = aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=1.0)
        return cls(redis, ttl_s=ttl_s, prefix=prefix, on_error=on_error)

    def key(self, *, rubric: Rubric, backend: str, model: str, context_sha256: str, candidate_sha256: str) -> str:
        return f"{self.prefix}:{rubric.name}:{rubric.version}:{backend}:{model}:{context_sha256}:{candidate_sha256}"

    async def get_many(self, keys: list[str]) -> list[dict[str, Any] | None]:
        if not keys:
            return []
        try:
            raw = await self.redis.mget(keys)
        except (RedisError, OSError) as exc:
            self._failed("read", exc)
            return [None] * len(keys)
        out: list[dict[str, Any] | None] = []
        for value in raw:
            try:
                out.append(json.loads(value) if value is not None else None)
            except ValueError:
                out.append(None)  # a foreign or truncated value is a miss, and gets overwritten
        return out

    async def put_many(self, values: dict[str, dict[str, Any]]) -> None:
        """``SET key value EX ttl`` for each, in one round trip."""
        if not values:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, value in values.items():
                    pipe.set(key, json.dumps(value, separators=(",", ":")), ex=self.ttl_s)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed("write", exc)

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False

    async def aclose(self) -> None:
        await self.redis.aclose()

    def _failed(self, what: str, exc: Exception) -> None:
        self.on_error(what)
        log.warning("verdict cache %s failed (%s: %s); judging without the cache", what, type(exc).__name__, exc)
