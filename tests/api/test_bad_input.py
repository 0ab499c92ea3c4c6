"""Requests that used to crash the API (500) get a clear status, in the error model the OpenAPI schema documents.

Bodies are sent as the bytes ``json.dumps`` writes (``"\\udcff"`` escapes, ``NaN``, 400-digit
integers), as a fuzzer or a buggy client would send them, through real HTTP and the real pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi import FastAPI

from services.reward_api.api.main import create_app
from services.reward_api.core.settings import Settings
from tests import _hostile as h
from tests.api.conftest import running

GOOD = h.GOOD
HUGE = 10**400
LONE = "\udcff"


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app(Settings(workers=1, render_timeout_s=2.0, max_body_bytes=200_000))


@pytest.fixture(scope="module")
def base(app: FastAPI) -> Iterator[str]:
    with running(app) as url:
        yield url


@pytest.fixture(scope="module")
def openapi(base: str) -> dict[str, Any]:
    schema: dict[str, Any] = httpx.get(f"{base}/openapi.json").json()
    return schema


def post(url: str, body: object) -> httpx.Response:
    return httpx.post(url, content=json.dumps(body), headers={"content-type": "application/json"}, timeout=60)


def check_against_schema(openapi: dict[str, Any], path: str, response: httpx.Response) -> None:
    """The body conforms to what /openapi.json documents for this route and status."""
    documented = openapi["paths"][path]["post"]["responses"][str(response.status_code)]
    schema = documented["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), {**schema, "components": openapi["components"]})


def test_error_model_is_documented_for_every_error_status(openapi: dict[str, Any]) -> None:
    for path in ("/score", "/score/batch", "/openrlhf/reward"):
        statuses = openapi["paths"][path]["post"]["responses"]
        assert {"200", "400", "401", "413", "422", "429", "500", "503"} <= set(statuses), path
        for code in ("400", "413", "422", "429", "503"):
            assert statuses[code]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
        assert "Retry-After" in statuses["429"]["headers"]
    error_body = openapi["components"]["schemas"]["ErrorBody"]
    assert error_body["properties"]["detail"]["type"] == "string" and set(error_body["required"]) == {"detail", "error"}
    assert "HTTPValidationError" not in openapi["components"]["schemas"]  # FastAPI's array-detail model is gone


def test_the_schema_rejects_an_all_null_reference(openapi: dict[str, Any]) -> None:
    reference = {**openapi["components"]["schemas"]["ReferenceIn"], "components": openapi["components"]}
    for bad in ({}, {"svg": None, "image_b64": None, "text": None}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, reference)
    for good in ({"svg": GOOD}, {"image_b64": "aGk=", "svg": None}, {"text": "a cat"}):
        jsonschema.validate(good, reference)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"step": HUGE}, "body.step: Input should be less than or equal to 9007199254740991"),
        ({"completion_tokens": [HUGE]}, "body.completion_tokens.0"),
        ({"reference_tokens": HUGE}, "body.reference_tokens"),
        ({"reference_tokens": -3}, "greater than or equal to 0"),
        ({"task": LONE}, "body.task"),
        ({"reference": {"text": "a cat" + LONE}}, "body.reference.text: Value error, not valid Unicode"),
        ({"request_id": LONE}, "body.request_id"),
        ({"profile": LONE}, "body.profile"),
        ({"weights": {"pixel_l2": float("nan")}}, "body.weights.pixel_l2: Input should be a finite number"),
        ({"weights": {"pixel_l2": float("inf")}}, "finite number"),
        ({"weights": {"pixel_l2": 1e308}}, "less than or equal to 1000"),
        ({"weights": {LONE: 1.0}}, "body.weights"),
        ({"reference": {"svg": None, "image_b64": None, "text": None}}, "reference needs at least one of"),
        # An invalid request whose completions hold a lone surrogate: the 422 used to echo them and fail to encode.
        ({"reference": {}, "completions": [LONE, GOOD + LONE]}, "reference needs at least one of"),
        ({"reference": None, "completions": [LONE]}, "body.reference"),
    ],
)
def test_crash_inputs_get_a_clean_422(base: str, openapi: dict[str, Any], body: dict[str, Any], needle: str) -> None:
    response = post(f"{base}/score", {"reference": {"svg": GOOD}, "completions": [GOOD], **body})
    assert response.status_code == 422, response.text
    assert needle in response.json()["detail"]
    assert response.json()["error"] == "RequestValidationError" and response.json()["errors"]
    assert LONE not in response.text  # whatever is echoed is encodable
    check_against_schema(openapi, "/score", response)


def test_lone_surrogates_in_a_valid_request_are_scored(base: str, openapi: dict[str, Any]) -> None:
    completions = [LONE, f"```svg\n{GOOD}\n```{LONE}", GOOD.replace("</svg>", f"<desc>{LONE}</desc></svg>")]
    response = post(f"{base}/score", {"reference": {"svg": GOOD}, "completions": completions})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["no_svg", "ok", "parse_error"]
    assert results[1]["reward"] == pytest.approx(2.075) and results[2]["flags"] == ["encoding"]
    assert all(isinstance(r["reward"], float) for r in results)  # bounded penalties, never a crash or a null
    batch = post(f"{base}/score/batch", {"groups": [{"reference": {"svg": GOOD}, "completions": completions}]})
    assert batch.status_code == 200 and batch.json()["groups"][0]["results"] == results
    # OpenRLHF: a response with a lone surrogate is scored; a label with one is a reference that cannot render.
    scored = post(f"{base}/openrlhf/reward", {"query": [LONE, GOOD], "labels": [GOOD, GOOD]})
    assert scored.status_code == 200 and scored.json()["extra_logs"]["ok"] == [0.0, 1.0]
    # Inside the document: after </svg> it would be cut away by extraction, as in a candidate.
    label = GOOD.replace("</svg>", f"<desc>{LONE}</desc></svg>")
    refused = post(f"{base}/openrlhf/reward", {"query": [GOOD], "labels": [label]})
    assert refused.status_code == 422 and "not valid UTF-8" in refused.json()["detail"]
    check_against_schema(openapi, "/openrlhf/reward", refused)


def test_reference_surrogate_is_a_422_in_the_error_model(base: str, openapi: dict[str, Any]) -> None:
    reference = GOOD.replace("</svg>", f"<desc>{LONE}</desc></svg>")  # after </svg> extraction would drop it
    response = post(f"{base}/score", {"reference": {"svg": reference}, "completions": [GOOD]})
    assert response.status_code == 422 and response.json()["error"] == "BadReferenceError"
    check_against_schema(openapi, "/score", response)


def test_openrlhf_groups_that_break_the_schema_are_a_422(base: str) -> None:
    response = post(f"{base}/openrlhf/reward", {"query": ["x"] * 1025, "labels": [GOOD] * 1025})
    assert response.status_code == 422, response.text
    assert "do not form valid rollout groups" in response.json()["detail"]


def test_unparseable_bodies(base: str, openapi: dict[str, Any]) -> None:
    for raw in (b"{not json", b'"\\udcff"', b"\xff\xfe", b'{"reference": {"svg": "\\udcff"}}', b"NaN"):
        response = httpx.post(f"{base}/score", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422, (raw, response.text)
        check_against_schema(openapi, "/score", response)
    missing = httpx.get(f"{base}/nowhere")
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found", "error": "NotFound"}
    wrong = httpx.get(f"{base}/score")
    assert wrong.status_code == 405 and wrong.json()["error"] == "MethodNotAllowed" and "POST" in wrong.headers["allow"]


def test_500s_and_413s_are_counted_and_answer_in_the_error_model(
    app: FastAPI, base: str, openapi: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug (here: the pipeline raising) is a 500 in the error model, and rlrf_requests_total counts it."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(app.state.service.pipeline, "score_group", broken)
    response = post(f"{base}/score", {"reference": {"svg": GOOD}, "completions": [GOOD]})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error (RuntimeError); it is logged", "error": "InternalError"}
    check_against_schema(openapi, "/score", response)
    too_large = post(f"{base}/score", {"reference": {"svg": GOOD}, "completions": ["x" * 300_000]})
    assert too_large.status_code == 413 and too_large.json()["error"] == "RequestTooLargeError"
    check_against_schema(openapi, "/score", too_large)
    metrics = httpx.get(f"{base}/metrics").text
    assert 'rlrf_requests_total{code="500",route="/score"} 1.0' in metrics
    assert 'rlrf_requests_total{code="413",route="/score"} 1.0' in metrics
