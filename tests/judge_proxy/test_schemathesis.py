"""Schemathesis against the running judge proxy, in front of the fake OpenAI-compatible judge.

Generated requests, valid and invalid, for a bounded number of examples with a fixed seed: no 5xx,
every answer as /openapi.json describes it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.conftest import run_schemathesis
from tests.judge_proxy.conftest import Proxy


@pytest.mark.slow
def test_schemathesis_finds_no_5xx_and_no_answer_off_schema(proxy: Proxy, tmp_path: Path) -> None:
    base = proxy(openai_api_key="sk-test")
    run_schemathesis(base, tmp_path, max_examples=30)
