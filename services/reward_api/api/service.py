"""What the routes call: admission control (back-pressure) around the one pipeline.

The pipeline is synchronous (it blocks on render workers), so groups run in threads; admission
counts rollouts in flight and refuses beyond ``Settings.inflight_limit`` with 429, so a burst of
requests can never queue unbounded memory or latency; a request larger than the limit itself gets
413 (it could never be admitted, so a 429 would have it retry forever).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from typing import NamedTuple

import anyio
import anyio.to_thread

from services.reward_api.api.metrics import Metrics
from services.reward_api.api.recent import RecentGroups
from services.reward_api.api.runs import RunCollector, RunStats
from services.reward_api.core.errors import OverloadedError, RequestTooLargeError
from services.reward_api.core.results import Capture, GroupResult
from services.reward_api.core.schemas import ScoreRequest
from services.reward_api.core.settings import Settings
from services.reward_api.pipeline import Pipeline

_GROUP_THREADS = 64  # groups scored at once; the render workers are the real limit
_MAX_RETRY_AFTER_S = 60


class Scored(NamedTuple):
    """One group's result, and its renders when they were brought back."""

    result: GroupResult
    capture: Capture | None


class RewardService:
    """The pipeline plus admission control and metrics; one per app."""

    def __init__(self, settings: Settings, pipeline: Pipeline) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.metrics = Metrics()
        self.recent = RecentGroups(settings)
        self.runs = RunStats(settings)
        self.metrics.registry.register(RunCollector(self.runs))
        self._inflight = 0
        self._latency_s = 0.0  # moving average of a request's time in the service
        self._promised: list[tuple[float, int]] = []  # (when, rollouts) of refused requests told to return
        self._lock = threading.Lock()
        self._limiter: anyio.CapacityLimiter | None = None  # made inside the app's event loop

    async def score_groups(self, requests: Sequence[ScoreRequest]) -> list[Scored]:
        """Score several groups concurrently (one admission for all), in order."""
        rollouts = sum(len(r.completions) for r in requests)
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(_GROUP_THREADS)
        limiter = self._limiter
        self._admit(rollouts)
        started = time.monotonic()
        try:
            outcomes: list[Scored | Exception | None] = [None] * len(requests)

            async def one(index: int, request: ScoreRequest) -> None:
                try:
                    outcomes[index] = await anyio.to_thread.run_sync(self._score, request, limiter=limiter)
                except Exception as exc:  # re-raised below as itself, not wrapped in an ExceptionGroup
                    outcomes[index] = exc

            async with anyio.create_task_group() as group:
                for index, request in enumerate(requests):
                    group.start_soon(one, index, request)
        finally:
            self._release(rollouts, time.monotonic() - started)
        results: list[Scored] = []
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
            assert outcome is not None
            self.metrics.observe(outcome.result)
            results.append(outcome)
        return results

    def _score(self, request: ScoreRequest) -> Scored:
        """One group, in a worker thread; it goes to its run's step, and a sampled one to the dashboard.

        Renders are brought back only when asked (``renders``), for the dashboard's sample, or for
        the few groups per step whose best and worst rollouts the run view shows.
        """
        sampled = self.recent.want()
        for_run = self.runs.want(request)
        capture: Capture | None = None
        if sampled or for_run or request.renders:
            result, capture = self.pipeline.score_group_captured(request)
        else:
            result = self.pipeline.score_group(request)
        if sampled and capture is not None:
            self.recent.add(request, result, capture)
        self.runs.add(request, result, capture)
        return Scored(result, capture)

    def _admit(self, rollouts: int) -> None:
        limit = self.settings.inflight_limit
        if rollouts > limit:
            raise RequestTooLargeError(
                f"{rollouts} rollouts in one request, and at most {limit} are ever in flight: "
                "it can never be admitted; split it into requests of at most that many"
            )
        with self._lock:
            if self._inflight + rollouts > limit:
                raise OverloadedError(
                    f"{self._inflight} rollouts in flight; {rollouts} more would exceed {limit}",
                    retry_after_s=self._retry_after_s(rollouts, limit),
                )
            self._inflight += rollouts
            self.metrics.inflight.set(self._inflight)

    def _release(self, rollouts: int, elapsed_s: float) -> None:
        with self._lock:
            self._inflight -= rollouts
            self._latency_s += 0.2 * (elapsed_s - self._latency_s)
            self.metrics.inflight.set(self._inflight)

    def _retry_after_s(self, rollouts: int, limit: int) -> int:
        """When to come back: once the pool has drained the work in flight and the refused ahead.

        Little's law: at the limit, the recent time a request spends in the service is how long
        the pool takes to drain a full queue. Each limit's worth of rollouts already told to come
        back costs one more such period, so refused clients return staggered, about when there is
        room for them, whatever this box's throughput (not all at once, most refused again).
        Called under the lock.
        """
        now = time.monotonic()
        self._promised = [(due, n) for due, n in self._promised if due > now]  # past due: back, or gone
        ahead = sum(n for _, n in self._promised)
        wait = math.ceil(self._latency_s * (1 + ahead // limit))
        wait = min(_MAX_RETRY_AFTER_S, max(self.settings.retry_after_s, wait))
        self._promised.append((now + wait, rollouts))
        return wait
