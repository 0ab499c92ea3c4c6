"""Fixtures: Redis db 14 (flushed around each test), the two fake judges, and proxies in front of them."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from services.judge_proxy.app import create_app
from services.judge_proxy.settings import JudgeSettings
from tests.judge_proxy._servers import FakeGemini, FakeOpenAI, serve

REPO = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/14"  # the tests' own db; only it is ever flushed
HTTP = httpx.Client(timeout=60)  # one client for all tests: building one costs ~40 ms (TLS context)

Proxy = Callable[..., str]


def make_settings(**overrides: Any) -> JudgeSettings:
    """Fast settings for tests: short back-off and deadline, caching off unless asked, a priced fake model."""
    base: dict[str, Any] = {
        "redis_url": REDIS_URL,
        "cache_ttl_s": 0,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
        "deadline_s": 10.0,
        "attempt_timeout_s": 5.0,
        "prices": {"fake-model": {"input": 2.0, "output": 10.0}},
    }
    return JudgeSettings(_env_file=None, **{**base, **overrides})  # type: ignore[call-arg]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def post_judge(base: str, *, candidates: list[bytes], token: str | None = None, **fields: Any) -> httpx.Response:
    body = {"rubric": "vfig-im2svg", "candidates_b64": [b64(c) for c in candidates], **fields}
    if isinstance(body.get("reference_image_b64"), bytes):
        body["reference_image_b64"] = b64(body["reference_image_b64"])
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return HTTP.post(f"{base}/v1/judge", json=body, headers=headers)


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(model="fake-model") as server:
        yield server


@pytest.fixture
def gemini_server() -> Iterator[FakeGemini]:
    with FakeGemini(model="gemini-test") as server:
        yield server


@pytest.fixture
def proxy(openai_server: FakeOpenAI, gemini_server: FakeGemini, redis_db: redis.Redis) -> Iterator[Proxy]:
    """``proxy(**settings)`` serves a judge proxy in front of both fakes (default backend: openai); returns its URL."""
    with ExitStack() as stack:

        def start(**overrides: Any) -> str:
            settings = make_settings(
                **{
                    "openai_base_url": openai_server.url,
                    "openai_model": "fake-model",
                    "gemini_api_key": "test-key",
                    "gemini_model": "gemini-test",
                    "gemini_base_url": gemini_server.url,
                    "default_backend": "openai",
                    **overrides,
                }
            )
            return stack.enter_context(serve(create_app(settings)))

        yield start
