"""Schemathesis against the running reward service (uvicorn on loopback, real render workers).

It generates requests from /openapi.json, valid and invalid, for a bounded number of examples with
a fixed seed, and fails on any 5xx or any answer the schema does not describe (status, content
type, headers, body). This is how the 500s of issue 13 were found.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from services.reward_api.api.main import create_app
from services.reward_api.core.settings import Settings
from tests.api.conftest import run_schemathesis, running


@pytest.mark.slow
def test_schemathesis_finds_no_5xx_and_no_answer_off_schema(tmp_path: Path) -> None:
    # A small body limit keeps generated bodies cheap; the dashboard page is HTML, not an API.
    settings = Settings(workers=2, render_timeout_s=2.0, max_body_bytes=1_000_000, dashboard_interval_s=0)
    with running(create_app(settings)) as base:
        run_schemathesis(base, tmp_path, max_examples=30, extra=["--exclude-path", "/dashboard"])
