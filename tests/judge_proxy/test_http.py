"""The proxy through real HTTP, in front of fake judges speaking the OpenAI and Gemini wire formats.

The Gemini tests go through the real google-genai SDK, pointed at the fake with ``base_url``.
"""

from __future__ import annotations

import base64
import io
import time

import pytest
import redis
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from services.judge_proxy.app import create_app
from services.judge_proxy.rubrics import RLRF_TEXT2SVG, VFIG_IM2SVG, Rubric
from tests.judge_proxy._servers import Behaviour, FakeGemini, FakeOpenAI, free_port, png, serve, verdict_for
from tests.judge_proxy.conftest import HTTP, Proxy, b64, make_settings, post_judge

REFERENCE = png(ink_rows=20)
CANDIDATES = [png(ink_rows=k) for k in (0, 16, 48)]


def expected_score(candidate: bytes, rubric: Rubric = VFIG_IM2SVG) -> float:
    return rubric.combine(verdict_for(candidate, rubric.schema))


def metric(base: str, name: str, **labels: str) -> float:
    """One sample of /metrics (0 when absent)."""
    text = HTTP.get(f"{base}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def decode_data_url(url: str) -> Image.Image:
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


# --- wire formats -------------------------------------------------------------------------------


def test_openai_wire_format_and_scores_from_pixels(proxy: Proxy, openai_server: FakeOpenAI) -> None:
    base = proxy(openai_api_key="sk-test")
    response = post_judge(base, candidates=CANDIDATES, reference_image_b64=REFERENCE)
    assert response.status_code == 200, response.text
    data = response.json()
    assert (data["rubric"], data["rubric_version"], data["backend"], data["model"]) == (
        "vfig-im2svg",
        "v1",
        "openai",
        "fake-model",
    )
    scores = [r["score"] for r in data["results"]]
    assert scores == pytest.approx([expected_score(c) for c in CANDIDATES]) and len(set(scores)) == 3
    assert all(r["status"] == "ok" and r["flags"] == [] and r["cached"] is False for r in data["results"])
    assert set(data["results"][1]["axes"]) == {"presence", "layout", "connectivity", "details"}

    assert openai_server.calls == 3
    request = openai_server.requests[0]
    assert request.path == "/v1/chat/completions" and request.headers["authorization"] == "Bearer sk-test"
    body = request.body
    assert body["model"] == "fake-model" and body["temperature"] == 0 and body["max_tokens"] == 512
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "vfig-im2svg", "schema": VFIG_IM2SVG.schema, "strict": True},
    }
    system, user = body["messages"]
    assert system == {"role": "system", "content": VFIG_IM2SVG.instructions}
    assert user["role"] == "user"
    assert [p["type"] for p in user["content"]] == ["text", "image_url", "text", "image_url", "text"]
    reference = decode_data_url(user["content"][1]["image_url"]["url"])
    assert reference.mode == "RGB" and reference.tobytes() == Image.open(io.BytesIO(REFERENCE)).tobytes()


def test_gemini_wire_format_through_the_sdk(proxy: Proxy, gemini_server: FakeGemini) -> None:
    base = proxy()
    response = post_judge(base, candidates=CANDIDATES, reference_image_b64=REFERENCE, backend="gemini")
    assert response.status_code == 200, response.text
    data = response.json()
    assert (data["backend"], data["model"]) == ("gemini", "gemini-test")
    assert [r["score"] for r in data["results"]] == pytest.approx([expected_score(c) for c in CANDIDATES])

    assert gemini_server.calls == 3
    request = gemini_server.requests[0]
    assert request.path == "/v1beta/models/gemini-test:generateContent"
    assert request.headers["x-goog-api-key"] == "test-key"
    assert request.headers["x-server-timeout"] == "5"  # the attempt timeout reached the SDK
    body = request.body
    config = body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == VFIG_IM2SVG.schema
    assert config["temperature"] == 0 and config["maxOutputTokens"] == 8192 and "thinkingConfig" not in config
    assert body["systemInstruction"]["parts"][0]["text"] == VFIG_IM2SVG.instructions
    parts = body["contents"][0]["parts"]
    images = [p["inlineData"] for p in parts if "inlineData" in p]
    assert len(images) == 2 and len(parts) == 5
    assert all((i.get("mimeType") or i.get("mime_type")) == "image/png" for i in images)
    sent = set()  # the calls run concurrently: any order
    for request in gemini_server.requests:
        inline = [p["inlineData"] for p in request.body["contents"][0]["parts"] if "inlineData" in p]
        sent.add(Image.open(io.BytesIO(base64.urlsafe_b64decode(inline[1]["data"]))).tobytes())
    assert sent == {Image.open(io.BytesIO(c)).tobytes() for c in CANDIDATES}


def test_gemini_thinking_budget_is_sent(proxy: Proxy, gemini_server: FakeGemini) -> None:
    base = proxy(gemini_thinking_budget=0)
    assert (
        post_judge(base, candidates=CANDIDATES[:1], reference_image_b64=REFERENCE, backend="gemini").status_code == 200
    )
    thinking = gemini_server.requests[0].body["generationConfig"]["thinkingConfig"]
    assert thinking in ({"thinkingBudget": 0}, {"thinking_budget": 0})  # the SDK sends nested keys as named


def test_text2svg_rubric_judges_against_the_prompt(proxy: Proxy, openai_server: FakeOpenAI) -> None:
    base = proxy()
    response = post_judge(base, rubric="rlrf-text2svg", prompt="a red fox", candidates=CANDIDATES[1:])
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["score"] for r in results] == pytest.approx([expected_score(c, RLRF_TEXT2SVG) for c in CANDIDATES[1:]])
    assert max(results[1]["axes"].values()) > 1  # axes keep their 0-10 range; the score is in [0, 1]
    content = openai_server.requests[0].body["messages"][1]["content"]
    assert content[0] == {"type": "text", "text": "Prompt: a red fox"}
    assert [p["type"] for p in content].count("image_url") == 1


def test_candidates_are_flattened_onto_white(proxy: Proxy, openai_server: FakeOpenAI) -> None:
    base = proxy()
    transparent = png(ink_rows=64, mode="RGBA", alpha=0)  # black, fully transparent: white to a judge
    half = png(ink_rows=64, mode="RGBA", alpha=128)
    response = post_judge(base, candidates=[transparent, half], reference_image_b64=REFERENCE)
    assert response.json()["results"][0]["score"] == 0.0
    sent = {}
    for request in openai_server.requests:
        image = decode_data_url(request.body["messages"][1]["content"][3]["image_url"]["url"])
        assert image.mode == "RGB"
        sent[image.getpixel((0, 0))] = image
    assert set(sent) == {(255, 255, 255), (127, 127, 127)}


# --- caching ------------------------------------------------------------------------------------


def test_cache_hit_skips_the_backend(proxy: Proxy, openai_server: FakeOpenAI, redis_db: redis.Redis) -> None:
    base = proxy(cache_ttl_s=600, cache_prefix="t")
    first = post_judge(base, candidates=CANDIDATES[:2], reference_image_b64=REFERENCE).json()["results"]
    assert [r["cached"] for r in first] == [False, False] and openai_server.calls == 2
    keys = redis_db.keys("t:vfig-im2svg:v1:openai:fake-model:*")
    assert len(keys) == 2 and all(0 < redis_db.ttl(k) <= 600 for k in keys)

    second = post_judge(base, candidates=CANDIDATES[:2], reference_image_b64=REFERENCE).json()["results"]
    assert openai_server.calls == 2  # nothing reached the server
    assert [r["cached"] for r in second] == [True, True]
    assert [r["score"] for r in second] == [r["score"] for r in first]
    assert [r["axes"] for r in second] == [r["axes"] for r in first]
    assert metric(base, "rlrf_judge_cache_hits_total", backend="openai", rubric="vfig-im2svg") == 2
    assert metric(base, "rlrf_judge_cache_misses_total", backend="openai", rubric="vfig-im2svg") == 2

    # Another reference, another backend, another rubric: other keys.
    post_judge(base, candidates=CANDIDATES[:1], reference_image_b64=png(ink_rows=3))
    post_judge(base, candidates=CANDIDATES[:1], reference_image_b64=REFERENCE, backend="gemini")
    post_judge(base, candidates=CANDIDATES[:1], rubric="rlrf-text2svg", prompt="a fox")
    assert openai_server.calls == 4 and len(redis_db.keys("t:*")) == 5


def test_errors_are_not_cached(proxy: Proxy, openai_server: FakeOpenAI, redis_db: redis.Redis) -> None:
    base = proxy(cache_ttl_s=600, cache_prefix="t")
    openai_server.script("malformed")
    assert post_judge(base, candidates=CANDIDATES[:1], reference_image_b64=REFERENCE).json()["results"][0][
        "status"
    ] == ("error")
    assert redis_db.keys("t:*") == []
    assert (
        post_judge(base, candidates=CANDIDATES[:1], reference_image_b64=REFERENCE).json()["results"][0]["cached"]
        is False
    )


def test_identical_candidates_are_judged_once(proxy: Proxy, openai_server: FakeOpenAI) -> None:
    base = proxy()
    same = png(ink_rows=5)
    results = post_judge(base, candidates=[same, CANDIDATES[2], same, same], reference_image_b64=REFERENCE).json()
    assert openai_server.calls == 2
    scores = [r["score"] for r in results["results"]]
    assert scores[0] == scores[2] == scores[3] != scores[1]


def test_redis_down_judging_goes_on(proxy: Proxy, openai_server: FakeOpenAI) -> None:
    base = proxy(cache_ttl_s=600, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    results = post_judge(base, candidates=CANDIDATES[:2], reference_image_b64=REFERENCE).json()["results"]
    assert [r["status"] for r in results] == ["ok", "ok"]
    assert metric(base, "rlrf_judge_cache_errors_total", op="read") == 1
    assert metric(base, "rlrf_judge_cache_errors_total", op="write") == 1  # one pipeline per request
    ready = HTTP.get(f"{base}/readyz")
    assert ready.status_code == 503 and ready.json()["redis"] == "unreachable"


# --- limits ---------------------------------------------------------------------------------------


def test_concurrency_limit(proxy: Proxy, openai_server: FakeOpenAI) -> None:
    base = proxy(openai_max_concurrency=3)
    openai_server.delay_s = 0.1
    candidates = [png(ink_rows=k) for k in range(12)]
    response = post_judge(base, candidates=candidates, reference_image_b64=REFERENCE)
    assert all(r["status"] == "ok" for r in response.json()["results"])
    assert openai_server.max_inflight == 3


def test_rpm_limit_delays_calls(proxy: Proxy, openai_server: FakeOpenAI) -> None:
    base = proxy(openai_rpm=300, burst_s=1)  # 5 per second, at most 5 at once
    candidates = [png(ink_rows=k) for k in range(10)]
    assert post_judge(base, candidates=candidates, reference_image_b64=REFERENCE).status_code == 200
    arrivals = sorted(r.at for r in openai_server.requests)
    assert arrivals[4] - arrivals[0] < 0.5  # the burst
    assert arrivals[-1] - arrivals[0] >= 0.9  # then one every 0.2 s


def test_without_rpm_limit_calls_go_at_once(proxy: Proxy, openai_server: FakeOpenAI) -> None:
    base = proxy()
    assert post_judge(base, candidates=[png(ink_rows=k) for k in range(10)], reference_image_b64=REFERENCE)
    arrivals = sorted(r.at for r in openai_server.requests)
    assert arrivals[-1] - arrivals[0] < 0.5


# --- retries, deadline, errors ----------------------------------------------------------------------


def test_retries_429_and_500_then_success(proxy: Proxy, openai_server: FakeOpenAI) -> None:
    base = proxy()
    openai_server.script(Behaviour("rate_limit", retry_after_s=0.5), "server_error")
    started = time.monotonic()
    result = post_judge(base, candidates=CANDIDATES[1:2], reference_image_b64=REFERENCE).json()["results"][0]
    assert result["status"] == "ok" and result["score"] == pytest.approx(expected_score(CANDIDATES[1]))
    assert time.monotonic() - started >= 0.5  # Retry-After honoured
    assert openai_server.calls == 3
    assert metric(base, "rlrf_judge_retries_total", backend="openai", reason="rate_limited") == 1
    assert metric(base, "rlrf_judge_retries_total", backend="openai", reason="server_error") == 1
    for outcome in ("rate_limited", "server_error", "ok"):
        assert metric(base, "rlrf_judge_calls_total", backend="openai", outcome=outcome) == 1


def test_gemini_retries_are_ours_not_the_sdks(proxy: Proxy, gemini_server: FakeGemini) -> None:
    base = proxy(max_attempts=3, default_backend="gemini")
    gemini_server.default = "server_error"
    result = post_judge(base, candidates=CANDIDATES[:1], reference_image_b64=REFERENCE).json()["results"][0]
    assert result["status"] == "error" and result["retryable"] is True
    assert "gave up after 3 attempts" in result["error"] and "HTTP 500" in result["error"]
    assert gemini_server.calls == 3  # exactly max_attempts: the SDK added no retries of its own

    gemini_server.default = "ok"
    gemini_server.script(Behaviour("retry_info", retry_after_s=0.4))  # Gemini's RetryInfo, no header
    started = time.monotonic()
    result = post_judge(base, candidates=CANDIDATES[1:2], reference_image_b64=REFERENCE).json()["results"][0]
    assert result["status"] == "ok" and time.monotonic() - started >= 0.4
    assert gemini_server.calls == 5


@pytest.mark.parametrize("backend", ["openai", "gemini"])
def test_deadline_gives_a_retryable_error(
    proxy: Proxy, openai_server: FakeOpenAI, gemini_server: FakeGemini, backend: str
) -> None:
    base = proxy(deadline_s=0.7)
    (openai_server if backend == "openai" else gemini_server).default = Behaviour("hang", hang_s=10)
    started = time.monotonic()
    response = post_judge(base, candidates=CANDIDATES[:2], reference_image_b64=REFERENCE, backend=backend)
    assert time.monotonic() - started < 2.5
    for result in response.json()["results"]:
        assert result == {"status": "error", "error": result["error"], "retryable": True}
        assert "deadline of 0.7s" in result["error"]


def test_attempt_timeout_retries_within_the_deadline(proxy: Proxy, gemini_server: FakeGemini) -> None:
    base = proxy(attempt_timeout_s=0.3, deadline_s=5, default_backend="gemini")
    gemini_server.script(Behaviour("hang", hang_s=3))
    result = post_judge(base, candidates=CANDIDATES[:1], reference_image_b64=REFERENCE).json()["results"][0]
    assert result["status"] == "ok" and gemini_server.calls == 2
    assert metric(base, "rlrf_judge_calls_total", backend="gemini", outcome="timeout") == 1


def test_connection_errors_retry_then_fail_retryable(proxy: Proxy) -> None:
    base = proxy(openai_base_url=f"http://127.0.0.1:{free_port()}", max_attempts=3)
    result = post_judge(base, candidates=CANDIDATES[:1], reference_image_b64=REFERENCE).json()["results"][0]
    assert result["status"] == "error" and result["retryable"] is True and "ConnectError" in result["error"]
    assert metric(base, "rlrf_judge_retries_total", backend="openai", reason="connection_error") == 2


@pytest.mark.parametrize("backend", ["openai", "gemini"])
def test_replies_are_parsed_robustly(
    proxy: Proxy, openai_server: FakeOpenAI, gemini_server: FakeGemini, backend: str
) -> None:
    base = proxy()
    server = openai_server if backend == "openai" else gemini_server
    server.script("fenced", "prose", "out_of_range", "malformed", "bad_request")
    candidates = [png(ink_rows=k) for k in (8, 16, 24, 32, 40)]
    results = []
    for candidate in candidates:  # one at a time, so each meets its scripted answer
        response = post_judge(base, candidates=[candidate], reference_image_b64=REFERENCE, backend=backend)
        results.append(response.json()["results"][0])
    fenced, prose, clamped, malformed, rejected = results
    assert fenced["score"] == pytest.approx(expected_score(candidates[0])) and fenced["flags"] == []
    assert prose["score"] == pytest.approx(expected_score(candidates[1]))
    assert clamped["status"] == "ok" and clamped["score"] == 1.0 and set(clamped["axes"].values()) == {1.0}
    assert clamped["flags"] == ["clamped:presence", "clamped:layout", "clamped:connectivity", "clamped:details"]
    assert malformed["status"] == "error" and malformed["retryable"] is False
    assert malformed["error"].startswith("malformed:")
    assert rejected["status"] == "error" and rejected["retryable"] is False and "HTTP 400" in rejected["error"]
    assert server.calls == 5  # neither malformed output nor a 400 is retried
    assert metric(base, "rlrf_judge_calls_total", backend=backend, outcome="malformed") == 1
    assert metric(base, "rlrf_judge_results_total", backend=backend, rubric="vfig-im2svg", status="error") == 2


def test_undecodable_candidates_are_per_candidate_errors(proxy: Proxy, openai_server: FakeOpenAI) -> None:
    base = proxy()
    body = {
        "rubric": "vfig-im2svg",
        "reference_image_b64": b64(REFERENCE),
        "candidates_b64": [b64(CANDIDATES[1]), "not base64 !!", b64(b"not an image")],
    }
    results = HTTP.post(f"{base}/v1/judge", json=body).json()["results"]
    assert [r["status"] for r in results] == ["ok", "error", "error"]
    assert not results[1]["retryable"] and "invalid candidate image" in results[2]["error"]
    assert openai_server.calls == 1


# --- contract: 401, 422, probes, metrics ---------------------------------------------------------------


def test_422s(proxy: Proxy, openai_server: FakeOpenAI) -> None:
    base = proxy()
    ref = b64(REFERENCE)
    cands = [b64(CANDIDATES[0])]
    cases = [
        ({"rubric": "nope", "reference_image_b64": ref, "candidates_b64": cands}, "unknown rubric 'nope'"),
        ({"rubric": "vfig-im2svg", "backend": "claude", "reference_image_b64": ref, "candidates_b64": cands}, "claude"),
        ({"rubric": "vfig-im2svg", "candidates_b64": cands}, "needs reference_image_b64"),
        ({"rubric": "rlrf-text2svg", "candidates_b64": cands}, "needs a prompt"),
        ({"rubric": "rlrf-text2svg", "prompt": "  ", "candidates_b64": cands}, "needs a prompt"),
        (
            {"rubric": "vfig-im2svg", "reference_image_b64": b64(b"junk"), "candidates_b64": cands},
            "reference_image_b64",
        ),
        ({"rubric": "vfig-im2svg", "reference_image_b64": ref, "candidates_b64": []}, "candidates_b64"),
        ({"rubric": "vfig-im2svg", "reference_image_b64": ref, "candidates_b64": cands * 257}, "candidates_b64"),
    ]
    for body, needle in cases:
        response = HTTP.post(f"{base}/v1/judge", json=body)
        assert response.status_code == 422, (body["rubric"], response.text)
        assert needle in response.text
    assert openai_server.calls == 0


def test_401_when_a_token_is_configured(proxy: Proxy) -> None:
    base = proxy(api_token="s3cret")
    missing = post_judge(base, candidates=CANDIDATES[:1], reference_image_b64=REFERENCE)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert post_judge(base, candidates=CANDIDATES[:1], reference_image_b64=REFERENCE, token="wrong").status_code == 401
    assert post_judge(base, candidates=CANDIDATES[:1], reference_image_b64=REFERENCE, token="s3cret").status_code == 200
    assert HTTP.get(f"{base}/v1/rubrics").status_code == 401
    for probe in ("/healthz", "/readyz", "/metrics"):
        assert HTTP.get(f"{base}{probe}").status_code == 200
    assert metric(base, "rlrf_judge_http_requests_total", code="401") == 2


def test_metrics_count_tokens_and_cost(proxy: Proxy, openai_server: FakeOpenAI, gemini_server: FakeGemini) -> None:
    base = proxy(prices={"fake-model": {"input": 2.0, "output": 10.0}, "gemini-test": {"input": 0.3, "output": 2.5}})
    openai_server.usage = (1000, 50)
    gemini_server.usage = (2000, 100)
    post_judge(base, candidates=CANDIDATES[:2], reference_image_b64=REFERENCE)
    post_judge(base, candidates=CANDIDATES[:1], reference_image_b64=REFERENCE, backend="gemini")
    labels = {"backend": "openai", "model": "fake-model"}
    assert metric(base, "rlrf_judge_prompt_tokens_total", **labels) == 2000
    assert metric(base, "rlrf_judge_completion_tokens_total", **labels) == 100
    assert metric(base, "rlrf_judge_cost_usd_total", **labels) == pytest.approx(2 * (1000 * 2 + 50 * 10) / 1e6)
    labels = {"backend": "gemini", "model": "gemini-test"}
    assert metric(base, "rlrf_judge_prompt_tokens_total", **labels) == 2000
    assert metric(base, "rlrf_judge_cost_usd_total", **labels) == pytest.approx((2000 * 0.3 + 100 * 2.5) / 1e6)
    assert metric(base, "rlrf_judge_results_total", backend="openai", rubric="vfig-im2svg", status="ok") == 2
    assert metric(base, "rlrf_judge_call_seconds_count", backend="openai") == 2
    assert metric(base, "rlrf_judge_request_seconds_count") == 2
    assert metric(base, "rlrf_judge_http_requests_total", code="200") == 2


def test_probes_and_rubrics(proxy: Proxy) -> None:
    base = proxy(cache_ttl_s=60)
    assert HTTP.get(f"{base}/healthz").json() == {"status": "ok"}
    ready = HTTP.get(f"{base}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ok",
        "ready": True,
        "redis": "ok",
        "backends": {"gemini": "gemini-test", "openai": "fake-model"},
        "default_backend": "openai",
    }
    rubrics = {r["name"]: r for r in HTTP.get(f"{base}/v1/rubrics").json()["rubrics"]}
    assert set(rubrics) == {"vfig-im2svg", "rlrf-text2svg"}
    assert rubrics["vfig-im2svg"]["inputs"] == ["reference_image_b64"]
    assert rubrics["rlrf-text2svg"]["axes"][0] == {
        "name": "aesthetics",
        "description": RLRF_TEXT2SVG.axes[0].description,
        "min": 0.0,
        "max": 10.0,
        "weight": 1.0,
    }
    assert rubrics["vfig-im2svg"]["verdict_schema"] == VFIG_IM2SVG.schema
    paths = HTTP.get(f"{base}/openapi.json").json()["paths"]
    assert {"/v1/judge", "/v1/rubrics", "/healthz", "/readyz", "/metrics"} <= set(paths)


def test_no_backend_configured() -> None:
    with serve(create_app(make_settings())) as base:
        ready = HTTP.get(f"{base}/readyz")
        assert ready.status_code == 503 and ready.json()["backends"] == {}
        response = post_judge(base, candidates=CANDIDATES[:1], reference_image_b64=REFERENCE)
        assert response.status_code == 503 and "no judge backend configured" in response.text
