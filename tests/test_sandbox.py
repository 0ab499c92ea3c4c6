"""The worker pool: per-item timeouts, crash isolation, memory limit, contexts, concurrency."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from services.reward_api.sandbox import (
    PoolClosed,
    TaskCrash,
    TaskDeadline,
    TaskError,
    TaskStalled,
    TaskTimeout,
    WorkerPool,
)
from tests._workers import echo, misbehave


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    with WorkerPool(workers=2, timeout_s=1.0, memory_mb=1024, chunk_size=4) as p:
        assert p.wait_ready(60)
        yield p


def test_results_in_order_with_context(pool: WorkerPool) -> None:
    out = pool.run(echo, list(range(20)), context_key="ref-a", context={"ref": "a"})
    assert [item for _, item, _ in out] == list(range(20))
    assert all(ctx == {"ref": "a"} for ctx, _, _ in out)
    assert len({pid for _, _, pid in out}) == 2  # one group is spread over both workers


@pytest.mark.parametrize(
    ("bad", "failure"),
    [("hang", TaskTimeout), ("segfault", TaskCrash), ("abort", TaskCrash), ("exit", TaskCrash), ("raise", TaskError)],
)
def test_one_bad_item_fails_alone(pool: WorkerPool, bad: str, failure: type[Exception]) -> None:
    items = ["a", "b", bad, "c", "d", "e"]
    started = time.monotonic()
    out = pool.run(misbehave, items)
    assert time.monotonic() - started < 15  # a crash is tried on a second worker before it is blamed
    assert isinstance(out[2], failure), out[2]
    assert [out[i] for i in (0, 1, 3, 4, 5)] == ["ok a", "ok b", "ok c", "ok d", "ok e"]


def test_replaced_workers_keep_serving(pool: WorkerPool) -> None:
    before, retried = pool.restarts, pool.retries
    out = pool.run(misbehave, ["segfault", "hang", "x"])
    assert isinstance(out[0], TaskCrash) and isinstance(out[1], TaskTimeout) and out[2] == "ok x"
    # The crash gets a second worker before it is blamed on the item; a timeout spent rendering does not.
    assert pool.restarts == before + 3 and pool.retries == retried + 1
    assert pool.wait_ready(60)
    assert pool.run(echo, [1], context_key="k", context="fresh")[0][:2] == ("fresh", 1)


def test_memory_limit(pool: WorkerPool) -> None:
    out = pool.run(misbehave, ["allocate:4096", "allocate:16"])
    assert isinstance(out[0], TaskError) and "MemoryError" in str(out[0])
    assert out[1] == f"allocated {16 * 1024 * 1024}"


def test_concurrent_callers(pool: WorkerPool) -> None:
    results: dict[int, list[object]] = {}

    def call(n: int) -> None:
        results[n] = pool.run(echo, [f"{n}-{i}" for i in range(10)], context_key=n, context=n)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == list(range(8))
    for n, out in results.items():
        assert [(ctx, item) for ctx, item, _ in out] == [(n, f"{n}-{i}") for i in range(10)]  # type: ignore[misc]


def test_a_hot_context_survives_hundreds_of_others_on_one_worker() -> None:
    """Regression: the worker used to evict in insertion order while the parent refreshed on use, so a
    context still in use vanished from the worker after 32 others and every later item for it failed."""
    with WorkerPool(workers=1, timeout_s=5.0, memory_mb=1024, chunk_size=4) as one:
        assert one.wait_ready(60)
        for n in range(300):
            hot = one.run(echo, ["a", "b"], context_key="hot", context="HOT")
            assert [out[:2] for out in hot] == [("HOT", "a"), ("HOT", "b")], (n, hot)
            cold = one.run(echo, [n], context_key=f"cold-{n}", context=n)
            assert cold[0][:2] == (n, n), (n, cold)
        # Contexts evicted long ago are sent again when they come back.
        assert one.run(echo, ["again"], context_key="cold-0", context=0)[0][:2] == (0, "again")


def test_a_stalled_worker_is_not_the_items_fault(pool: WorkerPool) -> None:
    """A worker that sat idle through the limit (frozen, starved) gets its item retried on a fresh one."""
    retried = pool.retries
    out = pool.run(misbehave, ["stall", "x"])
    assert isinstance(out[0], TaskStalled)  # it stalled on two workers: reported as ours, never a render_timeout
    assert out[1] == "ok x" and pool.retries == retried + 1


def test_a_worker_killed_from_outside_costs_no_rollout() -> None:
    """SIGKILL (the OOM killer, an operator) of the worker holding an item: the item runs again, once."""
    import os
    import signal

    with WorkerPool(workers=1, timeout_s=10.0, memory_mb=1024, chunk_size=4) as one:
        assert one.wait_ready(60)
        futures = one.submit(misbehave, ["nap:1.5", "a", "b"])
        time.sleep(0.5)
        (victim,) = one.worker_pids
        os.kill(victim, signal.SIGKILL)
        assert [f.result(timeout=60) for f in futures] == ["ok nap:1.5", "ok a", "ok b"]
        assert one.retries == 1 and one.restarts == 1


def test_a_slow_group_does_not_hold_up_the_next() -> None:
    """Round robin between groups: 16 items that each run to the limit, then a normal group sent 0.3 s
    later. FIFO made the second wait for all 16 (about 8 x the limit on 2 workers); now it waits at
    most about one slow item per worker."""
    with WorkerPool(workers=2, timeout_s=1.0, memory_mb=1024, chunk_size=8) as two:
        assert two.wait_ready(60)
        slow = two.submit(misbehave, ["hang"] * 16)
        time.sleep(0.3)
        started = time.monotonic()
        assert two.run(misbehave, ["a", "b", "c", "d"]) == ["ok a", "ok b", "ok c", "ok d"]
        waited = time.monotonic() - started
        assert waited < 4.0, waited
        assert all(isinstance(f.exception(timeout=60), TaskTimeout) for f in slow)


def test_items_not_started_by_the_group_deadline_fail_without_running(pool: WorkerPool) -> None:
    started = time.monotonic()
    out = pool.run(misbehave, ["nap:0.4"] * 12, deadline=started + 0.6)
    assert time.monotonic() - started < 3
    assert out[:2] == ["ok nap:0.4"] * 2 and all(isinstance(o, TaskDeadline) for o in out[-6:]), out


def test_closed_pool_refuses_work() -> None:
    pool = WorkerPool(workers=1, timeout_s=5.0)
    futures = pool.submit(misbehave, ["hang", "a", "b"])
    time.sleep(0.5)
    pool.close()
    assert all(isinstance(f.exception(timeout=10), PoolClosed) for f in futures[1:])
    with pytest.raises(PoolClosed):
        pool.submit(echo, [1])
