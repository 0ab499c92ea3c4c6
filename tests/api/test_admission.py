"""Admission control at its default, through real HTTP: 32 trainer-like clients of 64-rollout groups.

The default limit (256 rollouts per render worker) must engage before latency grows without bound:
the service refuses with 429 and a Retry-After that staggers the refused clients, never holds more
than the limit in flight, and every client that honours Retry-After gets its group scored.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.reward_api.api.main import create_app
from services.reward_api.core.settings import INFLIGHT_PER_WORKER, Settings
from tests.api.conftest import running
from tests.conftest import svg_dev_files

CLIENTS, GROUP = 32, 64


def inflight(base: str) -> float:
    for family in text_string_to_metric_families(httpx.get(f"{base}/metrics").text):
        if family.name == "rlrf_inflight_rollouts":
            return float(family.samples[0].value)
    raise AssertionError("rlrf_inflight_rollouts missing")


def test_default_limit_follows_the_render_pool() -> None:
    assert Settings(workers=2).inflight_limit == 2 * INFLIGHT_PER_WORKER == 512
    assert Settings(workers=16).inflight_limit == 16 * INFLIGHT_PER_WORKER
    assert Settings(workers=2, backend="celery").inflight_limit == 16_384  # the API cannot see the workers' pools
    assert Settings(workers=2, max_inflight_rollouts=100).inflight_limit == 100


@pytest.mark.slow
def test_32_clients_of_64_rollouts_get_429_with_staggered_retry_after_and_all_finish() -> None:
    files = [f.read_text() for f in svg_dev_files()]
    groups = [
        {"reference": {"svg": files[i]}, "completions": [files[(i * GROUP + k) % len(files)] for k in range(GROUP)]}
        for i in range(CLIENTS)
    ]
    settings = Settings(workers=2, render_timeout_s=3.0)
    with running(create_app(settings)) as base:
        limit = settings.inflight_limit
        warm = [
            threading.Thread(target=httpx.post, args=(f"{base}/score",), kwargs={"json": g, "timeout": 120})
            for g in groups[:8]
        ]
        for thread in warm:  # one step of 8 groups: fits, and teaches the service its latency
            thread.start()
        for thread in warm:
            thread.join()

        statuses: list[int] = []
        retry_after: list[int] = []
        scored: dict[int, list[float | None]] = {}
        peak = [0.0]
        done = threading.Event()

        def client(index: int) -> None:
            with httpx.Client(base_url=base, timeout=300) as http:
                for _ in range(30):
                    response = http.post("/score", json=groups[index])
                    statuses.append(response.status_code)
                    if response.status_code != 429:
                        assert response.status_code == 200, response.text
                        scored[index] = response.json()["rewards"]
                        return
                    retry_after.append(int(response.headers["Retry-After"]))
                    time.sleep(retry_after[-1])

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], inflight(base))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        clients = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(timeout=600)
        done.set()
        watcher.join()

    assert sorted(scored) == list(range(CLIENTS))  # every group scored in the end
    assert all(len(rewards) == GROUP and None not in rewards for rewards in scored.values())
    assert statuses.count(429) >= CLIENTS - limit // GROUP  # the limit engaged: 8 groups fit, the rest waited
    assert 0 < peak[0] <= limit
    assert min(retry_after) >= 1 and max(retry_after) > min(retry_after)  # staggered, not one herd every second
