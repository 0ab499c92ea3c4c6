"""Settings come from RLRF_JUDGE_* variables; prices extend the defaults."""

from __future__ import annotations

import pytest

from services.judge_proxy.settings import JudgeSettings


def test_environment_prefix_and_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLRF_JUDGE_OPENAI_BASE_URL", "http://vllm:8000/v1")
    monkeypatch.setenv("RLRF_JUDGE_OPENAI_RPM", "120")
    monkeypatch.setenv("RLRF_JUDGE_GEMINI_API_KEY", "sekrit-123")
    monkeypatch.setenv("RLRF_JUDGE_PRICES", '{"Qwen/Qwen2.5-VL-7B-Instruct": {"input": 0.05, "output": 0.1}}')
    settings = JudgeSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.openai_base_url == "http://vllm:8000/v1" and settings.openai_rpm == 120
    assert settings.gemini_api_key is not None and settings.gemini_api_key.get_secret_value() == "sekrit-123"
    assert "sekrit-123" not in repr(settings)
    assert settings.prices["Qwen/Qwen2.5-VL-7B-Instruct"].output == 0.1
    assert settings.prices["gemini-2.5-flash"].input == 0.30  # the defaults stay
    assert (settings.port, settings.gemini_model, settings.gemini_api_version) == (8100, "gemini-2.5-flash", "v1beta")


def test_no_field_shadows_the_reward_api_judge_settings() -> None:
    # The reward API reads RLRF_JUDGE_URL, RLRF_JUDGE_TOKEN, ... (its judge_* fields): same prefix as ours.
    theirs = {"url", "token", "backend", "timeout_s", "rubric_im2svg", "rubric_text2svg"}
    assert not theirs & set(JudgeSettings.model_fields)
