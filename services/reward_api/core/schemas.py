"""Request models: one rollout group to score (the body of ``POST /score``, also built by the CLI)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator


class ReferenceIn(BaseModel):
    """The target of a group: ground-truth SVG code and/or an image; optionally a text prompt."""

    svg: str | None = Field(None, description="Ground-truth SVG code; rendered like the candidates.")
    image_b64: str | None = Field(None, description="PNG/JPEG bytes, base64; used when no SVG is given.")
    text: str | None = Field(None, description="The text prompt (Text2SVG).")

    @model_validator(mode="after")
    def _needs_target(self) -> ReferenceIn:
        if self.svg is None and self.image_b64 is None and self.text is None:
            raise ValueError("reference needs at least one of svg, image_b64, text")
        return self


class ScoreRequest(BaseModel):
    """One rollout group: a reference and the G completions sampled for it."""

    task: Literal["im2svg", "text2svg"] = "im2svg"
    reference: ReferenceIn
    completions: list[str] = Field(min_length=1, max_length=1024)
    completion_tokens: list[int] | None = Field(None, description="Token counts per completion (length reward).")
    reference_tokens: int | None = Field(None, description="Token count of the reference SVG.")
    profile: str | None = Field(None, description="Weight profile; the service default when omitted.")
    weights: dict[str, float] | None = Field(None, description="Per-component weight overrides.")
    step: int | None = Field(None, ge=0, description="Training step, for weight warm-up schedules.")
    request_id: str | None = None
    run_id: str | None = Field(
        None, max_length=128, description="Training run, for the dashboard's run view and the per-run metrics."
    )
    renders: bool = Field(False, description="Also return small PNG thumbnails of the reference and each render.")

    @model_validator(mode="after")
    def _tokens_match(self) -> ScoreRequest:
        if self.completion_tokens is not None and len(self.completion_tokens) != len(self.completions):
            raise ValueError(
                f"completion_tokens has {len(self.completion_tokens)} entries for {len(self.completions)} completions"
            )
        return self
