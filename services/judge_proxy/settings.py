"""All tunables of the judge proxy, in one place.

Every field can be set from the environment with the ``RLRF_JUDGE_`` prefix
(``RLRF_JUDGE_GEMINI_API_KEY=...``) or from a ``.env`` file. Code receives a ``JudgeSettings``
instance; nothing else reads the environment. A backend exists when its settings name it: Gemini
with ``gemini_api_key``, the OpenAI-compatible server with ``openai_base_url``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BackendName = Literal["gemini", "openai"]


class ModelPrice(BaseModel):
    """USD per million tokens; thinking tokens are billed as output."""

    input: float = Field(ge=0, description="USD per million prompt tokens (text and images).")
    output: float = Field(ge=0, description="USD per million completion tokens, thinking included.")


# Gemini API list prices (paid tier, prompts up to 200k tokens). Self-hosted models cost nothing here
# unless priced: add them to RLRF_JUDGE_PRICES as JSON.
_DEFAULT_PRICES = {
    "gemini-2.5-flash": ModelPrice(input=0.30, output=2.50),
    "gemini-2.5-flash-lite": ModelPrice(input=0.10, output=0.40),
    "gemini-2.5-pro": ModelPrice(input=1.25, output=10.00),
}


class JudgeSettings(BaseSettings):
    """Proxy configuration. Limits are per backend; defaults suit a Gemini tier-1 key and one vLLM server."""

    model_config = SettingsConfigDict(env_prefix="RLRF_JUDGE_", env_file=".env", extra="ignore")

    @field_validator("api_token", "gemini_api_key", "openai_api_key", "openai_base_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """An empty variable (as templates leave it) means unset: never an empty key or token."""
        return None if isinstance(value, str) and not value.strip() else value

    # HTTP service ----------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address `python -m services.judge_proxy` binds.")
    port: int = Field(8100, ge=1, le=65535, description="Port it binds.")
    api_token: SecretStr | None = Field(None, description="If set, /v1/* needs 'Authorization: Bearer <token>'.")

    # Backends --------------------------------------------------------------------------------
    default_backend: BackendName | None = Field(
        None, description="Backend for requests that name none; unset: gemini if configured, else openai."
    )
    gemini_api_key: SecretStr | None = Field(None, description="Gemini API key; configures the 'gemini' backend.")
    gemini_model: str = Field("gemini-2.5-flash", description="Gemini model id.")
    gemini_base_url: str | None = Field(
        None, description="Override of https://generativelanguage.googleapis.com/ (a gateway, or a test server)."
    )
    gemini_api_version: str = Field(
        "v1beta",
        description="Gemini API version in the path (/v1beta/models/{model}:generateContent). Pinned: SDKs >= 3 "
        "default to v1, and responseJsonSchema is documented on v1beta.",
    )
    gemini_thinking_budget: int | None = Field(
        None,
        ge=-1,
        description="Thinking tokens per call: 0 turns thinking off (Flash), -1 is dynamic; unset: the model default.",
    )
    openai_base_url: str | None = Field(
        None, description="OpenAI-compatible server, e.g. http://vllm:8000 (with or without /v1); configures 'openai'."
    )
    openai_model: str = Field("Qwen/Qwen2.5-VL-7B-Instruct", description="Model id the server serves.")
    openai_api_key: SecretStr | None = Field(None, description="Bearer token for that server (vLLM --api-key).")

    # Generation ------------------------------------------------------------------------------
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature; 0 keeps verdicts repeatable.")
    gemini_max_output_tokens: int = Field(
        8192,
        ge=16,
        description="Cap on one Gemini verdict, thinking included (2.5 models think by default; a verdict "
        "cut off by the cap is an error).",
    )
    openai_max_tokens: int = Field(
        512,
        ge=16,
        description="max_tokens of one chat completion (a verdict is ~50 tokens; vLLM refuses requests whose "
        "prompt + max_tokens exceed --max-model-len).",
    )
    estimated_completion_tokens: int = Field(
        300, ge=1, description="Completion tokens charged to the TPM bucket before a call; corrected by the usage."
    )

    # Limits, per backend -----------------------------------------------------------------------
    gemini_max_concurrency: int = Field(32, ge=1, description="Gemini calls in flight at once.")
    gemini_rpm: int = Field(1000, ge=0, description="Gemini requests per minute (0: unlimited).")
    gemini_tpm: int = Field(
        1_000_000, ge=0, description="Gemini tokens (prompt + completion) per minute (0: unlimited)."
    )
    openai_max_concurrency: int = Field(64, ge=1, description="Calls in flight to the OpenAI-compatible server.")
    openai_rpm: int = Field(0, ge=0, description="Its requests per minute (0: unlimited).")
    openai_tpm: int = Field(0, ge=0, description="Its tokens per minute (0: unlimited).")
    burst_s: float = Field(
        60.0,
        gt=0,
        description="Token buckets hold this many seconds of quota: 60 lets a full minute's quota go at once.",
    )

    # Retries and deadline -----------------------------------------------------------------------
    deadline_s: float = Field(
        90.0,
        gt=0,
        description="Per candidate, from request arrival: queueing, attempts and back-off all count. Keep it "
        "below the caller's HTTP timeout, so that errors come back as results rather than as a timeout.",
    )
    attempt_timeout_s: float = Field(60.0, gt=0, description="Wall-clock limit of one HTTP attempt.")
    max_attempts: int = Field(6, ge=1, description="Attempts per candidate, first call included.")
    backoff_initial_s: float = Field(1.0, gt=0, description="First back-off; doubles per retry, with jitter.")
    backoff_max_s: float = Field(30.0, gt=0, description="Cap on one back-off (a Retry-After may be longer).")

    # Cache -------------------------------------------------------------------------------------
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis holding cached verdicts.")
    cache_ttl_s: int = Field(7 * 24 * 3600, ge=0, description="Lifetime of a cached verdict (0: no caching).")
    cache_prefix: str = Field("rlrf:judge", description="Prefix of every cache key.")

    # Inputs ------------------------------------------------------------------------------------
    max_image_pixels: int = Field(4096 * 4096, ge=1, description="Larger images are refused before decoding.")

    # Cost accounting ---------------------------------------------------------------------------
    prices: dict[str, ModelPrice] = Field(
        default_factory=lambda: dict(_DEFAULT_PRICES),
        description='Per model id: {"input": USD/M tokens, "output": USD/M tokens}, added to the Gemini '
        "defaults; unlisted models cost 0.",
    )

    @field_validator("prices", mode="before")
    @classmethod
    def _add_to_default_prices(cls, value: object) -> object:
        """Prices given in settings extend the defaults (and override them model by model)."""
        if isinstance(value, dict):
            return {**_DEFAULT_PRICES, **value}
        return value


@lru_cache(maxsize=1)
def get_settings() -> JudgeSettings:
    """The process-wide settings, read once."""
    return JudgeSettings()
