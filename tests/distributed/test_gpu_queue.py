"""Learned components in distributed mode: CPU workers render, a GPU-queue worker embeds."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from services.reward_api.core.results import Status
from services.reward_api.core.schemas import ScoreRequest
from services.reward_api.core.settings import Settings
from services.reward_api.pipeline import Pipeline
from tests.conftest import svg_dev_files
from tests.distributed.conftest import distributed_settings, workers
from tests.models.test_pipeline_models import CIRCLE, WORDS


@pytest.fixture(scope="module")
def embedded_models(model_settings: Settings) -> Iterator[Pipeline]:
    with Pipeline.embedded(model_settings) as p:
        yield p


def _requests() -> list[ScoreRequest]:
    files = svg_dev_files()
    groups = []
    for k in range(4):
        reference = files[k * 37].read_text()
        completions = [reference, files[k * 37 + 1].read_text(), "prose only", files[k * 37 + 2].read_text()]
        groups.append(ScoreRequest(reference={"svg": reference}, completions=completions, profile="rlrf-im2svg-full"))
    groups.append(
        ScoreRequest(
            task="text2svg", reference={"text": "a red circle"}, completions=[CIRCLE, WORDS], profile="rlrf-text2svg"
        )
    )
    return groups


@pytest.mark.slow
def test_gpu_worker_results_equal_embedded_mode(
    system_redis: str, model_settings: Settings, embedded_models: Pipeline
) -> None:
    settings = distributed_settings(
        system_redis,
        dreamsim_dir=model_settings.dreamsim_dir,
        clip_checkpoint=model_settings.clip_checkpoint,
        clip_model_config=model_settings.clip_model_config,
    )
    requests = _requests()
    expected = [embedded_models.score_group(r) for r in requests]
    with (
        workers(settings, count=1),
        workers(settings, count=1, queue="gpu", threads=8, already=1),
        Pipeline.distributed(settings) as pipeline,
        ThreadPoolExecutor(5) as pool,
    ):
        got = list(pool.map(pipeline.score_group, requests))  # concurrent groups share GPU batches
    for want, have in zip(expected, got):
        for a, b in zip(want.results, have.results):
            assert (a.status, a.flags) == (b.status, b.flags)
            assert a.components == pytest.approx(b.components, abs=1e-5)
    assert got[0].results[0].components["dreamsim"] == pytest.approx(1.0, abs=1e-5)
    assert "text_removed" in got[-1].results[1].flags
    # Results (renders, embeddings) are deleted from Redis once collected, not left for result_expires.
    assert list(redis.Redis.from_url(system_redis).scan_iter("celery-task-meta-*")) == []


def test_no_gpu_worker_means_status_error_not_a_score(system_redis: str) -> None:
    settings = distributed_settings(system_redis, request_deadline_s=3.0)
    reference = svg_dev_files()[5].read_text()
    with workers(settings, count=1), Pipeline.distributed(settings) as pipeline:
        result = pipeline.score_group(
            ScoreRequest(reference={"svg": reference}, completions=[reference, "no svg"], profile="dreamsim")
        )
    rendered, prose = result.results
    assert rendered.status is Status.error and rendered.reward is None and "deadline" in (rendered.detail or "")
    assert prose.status is Status.no_svg and prose.reward == -1.0
