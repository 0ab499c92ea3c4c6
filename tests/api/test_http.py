"""The HTTP contract, through real HTTP (uvicorn on loopback) and the real pipeline."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from services.reward_api.api.main import create_app
from services.reward_api.core.schemas import ScoreRequest
from services.reward_api.core.settings import Settings
from services.reward_api.pipeline import Pipeline
from tests import _hostile as h
from tests.api.conftest import running
from tests.conftest import svg_dev_files

REF = svg_dev_files()[60].read_text()
OTHER = svg_dev_files()[61].read_text()
COMPLETIONS = [f"```svg\n{REF}\n```", "no svg here", OTHER, REF[: len(REF) // 2], h.image_href("/etc/passwd")]


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with running(create_app(Settings(workers=2, render_timeout_s=2.0))) as url:
        yield url


def test_score_matches_the_in_process_pipeline(base: str, pipeline: Pipeline) -> None:
    body = {"reference": {"svg": REF}, "completions": COMPLETIONS, "request_id": "r1"}
    response = httpx.post(f"{base}/score", json=body, timeout=60)
    assert response.status_code == 200, response.text
    data = response.json()
    expected = pipeline.score_group(ScoreRequest.model_validate(body))
    assert data["rewards"] == expected.rewards
    assert [r["status"] for r in data["results"]] == ["ok", "no_svg", "ok", "truncated", "rejected"]
    assert data["results"] == [r.model_dump(mode="json") for r in expected.results]
    assert set(data["timings_ms"]) == {"reference", "render_score", "total"}


def test_batch_keeps_order(base: str) -> None:
    groups = [
        {"reference": {"svg": REF}, "completions": [REF, OTHER]},
        {"reference": {"svg": OTHER}, "completions": [OTHER, REF, "x"], "profile": "pixel"},
    ]
    response = httpx.post(f"{base}/score/batch", json={"groups": groups}, timeout=60)
    assert response.status_code == 200, response.text
    first, second = response.json()["groups"]
    assert first["results"][0]["components"]["pixel_l2"] == 1.0 and len(first["rewards"]) == 2
    assert second["rewards"][0] == 1.0 and second["results"][2]["status"] == "no_svg"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"reference": {"svg": REF}}, "completions"),
        ({"reference": {}, "completions": ["x"]}, "reference needs at least one of"),
        ({"reference": {"svg": REF}, "completions": ["a", "b"], "completion_tokens": [1]}, "completion_tokens has 1"),
        ({"reference": {"svg": REF}, "completions": ["a"], "profile": "nope"}, "unknown profile 'nope'"),
        ({"reference": {"svg": REF}, "completions": ["a"], "weights": {"dreamsimm": 1}}, "unknown component"),
        ({"reference": {"svg": "<svg><rect"}, "completions": ["a"]}, "reference SVG is parse_error"),
        ({"task": "video", "reference": {"svg": REF}, "completions": ["a"]}, "task"),
    ],
)
def test_422_with_readable_messages(base: str, body: dict[str, object], needle: str) -> None:
    response = httpx.post(f"{base}/score", json=body, timeout=30)
    assert response.status_code == 422
    assert needle in response.text


def test_openapi_and_health(base: str) -> None:
    schema = httpx.get(f"{base}/openapi.json").json()
    assert {"/score", "/score/batch", "/openrlhf/reward", "/healthz", "/readyz", "/metrics"} <= set(schema["paths"])
    assert "ScoreRequest" in schema["components"]["schemas"]
    assert httpx.get(f"{base}/docs").status_code == 200
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{base}/readyz").json()["render_workers"] == 2


def test_metrics_count_requests_rollouts_and_statuses(base: str) -> None:
    httpx.post(f"{base}/score", json={"reference": {"svg": REF}, "completions": ["x", REF]}, timeout=30)
    text = httpx.get(f"{base}/metrics").text
    assert 'rlrf_requests_total{code="200",route="/score"}' in text
    assert 'rlrf_rollout_status_total{status="no_svg"}' in text
    assert "rlrf_rollouts_scored_total" in text and 'rlrf_stage_seconds_bucket{le="0.005",stage="total"}' in text
    assert "rlrf_queue_depth" in text and "rlrf_inflight_rollouts 0.0" in text


def test_eight_concurrent_clients(base: str, pipeline: Pipeline) -> None:
    expected = pipeline.score_group(ScoreRequest(reference={"svg": REF}, completions=COMPLETIONS)).rewards
    answers: list[object] = []

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            for _ in range(3):
                r = http.post(f"{base}/score", json={"reference": {"svg": REF}, "completions": COMPLETIONS})
                answers.append(r.json()["rewards"] if r.status_code == 200 else r.status_code)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert answers == [expected] * 24


def test_openrlhf_protocol(base: str) -> None:
    prompt = "Write SVG code for the image.\n"
    labels = [REF, REF, json.dumps({"svg": OTHER}), json.dumps({"svg": OTHER})]
    body = {
        "query": [prompt + REF, prompt + "no idea", prompt + OTHER, prompt + f"```svg\n{REF}\n```"],
        "prompts": [prompt] * 4,
        "labels": labels,
    }
    response = httpx.post(f"{base}/openrlhf/reward", json=body, timeout=60)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["rewards"] == data["scores"] and len(data["rewards"]) == 4
    assert data["rewards"][0] == pytest.approx(2.075) and data["rewards"][1] == pytest.approx(-2.1)
    assert data["rewards"][2] == pytest.approx(2.075) and data["rewards"][3] < 2.0
    assert data["extra_logs"]["ok"] == [1.0, 0.0, 1.0, 1.0]
    assert data["extra_logs"]["pixel_l2"][0] == 1.0
    bad = httpx.post(f"{base}/openrlhf/reward", json={**body, "labels": labels[:2]}, timeout=30)
    assert bad.status_code == 422 and "same length" in bad.text


def test_limits_auth_and_back_pressure() -> None:
    settings = Settings(
        workers=1, render_timeout_s=2.0, max_body_bytes=20_000, max_inflight_rollouts=6, api_token="s3cret"
    )
    with running(create_app(settings)) as url:
        auth = {"Authorization": "Bearer s3cret"}
        small = {"reference": {"svg": h.GOOD}, "completions": [h.GOOD]}
        assert httpx.post(f"{url}/score", json=small).status_code == 401
        wrong = httpx.post(f"{url}/score", json=small, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
        assert httpx.post(f"{url}/score", json=small, headers=auth).status_code == 200
        assert httpx.get(f"{url}/healthz").status_code == 200  # probes need no token
        big = {"reference": {"svg": h.GOOD}, "completions": ["x" * 30_000]}
        too_large = httpx.post(f"{url}/score", json=big, headers=auth)
        assert too_large.status_code == 413 and "over 20000 bytes" in too_large.text
        chunked = httpx.post(f"{url}/score", content=iter([b"{" + b" " * 25_000 + b"}"]), headers=auth)
        assert chunked.status_code == 413
        # More rollouts than are ever admitted at once: 413 (retrying cannot help), not 429 forever.
        over = httpx.post(f"{url}/score", json={**small, "completions": [h.GOOD] * 7}, headers=auth)
        assert over.status_code == 413 and over.json()["error"] == "RequestTooLargeError"
        assert "7 rollouts in one request" in over.text and "at most 6" in over.text
        batch = httpx.post(
            f"{url}/score/batch", json={"groups": [small] * 4 + [{**small, "completions": [h.GOOD] * 3}]}, headers=auth
        )
        assert batch.status_code == 413 and "7 rollouts in one request" in batch.text
        # Hold 5 rollouts in flight (two hang until the 2 s limit), then a 2-rollout request is refused.
        slow = {"reference": {"svg": h.GOOD}, "completions": [h.huge_filter_region()] * 2 + [h.GOOD] * 3}
        holder = threading.Thread(target=lambda: httpx.post(f"{url}/score", json=slow, headers=auth, timeout=60))
        holder.start()
        for _ in range(500):  # wait until the slow group is admitted
            if "rlrf_inflight_rollouts 5.0" in httpx.get(f"{url}/metrics").text:
                break
            time.sleep(0.01)
        refused = httpx.post(f"{url}/score", json={**small, "completions": [h.GOOD] * 2}, headers=auth, timeout=60)
        holder.join(timeout=60)
        assert refused.status_code == 429 and "5 rollouts in flight" in refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        assert httpx.post(f"{url}/score", json=small, headers=auth, timeout=60).status_code == 200


def test_infrastructure_failure_is_reported_never_scored(settings: Settings) -> None:
    """A dead render pool: /score answers status 'error' with reward null; OpenRLHF gets a 503."""
    pipeline = Pipeline.embedded(settings.model_copy(update={"workers": 1}))
    pipeline.score_group(ScoreRequest(reference={"svg": REF}, completions=[REF]))  # reference cached
    pipeline.close()
    held = settings.model_copy(update={"openrlhf_hold_s": 0.5})  # a pool that stays dead: 503 after the hold
    with running(create_app(held, pipeline=pipeline)) as url:
        assert httpx.get(f"{url}/readyz").status_code == 503
        data = httpx.post(f"{url}/score", json={"reference": {"svg": REF}, "completions": [REF, "x"]}).json()
        assert data["rewards"] == [None, -2.1]
        assert data["results"][0]["status"] == "error" and "closed" in data["results"][0]["detail"]
        failed = httpx.post(f"{url}/openrlhf/reward", json={"query": [REF], "labels": [REF]})
        assert failed.status_code == 503 and "no reward was invented" in failed.text
        uncached = httpx.post(f"{url}/score", json={"reference": {"svg": OTHER}, "completions": [REF]})
        assert uncached.status_code == 503 and uncached.json()["error"] == "BackendError"
