"""Per-backend limits: concurrency, requests per minute, tokens per minute; and back-off.

Providers enforce RPM and TPM; staying under them is cheaper than bouncing off 429s. Each backend
gets a semaphore and two async token buckets. A call takes its concurrency slot first (so waiting
for quota never holds a connection), then one request token, then its *estimated* tokens; when the
reply reports its usage, the TPM bucket is corrected by the difference (the bucket may go into
debt, which later calls then wait out).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class TokenBucket:
    """``rate_per_s`` tokens refill continuously up to ``capacity``; waiters are served in arrival order."""

    def __init__(self, *, rate_per_s: float, capacity: float) -> None:
        if rate_per_s <= 0 or capacity <= 0:
            raise ValueError("rate_per_s and capacity must be positive")
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self._tokens = capacity
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()  # FIFO: the head waiter sleeps holding it, the rest queue behind

    @classmethod
    def per_minute(cls, limit: int, *, burst_s: float) -> TokenBucket:
        """A bucket for a per-minute quota holding ``burst_s`` seconds of it (at least one token)."""
        rate = limit / 60.0
        return cls(rate_per_s=rate, capacity=max(1.0, rate * burst_s))

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    async def acquire(self, amount: float) -> None:
        """Wait until ``amount`` tokens are there, then take them.

        A request larger than the bucket waits for a full bucket and takes all of it (it could never
        fit otherwise); the correction after the call charges the rest.
        """
        amount = min(amount, self.capacity)
        async with self._lock:
            while True:
                self._refill()
                if self._tokens >= amount:
                    self._tokens -= amount
                    return
                await asyncio.sleep((amount - self._tokens) / self.rate_per_s)

    def adjust(self, delta: float) -> None:
        """Give back (``delta > 0``) or charge (``delta < 0``) tokens once the real usage is known."""
        self._refill()
        self._tokens = min(self.capacity, self._tokens + delta)

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate_per_s)
        self._updated = now


class Limiter:
    """Concurrency plus optional RPM/TPM buckets for one backend. Limits of 0 mean unlimited."""

    def __init__(self, *, max_concurrency: int, rpm: int = 0, tpm: int = 0, burst_s: float = 60.0) -> None:
        self.max_concurrency = max_concurrency
        self._slots = asyncio.Semaphore(max_concurrency)
        self.requests = TokenBucket.per_minute(rpm, burst_s=burst_s) if rpm > 0 else None
        self.tokens = TokenBucket.per_minute(tpm, burst_s=burst_s) if tpm > 0 else None
        self.inflight = 0

    @asynccontextmanager
    async def slot(self, estimated_tokens: int) -> AsyncIterator[None]:
        """Hold a concurrency slot and the quota for one call while the block runs."""
        async with self._slots:
            if self.requests is not None:
                await self.requests.acquire(1)
            if self.tokens is not None:
                await self.tokens.acquire(estimated_tokens)
            self.inflight += 1
            try:
                yield
            finally:
                self.inflight -= 1

    def settle(self, *, estimated_tokens: int, used_tokens: int) -> None:
        """Correct the TPM bucket with the usage the server reported."""
        if self.tokens is not None:
            self.tokens.adjust(estimated_tokens - used_tokens)


def backoff_s(attempt: int, *, initial_s: float, max_s: float) -> float:
    """Jittered exponential back-off after failed attempt number ``attempt`` (1-based).

    "Equal jitter": half the exponential step is kept, the other half drawn at random, so retries
    of many candidates spread out yet never come back immediately.
    """
    step = min(max_s, initial_s * 2 ** (attempt - 1))
    return step / 2 + random.uniform(0, step / 2)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())
