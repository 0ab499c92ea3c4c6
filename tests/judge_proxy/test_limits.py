"""Token buckets, the concurrency limiter, back-off and Retry-After parsing."""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest

from services.judge_proxy.limits import Limiter, TokenBucket, backoff_s, parse_retry_after


def test_bucket_spaces_acquisitions_at_its_rate() -> None:
    async def run() -> list[float]:
        bucket = TokenBucket(rate_per_s=20, capacity=2)
        start = time.monotonic()
        times = []
        for _ in range(6):
            await bucket.acquire(1)
            times.append(time.monotonic() - start)
        return times

    times = asyncio.run(run())
    assert times[1] < 0.1  # the burst
    assert 0.18 <= times[-1] < 0.6  # then 4 more at 20/s (generous above: a loaded CI box oversleeps)


def test_per_minute_bucket_holds_burst_seconds_of_quota() -> None:
    bucket = TokenBucket.per_minute(600, burst_s=2)
    assert bucket.rate_per_s == 10 and bucket.capacity == 20
    assert TokenBucket.per_minute(1, burst_s=1).capacity == 1  # never below one request


def test_usage_correction_charges_debt_and_refunds() -> None:
    async def run() -> tuple[float, float]:
        bucket = TokenBucket(rate_per_s=100, capacity=100)
        await bucket.acquire(50)
        bucket.adjust(50 - 130)  # estimated 50, the server reported 130: 80 more are owed
        start = time.monotonic()
        await bucket.acquire(10)  # 100 - 50 - 80 = -30: waits for 40 tokens
        waited = time.monotonic() - start
        bucket.adjust(1000)  # a refund never overfills
        return waited, bucket.tokens

    waited, tokens = asyncio.run(run())
    assert 0.37 <= waited < 0.9
    assert tokens == pytest.approx(100, abs=0.01)


def test_a_call_larger_than_the_bucket_waits_for_a_full_bucket() -> None:
    async def run() -> None:
        bucket = TokenBucket(rate_per_s=1000, capacity=10)
        await asyncio.wait_for(bucket.acquire(10_000), timeout=1)

    asyncio.run(run())


def test_limiter_bounds_concurrency() -> None:
    async def run() -> int:
        limiter = Limiter(max_concurrency=3)
        peak = 0

        async def call() -> None:
            nonlocal peak
            async with limiter.slot(10):
                peak = max(peak, limiter.inflight)
                await asyncio.sleep(0.02)

        await asyncio.gather(*(call() for _ in range(12)))
        return peak

    assert asyncio.run(run()) == 3


def test_limiter_settles_tokens() -> None:
    limiter = Limiter(max_concurrency=1, tpm=6000, burst_s=1)  # 100 tokens/s, 100 in the bucket
    assert limiter.tokens is not None and limiter.requests is None
    limiter.settle(estimated_tokens=50, used_tokens=150)
    assert limiter.tokens.tokens == pytest.approx(0, abs=1)


@pytest.mark.parametrize("attempt", [1, 2, 3, 8])
def test_backoff_is_jittered_exponential_and_capped(attempt: int) -> None:
    step = min(4.0, 0.5 * 2 ** (attempt - 1))
    delays = [backoff_s(attempt, initial_s=0.5, max_s=4.0) for _ in range(200)]
    assert all(step / 2 <= d <= step for d in delays)
    assert len(set(delays)) > 100


def test_parse_retry_after() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("") is None and parse_retry_after("soon") is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert parse_retry_after(future) == pytest.approx(30, abs=2)
