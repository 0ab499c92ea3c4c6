"""The worker pool: per-item timeouts, crash isolation, memory limit, contexts, concurrency."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from services.reward_api.sandbox import PoolClosed, TaskCrash, TaskError, TaskTimeout, WorkerPool
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
    assert time.monotonic() - started < 6
    assert isinstance(out[2], failure), out[2]
    assert [out[i] for i in (0, 1, 3, 4, 5)] == ["ok a", "ok b", "ok c", "ok d", "ok e"]


def test_replaced_workers_keep_serving(pool: WorkerPool) -> None:
    before = pool.restarts
    out = pool.run(misbehave, ["segfault", "hang", "x"])
    assert isinstance(out[0], TaskCrash) and isinstance(out[1], TaskTimeout) and out[2] == "ok x"
    assert pool.restarts == before + 2
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


def test_closed_pool_refuses_work() -> None:
    pool = WorkerPool(workers=1, timeout_s=5.0)
    futures = pool.submit(misbehave, ["hang", "a", "b"])
    time.sleep(0.5)
    pool.close()
    assert all(isinstance(f.exception(timeout=10), PoolClosed) for f in futures[1:])
    with pytest.raises(PoolClosed):
        pool.submit(echo, [1])
