"""Settings read from the environment: empty template values mean unset."""

from __future__ import annotations

import pytest

from services.judge_proxy.settings import JudgeSettings
from services.reward_api.core.settings import Settings


def test_empty_variables_are_unset_not_empty_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLRF_API_TOKEN", "")
    monkeypatch.setenv("RLRF_JUDGE_URL", " ")
    monkeypatch.setenv("RLRF_DREAMSIM_DIR", "")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.api_token is None and settings.judge_url is None and settings.dreamsim_dir is None
    monkeypatch.setenv("RLRF_JUDGE_GEMINI_API_KEY", "")
    monkeypatch.setenv("RLRF_JUDGE_API_TOKEN", "")
    judge = JudgeSettings(_env_file=None)  # type: ignore[call-arg]
    assert judge.gemini_api_key is None and judge.api_token is None
    monkeypatch.setenv("RLRF_API_TOKEN", "t0ken")
    assert Settings(_env_file=None).api_token.get_secret_value() == "t0ken"  # type: ignore[call-arg,union-attr]
