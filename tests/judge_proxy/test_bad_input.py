"""Inputs of the class that crashed the reward API (lone surrogates, echoed 422s, uncounted 500s) against the proxy.

Bodies are the bytes ``json.dumps`` writes (``"\\udcff"`` escapes), through real HTTP, in front of the fake
OpenAI-compatible judge.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import pytest

from tests.judge_proxy._servers import FakeOpenAI, png
from tests.judge_proxy.conftest import HTTP, Proxy, b64
from tests.judge_proxy.test_http import metric

LONE = "\udcff"
CANDIDATE = b64(png(ink_rows=16))


def post(base: str, body: dict[str, Any]) -> httpx.Response:
    return HTTP.post(f"{base}/v1/judge", content=json.dumps(body), headers={"content-type": "application/json"})


def conforms(base: str, response: httpx.Response) -> None:
    openapi = HTTP.get(f"{base}/openapi.json").json()
    documented = openapi["paths"]["/v1/judge"]["post"]["responses"][str(response.status_code)]
    schema = documented["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), {**schema, "components": openapi["components"]})


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"rubric": "rlrf-text2svg", "prompt": "a cat" + LONE}, "body.prompt: Value error, not valid Unicode"),
        ({"rubric": LONE, "candidates_b64": None}, "body.candidates_b64"),  # the 422 used to echo the surrogate
        ({"rubric": ["x"], "candidates_b64": [LONE]}, "body.rubric"),
        ({"rubric": LONE}, "unknown rubric"),
        ({"backend": LONE}, "\\udcff"),
    ],
)
def test_crash_inputs_get_a_clean_422(
    proxy: Proxy, openai_server: FakeOpenAI, body: dict[str, Any], needle: str
) -> None:
    base = proxy(openai_api_key="sk-test")
    response = post(base, {"rubric": "rlrf-text2svg", "prompt": "a cat", "candidates_b64": [CANDIDATE], **body})
    assert response.status_code == 422, response.text
    assert needle in response.json()["detail"] and LONE not in response.text
    conforms(base, response)
    assert openai_server.calls == 0


def test_lone_surrogates_in_images_are_per_candidate_errors(proxy: Proxy) -> None:
    base = proxy(openai_api_key="sk-test")
    response = post(base, {"rubric": "rlrf-text2svg", "prompt": "a cat", "candidates_b64": [CANDIDATE, LONE]})
    assert response.status_code == 200, response.text
    ok, bad = response.json()["results"]
    assert ok["status"] == "ok" and bad["status"] == "error" and not bad["retryable"]
    refused = post(base, {"rubric": "vfig-im2svg", "reference_image_b64": LONE, "candidates_b64": [CANDIDATE]})
    assert refused.status_code == 422 and "reference_image_b64" in refused.json()["detail"]
    conforms(base, refused)


def test_500s_are_counted_and_answer_in_the_error_model(proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.judge_proxy.service import JudgeService

    base = proxy(openai_api_key="sk-test")

    async def broken(self: JudgeService, request: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(JudgeService, "judge", broken)
    response = post(base, {"rubric": "rlrf-text2svg", "prompt": "a cat", "candidates_b64": [CANDIDATE]})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error (RuntimeError); it is logged", "error": "InternalError"}
    conforms(base, response)
    assert metric(base, "rlrf_judge_http_requests_total", code="500") == 1
