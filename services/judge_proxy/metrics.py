"""Prometheus metrics of the proxy (scraped at ``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.judge_proxy.settings import ModelPrice

# Judge calls take seconds; thinking models tens of seconds.
_CALL_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)


class Metrics:
    """One registry per app, so tests and several apps in one process never share counters."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "rlrf_judge_http_requests", "HTTP requests to /v1/judge by status code", ["code"], registry=r
        )
        self.calls = Counter(
            "rlrf_judge_calls",
            "Attempts sent to a backend, by outcome: ok, malformed, rate_limited, server_error, timeout,"
            " connection_error, rejected",
            ["backend", "outcome"],
            registry=r,
        )
        self.results = Counter(
            "rlrf_judge_results",
            "Candidates answered, by status (ok, error)",
            ["backend", "rubric", "status"],
            registry=r,
        )
        self.cache_hits = Counter(
            "rlrf_judge_cache_hits", "Verdicts served from Redis", ["backend", "rubric"], registry=r
        )
        self.cache_misses = Counter(
            "rlrf_judge_cache_misses", "Candidates not in the cache (judged)", ["backend", "rubric"], registry=r
        )
        self.cache_errors = Counter("rlrf_judge_cache_errors", "Failed Redis reads/writes", ["op"], registry=r)
        self.retries = Counter(
            "rlrf_judge_retries",
            "Attempts repeated after a transient failure, by reason",
            ["backend", "reason"],
            registry=r,
        )
        self.prompt_tokens = Counter(
            "rlrf_judge_prompt_tokens", "Prompt tokens the backends reported", ["backend", "model"], registry=r
        )
        self.completion_tokens = Counter(
            "rlrf_judge_completion_tokens",
            "Completion tokens the backends reported (thinking included)",
            ["backend", "model"],
            registry=r,
        )
        self.cost = Counter("rlrf_judge_cost_usd", "Spend at the configured prices", ["backend", "model"], registry=r)
        self.call_seconds = Histogram(
            "rlrf_judge_call_seconds", "Latency of one backend attempt", ["backend"], buckets=_CALL_BUCKETS, registry=r
        )
        self.request_seconds = Histogram(
            "rlrf_judge_request_seconds", "Latency of one POST /v1/judge", buckets=_CALL_BUCKETS, registry=r
        )
        self.inflight = Gauge("rlrf_judge_inflight_calls", "Backend attempts in flight", ["backend"], registry=r)

    def usage(self, *, backend: str, model: str, prompt: int, completion: int, price: ModelPrice | None) -> None:
        self.prompt_tokens.labels(backend, model).inc(prompt)
        self.completion_tokens.labels(backend, model).inc(completion)
        if price is not None:
            self.cost.labels(backend, model).inc((prompt * price.input + completion * price.output) / 1e6)
