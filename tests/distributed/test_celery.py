"""Distributed mode with real Redis, real `rlrf worker` processes and real HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from services.reward_api.api.main import create_app
from services.reward_api.core.results import Status
from services.reward_api.core.schemas import ScoreRequest
from services.reward_api.pipeline import Pipeline
from tests import _hostile as h
from tests.api.conftest import running
from tests.conftest import REPO, svg_dev_files
from tests.distributed.conftest import PrivateRedis, distributed_settings, worker_env, workers

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
        assert [r["status"] for r in data["results"]] == ["ok", "ok", "no_svg", "truncated", "rejected", "ok"]

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
    # The chunk limit leaves room for a loaded 2-core box (a replaced render process takes seconds to spawn).
    settings = distributed_settings(system_redis, visibility_timeout_s=20.0, task_time_limit_s=15.0)
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


def _slow_group(n: int) -> ScoreRequest:
    """``n`` real rollouts: 96 keep two one-process workers busy for a few seconds. Copies of the reference
    (made distinct by a comment): unrelated svg_dev drawings could trip the structural guards against it."""
    heavy = max(svg_dev_files(), key=lambda f: f.stat().st_size).read_text()  # a flag with a coat of arms
    completions = [heavy.replace("</svg>", f"<!-- {i} --></svg>") for i in range(n)]
    return ScoreRequest(reference={"svg": heavy}, completions=completions)


def test_redis_restarted_mid_request_costs_latency_not_rollouts(private_redis: PrivateRedis) -> None:
    """Redis without persistence dies mid-request and comes back: the queue, the unacknowledged tasks and the
    stored reference are gone, yet every rollout is answered (the API sends what it was owed again), workers
    and the API reconnect on their own, readiness never raises, and the next request is clean."""
    settings = distributed_settings(private_redis.url, request_deadline_s=60.0)
    with workers(settings, count=2) as procs, Pipeline.distributed(settings) as distributed:
        baseline = distributed.score_group(_slow_group(96))
        assert {r.status for r in baseline.results} == {Status.ok}
        for restart in range(2):
            outcome: dict[str, object] = {}
            call = lambda o=outcome: o.update(result=distributed.score_group(_slow_group(96)))  # noqa: E731
            thread = threading.Thread(target=call)
            thread.start()
            time.sleep(0.3)
            private_redis.stop()
            assert distributed.backend.readiness()["ready"] is False  # an answer, not an exception
            time.sleep(1.5)
            private_redis.start()
            thread.join(timeout=90)
            assert not thread.is_alive()
            result = outcome["result"]
            details = [r.detail for r in result.results]  # type: ignore[attr-defined]
            assert [r.status for r in result.results] == [Status.ok] * 96, (restart, details)  # type: ignore[attr-defined]
            assert [r.reward for r in result.results] == [r.reward for r in baseline.results]  # type: ignore[attr-defined]
        assert distributed.backend.resent > 0  # type: ignore[attr-defined]
        assert all(proc.poll() is None for proc in procs)  # the workers survived both restarts
        after = distributed.score_group(ScoreRequest(reference={"svg": REF}, completions=[REF] * 8))
        assert {r.status for r in after.results} == {Status.ok}


def test_a_request_sent_while_redis_is_down_waits_for_it(private_redis: PrivateRedis) -> None:
    """Publishing fails while Redis is away: the API keeps trying until the deadline instead of answering error."""
    settings = distributed_settings(private_redis.url, request_deadline_s=60.0)
    with workers(settings), Pipeline.distributed(settings) as distributed:
        assert distributed.score_group(_slow_group(4)).results[0].status is Status.ok
        private_redis.stop()
        outcome: dict[str, object] = {}
        thread = threading.Thread(target=lambda: outcome.update(result=distributed.score_group(_slow_group(8))))
        thread.start()
        time.sleep(3.0)
        assert thread.is_alive()
        private_redis.start()
        thread.join(timeout=90)
        assert {r.status for r in outcome["result"].results} == {Status.ok}  # type: ignore[attr-defined]


def test_redis_gone_past_the_deadline_is_error_not_a_score(private_redis: PrivateRedis) -> None:
    settings = distributed_settings(private_redis.url, request_deadline_s=4.0)
    with workers(settings), Pipeline.distributed(settings) as distributed:
        assert distributed.score_group(_slow_group(4)).results[0].status is Status.ok
        private_redis.stop()
        started = time.monotonic()
        result = distributed.score_group(_slow_group(8))
        assert time.monotonic() - started < 15
        assert {r.status for r in result.results} == {Status.error} and all(r.reward is None for r in result.results)


def _png_b64() -> str:
    import base64

    import cv2
    import numpy as np

    image = np.full((32, 32, 3), 255, np.uint8)
    image[8:24, 8:24] = (0, 0, 200)
    return base64.b64encode(cv2.imencode(".png", image)[1].tobytes()).decode()


def test_a_hot_reference_stays_correct_among_hundreds_of_others(system_redis: str) -> None:
    """The same regression through Redis and one `rlrf worker` (its own reference LRU and render pool)."""
    from tests.test_pipeline import _circle

    settings = distributed_settings(system_redis, reference_cache_size=8)
    with workers(settings), Pipeline.distributed(settings) as distributed:
        for n in range(80):
            hot = distributed.score_group(ScoreRequest(reference={"svg": REF}, completions=[REF, _circle(n)]))
            assert [r.status for r in hot.results] == [Status.ok, Status.ok], (n, hot.results)
            cold = distributed.score_group(ScoreRequest(reference={"svg": _circle(n)}, completions=[_circle(n)]))
            assert cold.results[0].status is Status.ok, (n, cold.results)


def test_a_worker_that_dies_is_started_again(system_redis: str) -> None:
    """`rlrf worker` supervises its Celery worker: one that dies (as kombu's did on a Redis reconnect) comes
    back by itself, and the service works again without anybody restarting anything."""
    from services.reward_api.worker.celery_app import make_celery

    settings = distributed_settings(system_redis)
    with workers(settings) as (supervisor,), Pipeline.distributed(settings) as distributed:
        children = Path(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children").read_text().split()
        assert len(children) == 1
        os.kill(int(children[0]), signal.SIGKILL)
        app = make_celery(settings)
        deadline = time.monotonic() + 90
        while not app.control.ping(timeout=0.5):
            assert time.monotonic() < deadline, "the worker did not come back"
        assert supervisor.poll() is None
        result = distributed.score_group(ScoreRequest(reference={"svg": REF}, completions=[REF, h.GOOD]))
        assert [r.status for r in result.results] == [Status.ok, Status.ok]
    assert supervisor.poll() is not None  # SIGTERM to the group stopped the supervisor and its worker


_CRASHING_WORKER = """
import sys
from celery import bootsteps
from services.reward_api import cli
from services.reward_api.worker import tasks

class Crash(bootsteps.StartStopStep):
    def start(self, worker):
        raise RuntimeError("injected: a step of the running worker failed")

real = tasks.make_worker_app

def crashing(settings):
    app, state = real(settings)
    app.steps["worker"].add(Crash)
    return app, state

tasks.make_worker_app = crashing
sys.exit(cli.main(["worker", "--no-supervise", "--threads", "2"]))
"""


def test_a_celery_worker_that_stops_on_an_unrecoverable_error_exits_non_zero(system_redis: str) -> None:
    """Celery's "Unrecoverable error" (what kombu's reconnect bug raises) must not look like a clean stop: the
    supervisor, systemd and k8s restart on a non-zero exit only. The failure is injected as a worker
    bootstep, so Celery's own code decides the exit code."""
    from services.reward_api.worker.celery_app import make_celery

    settings = distributed_settings(system_redis)
    done = subprocess.run(
        [sys.executable, "-c", _CRASHING_WORKER],
        cwd=REPO,
        env=worker_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Unrecoverable error" in done.stderr + done.stdout
    assert done.returncode != 0

    clean = subprocess.Popen(
        [sys.executable, "-m", "services.reward_api.cli", "worker", "--no-supervise", "--threads", "2"],
        cwd=REPO,
        env=worker_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        app = make_celery(settings)
        deadline = time.monotonic() + 90
        while not app.control.ping(timeout=0.5):
            assert time.monotonic() < deadline and clean.poll() is None, "the worker did not start"
        clean.send_signal(signal.SIGTERM)  # a warm shutdown is a clean stop: 0, and the supervisor stops too
        assert clean.wait(timeout=60) == 0
    finally:
        clean.kill()


def test_a_slow_group_does_not_hold_up_the_next_in_celery_mode(system_redis: str) -> None:
    """A group whose 16 SVGs each run to the limit, then a normal group: the worker takes the normal chunk
    beside the slow ones (it has more task threads than a slow group has chunks) and its render pool serves
    it first, so it waits about one render limit, not the slow group's ~8."""
    settings = distributed_settings(system_redis, render_timeout_s=1.0, celery_chunk_size=4, workers=2)
    slow = ScoreRequest(reference={"svg": h.GOOD}, completions=[h.huge_filter_region()] * 16)
    with workers(settings, threads=8), Pipeline.distributed(settings) as distributed:
        distributed.score_group(ScoreRequest(reference={"svg": h.GOOD}, completions=[h.GOOD] * 4))  # warm
        thread = threading.Thread(target=lambda: distributed.score_group(slow))
        thread.start()
        time.sleep(0.5)
        started = time.monotonic()
        normal = distributed.score_group(ScoreRequest(reference={"svg": REF}, completions=[REF] * 8))
        waited = time.monotonic() - started
        thread.join(timeout=120)
    assert {r.status for r in normal.results} == {Status.ok}
    assert waited < 4.0, waited


def test_the_guards_counts_travel_with_each_outcome(settings) -> None:  # type: ignore[no-untyped-def]
    """A worker's outcome carries the candidate's structure over the wire, so the API does not parse
    every SVG a second time for the guards (it did: Celery's API threads spent more CPU than embedded's)."""
    from services.reward_api.guards import structure
    from services.reward_api.scoring import render_job, score_svg
    from services.reward_api.worker import wire

    svg = svg_dev_files()[7].read_text()
    outcome = score_svg(None, svg, job=render_job(settings))
    assert outcome.status is Status.ok and outcome.structure == structure(svg)
    back = wire.outcome_from_wire(wire.outcome_to_wire(outcome))
    assert back == outcome and back.structure is not None  # type: ignore[union-attr]
