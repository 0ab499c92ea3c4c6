"""Distributed mode with real Redis, real `rlrf worker` processes and real HTTP."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest

from services.reward_api.api.main import create_app
from services.reward_api.core.results import Status
from services.reward_api.core.schemas import ScoreRequest
from services.reward_api.pipeline import Pipeline
from tests import _hostile as h
from tests.api.conftest import running
from tests.conftest import svg_dev_files
from tests.distributed.conftest import PrivateRedis, distributed_settings, workers

pytestmark = pytest.mark.slow

REF = svg_dev_files()[30].read_text()
GROUP = [
    REF,
    f"```svg\n{svg_dev_files()[31].read_text()}\n```",
    "no svg",
    REF[:-20],
    h.image_href("/etc/passwd"),
    h.GOOD,
    h.use_bomb(),
    *[svg_dev_files()[i].read_text() for i in range(32, 41)],
]


def test_both_backends_return_identical_results(system_redis: str, pipeline: Pipeline) -> None:
    settings = distributed_settings(system_redis)
    request = ScoreRequest(reference={"svg": REF}, completions=GROUP)
    with workers(settings, count=2), Pipeline.distributed(settings) as distributed:
        remote = distributed.score_group(request)
        again = distributed.score_group(request)  # reference now cached in the workers
    local = pipeline.score_group(request)
    assert [r.model_dump() for r in remote.results] == [r.model_dump() for r in local.results]
    assert remote.rewards == again.rewards
    assert {r.status for r in remote.results} >= {Status.ok, Status.no_svg, Status.truncated, Status.rejected}


def test_http_service_on_the_celery_backend(system_redis: str) -> None:
    settings = distributed_settings(system_redis)
    with workers(settings), running(create_app(settings)) as url:
        ready = httpx.get(f"{url}/readyz", timeout=10).json()
        assert ready["ready"] and ready["celery_workers"] == 1
        body = {"reference": {"svg": REF}, "completions": GROUP[:6]}
        data = httpx.post(f"{url}/score", json=body, timeout=60).json()
        assert data["results"][0]["components"]["pixel_l2"] == 1.0
        # GROUP[1] and h.GOOD are under half REF's length: rejected by the length-collapse guard.
        statuses = [r["status"] for r in data["results"]]
        assert statuses == ["ok", "rejected", "no_svg", "truncated", "rejected", "rejected"]
        assert "length_collapse" in data["results"][1]["flags"] and "length_collapse" in data["results"][5]["flags"]

        answers: list[object] = []

        def client() -> None:
            answers.append(httpx.post(f"{url}/score", json=body, timeout=120).json()["rewards"])

        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=180)
        assert answers == [data["rewards"]] * 8


def test_no_worker_means_explicit_errors_by_the_deadline(system_redis: str) -> None:
    settings = distributed_settings(system_redis, request_deadline_s=2.0)
    with Pipeline.distributed(settings) as distributed:
        started = time.monotonic()
        result = distributed.score_group(ScoreRequest(reference={"image_b64": _png_b64()}, completions=[REF, "x"]))
        assert time.monotonic() - started < 10
    assert result.results[0].status is Status.error and result.results[0].reward is None
    assert "deadline" in (result.results[0].detail or "")
    assert result.results[1].status is Status.no_svg  # decided locally, no worker needed


def test_worker_killed_mid_request_is_redelivered_nothing_lost(system_redis: str) -> None:
    """SIGKILL one of two workers while it holds chunks: the request still completes, every rollout once."""
    settings = distributed_settings(system_redis, visibility_timeout_s=6.0, task_time_limit_s=5.0)
    slow = [h.huge_filter_region()] + [h.GOOD] * 3  # each chunk of 4 spends ~2 s on its first SVG
    request = ScoreRequest(reference={"svg": h.GOOD}, completions=slow * 4)
    with workers(settings, count=2) as procs, Pipeline.distributed(settings) as distributed:
        outcome: dict[str, object] = {}
        thread = threading.Thread(target=lambda: outcome.update(result=distributed.score_group(request)))
        thread.start()
        time.sleep(1.0)
        os.killpg(procs[0].pid, signal.SIGKILL)
        thread.join(timeout=90)
    result = outcome["result"]
    assert len(result.results) == 16  # type: ignore[attr-defined]
    statuses = [r.status for r in result.results]  # type: ignore[attr-defined]
    details = [r.detail for r in result.results]  # type: ignore[attr-defined]
    assert statuses.count(Status.ok) >= 12 and Status.error not in statuses, (statuses, details)


def test_redis_restarted_during_a_run(private_redis: PrivateRedis) -> None:
    """Redis (no persistence) dies mid-request: the request ends by its deadline with explicit errors or scores."""
    settings = distributed_settings(private_redis.url, request_deadline_s=15.0)
    request = ScoreRequest(reference={"svg": REF}, completions=GROUP)
    with workers(settings), Pipeline.distributed(settings) as distributed:
        assert distributed.score_group(request).results[0].status is Status.ok
        outcome: dict[str, object] = {}
        slow = ScoreRequest(reference={"svg": h.GOOD}, completions=[h.huge_filter_region()] * 4 + [h.GOOD] * 4)
        thread = threading.Thread(target=lambda: outcome.update(result=distributed.score_group(slow)))
        thread.start()
        time.sleep(0.5)
        private_redis.stop()
        time.sleep(1.0)
        private_redis.start()
        thread.join(timeout=60)
        assert not thread.is_alive()
        statuses = {r.status for r in outcome["result"].results}  # type: ignore[attr-defined]
        assert statuses <= {Status.ok, Status.render_timeout, Status.error}
        # After the restart the service works again (workers and API reconnect).
        deadline = time.monotonic() + 60
        while True:
            after = distributed.score_group(ScoreRequest(reference={"svg": REF + " "}, completions=[REF]))
            if after.results[0].status is Status.ok or time.monotonic() > deadline:
                break
        assert after.results[0].status is Status.ok


def _png_b64() -> str:
    import base64

    import cv2
    import numpy as np

    image = np.full((32, 32, 3), 255, np.uint8)
    image[8:24, 8:24] = (0, 0, 200)
    return base64.b64encode(cv2.imencode(".png", image)[1].tobytes()).decode()
