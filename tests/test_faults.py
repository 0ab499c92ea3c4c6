"""Infrastructure faults in embedded mode, injected into the real render processes: they cost latency, never
a rollout's score. A worker killed from outside or frozen is the host's fault; only an SVG that fails on two
workers is blamed (render_crash), and only one that keeps the CPU busy past the limit is a render_timeout."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from services.reward_api.core.results import GroupResult, Status
from services.reward_api.core.schemas import ScoreRequest
from services.reward_api.core.settings import Settings
from services.reward_api.pipeline import Pipeline
from tests import _hostile as h

pytestmark = pytest.mark.slow


def slow_but_legitimate(n: int = 3000) -> str:
    """About a second of real rendering: many blurred, translucent circles (well inside every policy limit)."""
    circles = "".join(
        f'<circle cx="{i % 100}" cy="{i * 7 % 100}" r="{1 + i % 9}" fill="#{i * 2654435761 % 0xFFFFFF:06x}" '
        'fill-opacity="0.5" filter="url(#b)"/>'
        for i in range(n)
    )
    blur = '<filter id="b"><feGaussianBlur stdDeviation="3"/><feGaussianBlur stdDeviation="2"/></filter>'
    return f'<svg {h.NS} viewBox="0 0 100 100">{blur}{circles}</svg>'


@pytest.fixture()
def one_worker() -> Iterator[Pipeline]:
    with Pipeline.embedded(Settings(workers=1, render_timeout_s=4.0)) as pipeline:
        warm = pipeline.score_group(ScoreRequest(reference={"svg": h.GOOD}, completions=[h.GOOD]))
        assert warm.results[0].status is Status.ok
        yield pipeline


def _score_while(pipeline: Pipeline, request: ScoreRequest, fault: signal.Signals, after_s: float) -> GroupResult:
    outcome: dict[str, GroupResult] = {}
    thread = threading.Thread(target=lambda: outcome.update(result=pipeline.score_group(request)))
    thread.start()
    time.sleep(after_s)
    (pid,) = pipeline.backend.pool.worker_pids  # type: ignore[attr-defined]
    assert pid is not None
    os.kill(pid, fault)
    thread.join(timeout=60)
    assert not thread.is_alive()
    return outcome["result"]


@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGSTOP])
def test_a_worker_killed_or_frozen_mid_rollout_costs_no_score(one_worker: Pipeline, fault: signal.Signals) -> None:
    slow = slow_but_legitimate()  # its own reference: 3,000 circles against one would be a pixel_grid
    alone = one_worker.score_group(ScoreRequest(reference={"svg": slow}, completions=[slow]))
    assert alone.results[0].status is Status.ok
    request = ScoreRequest(reference={"svg": slow}, completions=[slow, h.GOOD, h.GOOD])
    # The fault lands 0.2 s into a render of about a second (longer under load): always mid-item.
    result = _score_while(one_worker, request, fault, after_s=0.2)
    assert [r.status for r in result.results] == [Status.ok] * 3, [r.detail for r in result.results]
    assert result.results[0].reward == alone.results[0].reward
    assert one_worker.backend.pool.retries == 1  # type: ignore[attr-defined]


def test_a_worker_killed_during_the_reference_render_is_not_a_bad_reference(one_worker: Pipeline) -> None:
    reference = slow_but_legitimate(2400)
    request = ScoreRequest(reference={"svg": reference}, completions=[reference])
    result = _score_while(one_worker, request, signal.SIGKILL, after_s=0.4)
    assert result.results[0].status is Status.ok  # a 422 here would have told the trainer the reference is bad


def test_an_svg_that_kills_two_workers_is_blamed(one_worker: Pipeline) -> None:
    result = one_worker.score_group(ScoreRequest(reference={"svg": h.GOOD}, completions=[h.GOOD, h.use_bomb()]))
    assert result.results[0].status is Status.ok
    assert result.results[1].status in (Status.rejected, Status.render_crash, Status.render_timeout)
