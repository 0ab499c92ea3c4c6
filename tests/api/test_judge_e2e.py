"""The judge component end to end: POST /score -> reward API -> judge proxy -> a fake vLLM server.

Everything speaks real HTTP: the fake answers OpenAI chat-completions requests with verdicts computed
from the candidate's pixels, so the expected scores are known; Redis (db 14) caches the verdicts.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
import redis

from services.judge_proxy.app import create_app as create_proxy
from services.judge_proxy.rubrics import RUBRICS
from services.reward_api.api.main import create_app
from services.reward_api.core.settings import Settings
from services.reward_api.pipeline import Pipeline
from tests.api.conftest import running
from tests.judge_proxy._servers import FakeOpenAI, serve, verdict_for
from tests.judge_proxy.conftest import REDIS_URL, make_settings

RED = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><circle cx="32" cy="32" r="24" fill="#e00"/></svg>'
SMALL = RED.replace('r="24"', 'r="8"')


@pytest.fixture
def stack(settings: Settings) -> Iterator[tuple[FakeOpenAI, str, redis.Redis]]:
    """A fake vLLM, a judge proxy in front of it (cache on), and a reward API pointed at the proxy."""
    cache = redis.Redis.from_url(REDIS_URL)
    cache.flushdb()
    proxy_settings = make_settings(openai_base_url=None, cache_ttl_s=600, deadline_s=3.0, attempt_timeout_s=1.0)
    with FakeOpenAI(model="fake-model") as vllm:
        proxy_settings = proxy_settings.model_copy(update={"openai_base_url": vllm.url, "openai_model": "fake-model"})
        api_settings = settings.model_copy(update={"judge_url": None, "profile": "vfig-im2svg-judge"})
        with (
            serve(create_proxy(proxy_settings)) as proxy,
            Pipeline.embedded(api_settings.model_copy(update={"judge_url": proxy, "workers": 1})) as pipeline,
            running(create_app(pipeline.settings, pipeline)) as api,
        ):
            yield vllm, api, cache
    cache.flushdb()
    cache.close()


def _post(api: str, completions: list[str]) -> dict:
    response = httpx.post(f"{api}/score", json={"reference": {"svg": RED}, "completions": completions}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_judge_scores_reach_the_reward_and_are_cached(stack: tuple[FakeOpenAI, str, redis.Redis]) -> None:
    vllm, api, cache = stack
    body = _post(api, [RED, SMALL, "no svg at all"])
    full, small, prose = body["results"]
    assert full["status"] == small["status"] == "ok" and prose["status"] == "no_svg"
    # The verdict the fake gave each render, combined by the rubric: the proxy's score is the component.
    rubric = RUBRICS["vfig-im2svg"]
    sent = [r.body for r in vllm.requests]
    assert len(sent) == 2  # only rendered candidates are judged
    scores = sorted(rubric.combine(verdict_for(*vllm.candidate_and_schema(b))) for b in sent)
    assert sorted([full["components"]["judge"], small["components"]["judge"]]) == pytest.approx(scores, abs=1e-6)
    assert full["components"]["judge"] > small["components"]["judge"]  # more ink, higher fake verdict
    assert full["reward"] == pytest.approx(full["components"]["judge"] + 0.5 * full["components"]["pixel_l2"])
    # The reference image travels with the candidate (VFig compares the two), as PNG data URLs.
    parts = sent[0]["messages"][-1]["content"]
    images = [p["image_url"]["url"] for p in parts if p.get("type") == "image_url"]
    assert len(images) == 2 and all(u.startswith("data:image/png;base64,") for u in images)
    base64.b64decode(images[0].split(",", 1)[1])
    # Same renders again: answered from the Redis cache, the judge server is not called.
    assert any(cache.scan_iter())
    again = _post(api, [RED, SMALL])
    assert len(vllm.requests) == 2
    assert again["results"][0]["components"]["judge"] == full["components"]["judge"]


@pytest.mark.parametrize("behaviour", ["server_error", "malformed", "hang"])
def test_a_failing_judge_is_status_error_never_a_score(
    stack: tuple[FakeOpenAI, str, redis.Redis], behaviour: str
) -> None:
    vllm, api, _ = stack
    vllm.default = behaviour  # every request, retries included
    body = _post(api, [RED, "prose"])
    judged, prose = body["results"]
    assert judged["status"] == "error" and judged["reward"] is None and body["rewards"][0] is None
    assert "judge failed" in judged["detail"]
    assert prose["status"] == "no_svg" and prose["reward"] == pytest.approx(-0.5)  # judge 0 x 1 + pixel -1 x 0.5


def test_an_unreachable_proxy_is_status_error(settings: Settings) -> None:
    api_settings = settings.model_copy(
        update={"judge_url": "http://127.0.0.1:9", "judge_timeout_s": 2.0, "profile": "vfig-im2svg-judge"}
    )
    with running(create_app(api_settings)) as api:
        body = _post(api, [RED])
    (result,) = body["results"]
    assert result["status"] == "error" and result["reward"] is None and "unavailable" in result["detail"]


def test_judge_without_a_proxy_configured_is_a_clear_422(settings: Settings, pipeline: Pipeline) -> None:
    with running(create_app(settings, pipeline)) as api:
        response = httpx.post(
            f"{api}/score",
            json={"reference": {"svg": RED}, "completions": [RED], "profile": "vfig-im2svg-judge"},
            timeout=60,
        )
    assert response.status_code == 422 and "RLRF_JUDGE_URL" in response.json()["detail"]


def test_a_rubric_input_the_group_lacks_is_a_422_not_rollout_errors(stack: tuple[FakeOpenAI, str, redis.Redis]) -> None:
    vllm, api, _ = stack
    body = {"task": "text2svg", "reference": {"svg": RED}, "completions": [RED], "weights": {"judge": 1.0}}
    response = httpx.post(f"{api}/score", json=body, timeout=60)
    assert response.status_code == 422 and "needs reference.text" in response.json()["detail"]
    assert vllm.requests == []
