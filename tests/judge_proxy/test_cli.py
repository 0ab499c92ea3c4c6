"""``python -m services.judge_proxy``: --help, and a real server process from the environment's settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest

from services.judge_proxy.cli import main
from tests.api.conftest import wait_for
from tests.judge_proxy._servers import FakeOpenAI, free_port, png
from tests.judge_proxy.conftest import REDIS_URL, REPO, b64


def test_help_explains(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for needle in ("--host", "--port", "POST /v1/judge", "RLRF_JUDGE_GEMINI_API_KEY", "RLRF_JUDGE_OPENAI_BASE_URL"):
        assert needle in out


def test_module_serves_from_environment(openai_server: FakeOpenAI) -> None:
    port = free_port()
    env = {
        **os.environ,
        "RLRF_JUDGE_OPENAI_BASE_URL": openai_server.url,
        "RLRF_JUDGE_OPENAI_MODEL": "fake-model",
        "RLRF_JUDGE_REDIS_URL": REDIS_URL,
        "RLRF_JUDGE_CACHE_TTL_S": "0",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.judge_proxy", "--port", str(port), "--log-level", "warning"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/readyz", timeout_s=30, alive=lambda: process.poll() is None)
        body = {
            "rubric": "vfig-im2svg",
            "reference_image_b64": b64(png(ink_rows=3)),
            "candidates_b64": [b64(png())],
        }
        result = httpx.post(f"{base}/v1/judge", json=body, timeout=10).json()
        assert result["model"] == "fake-model" and result["results"][0]["status"] == "ok"
    finally:
        process.terminate()
        assert process.wait(timeout=15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean stop
