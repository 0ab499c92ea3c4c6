"""Distributed mode across hosts: the API, Redis and two CPU workers each in their own network namespace.

Real processes (``redis-server``, ``rlrf worker``, the API app under uvicorn) on private addresses,
and real network faults between them (tests/multihost/_netns.py): a link cut while a worker holds
chunks, Redis unreachable from the API for 20 s and for longer than the request deadline, one
worker behind a slow link. What each must survive: every rollout answered once; ``error`` only
past the deadline; ready and scoring again once the network is back.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import _hostile as h
from tests.conftest import REPO
from tests.multihost import _netns

pytestmark = pytest.mark.slow

SLOW = h.huge_filter_region()  # about render_timeout_s of one render process
GROUP = [SLOW, h.GOOD, h.GOOD, h.GOOD] * 4  # four chunks of four: both workers get some


@pytest.fixture(scope="module")
def namespaces() -> None:
    try:
        _netns.probe()
    except _netns.Unavailable as exc:
        pytest.skip(f"no network namespaces here: {exc}")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")


@dataclass
class Stack:
    cluster: _netns.Cluster
    client: httpx.Client
    logs: Path
    deadline_s: float

    def ready(self, *, workers: int = 2, timeout_s: float = 90) -> dict[str, Any]:
        """Poll /readyz until it is 200 with ``workers`` workers, bounded."""
        deadline = time.monotonic() + timeout_s
        last: object = None
        while time.monotonic() < deadline:
            try:
                response = self.client.get("/readyz", timeout=15)
                last = (response.status_code, response.text[:300])
                if response.status_code == 200 and response.json().get("celery_workers", 0) >= workers:
                    return response.json()
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.5)
        raise AssertionError(f"not ready with {workers} workers within {timeout_s} s: {last}\n{self.tail()}")

    def score(self, completions: list[str], *, reference: str = h.GOOD) -> tuple[dict[str, Any], float]:
        started = time.monotonic()
        response = self.client.post(
            "/score",
            json={"reference": {"svg": reference}, "completions": completions},
            timeout=self.deadline_s + 60,
        )
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text[:500]
        return response.json(), elapsed

    def score_during(self, completions: list[str], fault: Any, *, after_s: float = 1.0) -> tuple[dict[str, Any], float]:
        """Score while ``fault()`` runs ``after_s`` into the request; bounded by the deadline."""
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["data"], outcome["elapsed"] = self.score(completions)
            except BaseException as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        time.sleep(after_s)
        fault()
        thread.join(timeout=self.deadline_s + 90)
        assert not thread.is_alive(), f"POST /score still open {self.deadline_s + 90:.0f} s on\n{self.tail()}"
        if "error" in outcome:
            raise AssertionError(f"POST /score: {outcome['error']!r}\n{self.tail()}")
        return outcome["data"], outcome["elapsed"]

    def tail(self, lines: int = 15) -> str:
        out = []
        for log in sorted(self.logs.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"---- {log.name}\n" + "\n".join(text))
        return "\n".join(out)


def _env(redis_address: str, deadline_s: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLRF_")}
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "RLRF_BACKEND": "celery",
            "RLRF_REDIS_URL": f"redis://{redis_address}:6379/0",
            "RLRF_CPU_QUEUE": f"rlrf.mh.{uuid.uuid4().hex[:8]}",
            "RLRF_WORKERS": "1",
            "RLRF_RENDER_TIMEOUT_S": "2",
            "RLRF_CELERY_CHUNK_SIZE": "4",
            "RLRF_TASK_TIME_LIMIT_S": "8",
            "RLRF_VISIBILITY_TIMEOUT_S": "12",  # above the task limit plus one render limit (checked at start)
            "RLRF_REQUEST_DEADLINE_S": str(deadline_s),
        }
    )
    return env


@pytest.fixture()
def stack_factory(namespaces: None, tmp_path: Path) -> Iterator[Any]:
    """Build API, Redis and two workers on four hosts; everything is torn down after the test."""
    built: list[_netns.Cluster] = []
    clients: list[httpx.Client] = []

    def make(deadline_s: float = 60.0) -> Stack:
        cluster = _netns.Cluster(["api", "redis", "w1", "w2"])
        built.append(cluster)
        redis_host = cluster["redis"]
        env = _env(redis_host.address, deadline_s)
        redis_host.start(
            [shutil.which("redis-server") or "redis-server", "--bind", redis_host.address, "--port", "6379",
             "--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", str(tmp_path)],
            env=env, log=tmp_path / "redis.log", cwd=tmp_path,
        )  # fmt: skip
        for name in ("w1", "w2"):
            cluster[name].start(
                [sys.executable, "-m", "services.reward_api.cli", "worker", "--queue", "cpu", "--threads", "2",
                 "--name", f"{name}@%h"],
                env=env, log=tmp_path / f"{name}.log", cwd=REPO,
            )  # fmt: skip
        socket_path = tmp_path / "api.sock"
        cluster["api"].start(
            [sys.executable, "-m", "uvicorn", "--factory", "services.reward_api.api.main:create_app",
             "--uds", str(socket_path), "--log-level", "warning", "--timeout-graceful-shutdown", "10"],
            env=env, log=tmp_path / "api.log", cwd=REPO,
        )  # fmt: skip
        client = httpx.Client(transport=httpx.HTTPTransport(uds=str(socket_path)), base_url="http://api")
        clients.append(client)
        stack = Stack(cluster, client, tmp_path, deadline_s)
        deadline = time.monotonic() + 60
        while not socket_path.exists():
            assert time.monotonic() < deadline, f"the API never opened its socket\n{stack.tail()}"
            time.sleep(0.2)
        stack.ready()
        return stack

    try:
        yield make
    finally:
        for client in clients:
            client.close()
        for cluster in built:
            cluster.close()


def _statuses(data: dict[str, Any], n: int) -> list[str]:
    assert len(data["results"]) == n and len(data["rewards"]) == n, "a rollout missing or doubled"
    return [r["status"] for r in data["results"]]


def test_hosts_are_isolated_and_the_stack_scores(stack_factory: Any) -> None:
    """The baseline: scores through Redis on another host; a cut host really is cut off."""
    stack = stack_factory()
    data, _ = stack.score(GROUP)
    assert set(_statuses(data, len(GROUP))) <= {"ok", "render_timeout"}
    assert data["results"][1]["components"]["pixel_l2"] == 1.0
    w1, redis_host = stack.cluster["w1"], stack.cluster["redis"]
    connect = f"import socket; socket.create_connection(('{redis_host.address}', 6379), timeout=2)"
    probe = [sys.executable, "-c", connect]
    assert w1.run(probe) == 0
    w1.link.cut()
    assert w1.run(probe) != 0
    w1.link.restore()
    assert w1.run(probe) == 0


@pytest.mark.xfail(
    reason="intermittent (1 of 8 runs on the loaded 2-core machine, before the sweep lock expiry was cut from "
    "kombu's 300 s to a quarter visibility timeout): one chunk held by the partitioned worker was never "
    "redelivered and its 4 rollouts came back as error at the 60 s deadline",
    strict=False,
)
def test_worker_link_cut_mid_task_its_chunks_come_back_from_the_other_worker(stack_factory: Any) -> None:
    stack = stack_factory(deadline_s=60.0)
    w1 = stack.cluster["w1"]
    data, elapsed = stack.score_during(GROUP, w1.link.cut, after_s=1.0)
    statuses = _statuses(data, len(GROUP))
    assert "error" not in statuses, f"{statuses}\n{stack.tail(40)}"
    assert statuses.count("ok") == 12, statuses
    assert elapsed < stack.deadline_s
    # w1 is still cut off: the other worker did its chunks. Back on the network, both work again.
    w1.link.restore()
    again, _ = stack.score(GROUP)
    assert again["rewards"] == data["rewards"]
    stack.ready(workers=2)


def _redis_cut_from_api(stack: Stack, cut_s: float) -> tuple[dict[str, Any], float]:
    api = stack.cluster["api"]

    def fault() -> None:
        api.link.cut()
        threading.Timer(cut_s, api.link.restore).start()

    return stack.score_during(GROUP, fault, after_s=1.0)


def test_redis_unreachable_from_the_api_for_20_s(stack_factory: Any) -> None:
    stack = stack_factory(deadline_s=60.0)
    data, elapsed = _redis_cut_from_api(stack, 20.0)
    statuses = _statuses(data, len(GROUP))
    # Shorter than the deadline: nothing may be given up; the workers never lost Redis.
    assert "error" not in statuses, (elapsed, [r.get("detail") for r in data["results"]], stack.tail())
    assert elapsed < stack.deadline_s
    stack.ready(timeout_s=30)
    assert stack.score([h.GOOD])[0]["results"][0]["status"] == "ok"


def test_redis_unreachable_from_the_api_past_the_deadline(stack_factory: Any) -> None:
    stack = stack_factory(deadline_s=12.0)
    api = stack.cluster["api"]
    outcome: dict[str, Any] = {}
    # The reference is rendered and cached first: what the partition strands is the chunks, so the
    # answer is per rollout (a reference stranded too is group-level work: 503, as documented).
    assert stack.score([h.GOOD])[0]["results"][0]["status"] == "ok"

    def fault() -> None:
        api.link.cut()
        time.sleep(2)
        started = time.monotonic()
        try:  # readiness during the partition: a prompt 503, neither a hang nor a 500
            outcome["readyz"] = stack.client.get("/readyz", timeout=20).status_code
        except httpx.HTTPError as exc:
            outcome["readyz"] = repr(exc)
        outcome["readyz_s"] = time.monotonic() - started
        threading.Timer(max(0.0, 25.0 - 2 - outcome["readyz_s"]), api.link.restore).start()

    data, elapsed = stack.score_during(GROUP, fault, after_s=1.0)
    statuses = _statuses(data, len(GROUP))
    # Every rollout answered by the deadline (plus collection slack), error only for what was not back.
    assert elapsed < stack.deadline_s + 10, elapsed
    errors = [r for r in data["results"] if r["status"] == "error"]
    assert all(r["reward"] is None and "deadline" in (r.get("detail") or "") for r in errors), errors
    assert not errors or elapsed >= stack.deadline_s - 0.5, (elapsed, statuses)
    assert outcome["readyz"] == 503 and outcome["readyz_s"] < 15, outcome
    # After the partition: ready and scoring again.
    deadline = time.monotonic() + 60
    while api.link.state != "up":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    stack.ready(timeout_s=60)
    assert stack.score([h.GOOD])[0]["results"][0]["status"] == "ok"


def test_one_worker_behind_a_slow_link(stack_factory: Any) -> None:
    stack = stack_factory(deadline_s=60.0)
    reference = (REPO / "data" / "svg_dev").glob("*.svg")
    ref = sorted(reference)[5].read_text()
    group = [ref, *GROUP]
    baseline, fast_s = stack.score(group, reference=ref)
    shaping = stack.cluster["w2"].link.slow(delay_ms=300, rate_kbit=256)
    try:
        slowed, slow_s = stack.score(group, reference=ref + " ")  # a new reference: it travels again
    finally:
        stack.cluster["w2"].link.restore()
    assert slowed["rewards"] == baseline["rewards"], shaping
    assert "error" not in _statuses(slowed, len(group))
    assert slow_s < stack.deadline_s, (shaping, fast_s, slow_s)
