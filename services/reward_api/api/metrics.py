"""Prometheus metrics of the service (scraped at ``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.reward_api.core.results import GroupResult


class Metrics:
    """One registry per app, so tests and several apps in one process never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rlrf_requests", "HTTP scoring requests by route and outcome", ["route", "code"], registry=self.registry
        )
        self.rollouts = Counter("rlrf_rollouts_scored", "Rollouts scored", registry=self.registry)
        self.statuses = Counter("rlrf_rollout_status", "Rollouts per status", ["status"], registry=self.registry)
        self.stage_seconds = Histogram(
            "rlrf_stage_seconds",
            "Per-group latency of each pipeline stage",
            ["stage"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.inflight = Gauge("rlrf_inflight_rollouts", "Rollouts queued or being scored", registry=self.registry)
        self.queue_depth = Gauge("rlrf_queue_depth", "Rollouts waiting for a render worker", registry=self.registry)
        self.worker_restarts = Gauge("rlrf_worker_restarts", "Render workers replaced", registry=self.registry)

    def observe(self, result: GroupResult) -> None:
        self.rollouts.inc(len(result.results))
        for r in result.results:
            self.statuses.labels(r.status.value).inc()
        for stage, ms in result.timings_ms.items():
            self.stage_seconds.labels(stage).observe(ms / 1e3)
