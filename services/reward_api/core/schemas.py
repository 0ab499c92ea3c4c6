"""Request models: one rollout group to score (the body of ``POST /score``, also built by the CLI).

Every number is bounded and every field a service echoes or forwards must be encodable, so that no
value a client can send reaches float arithmetic or a JSON encoder it would break (a 400-digit
integer overflows a float; a lone surrogate such as ``"\\udcff"`` cannot be written as UTF-8).
Completions are the exception: they are the model's output, scored as they are (a lone surrogate
in one gets a status, not a 422).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services._unicode import Utf8Str

MAX_INT = 2**53 - 1
"""The largest integer every JSON parser holds exactly (an IEEE double); bounds steps and token counts."""

MAX_WEIGHT = 1000.0
"""Largest weight magnitude: components lie in [-1, 1], so a total stays far from overflow."""



Count = Annotated[int, Field(ge=0, le=MAX_INT)]
Weight = Annotated[float, Field(ge=-MAX_WEIGHT, le=MAX_WEIGHT, allow_inf_nan=False)]


class ReferenceIn(BaseModel):
    """The target of a group: ground-truth SVG code and/or an image; optionally a text prompt."""

    # The schema says what the validator checks: at least one of the three, as a string.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "string"}}} for name in ("svg", "image_b64", "text")
            ]
        }
    )

    svg: str | None = Field(None, description="Ground-truth SVG code; rendered like the candidates.")
    image_b64: str | None = Field(None, description="PNG/JPEG bytes, base64; used when no SVG is given.")
    text: Utf8Str | None = Field(None, description="The text prompt (Text2SVG).")

    @model_validator(mode="after")
    def _needs_target(self) -> ReferenceIn:
        if self.svg is None and self.image_b64 is None and self.text is None:
            raise ValueError("reference needs at least one of svg, image_b64, text")
        return self


_CIRCLE = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><circle cx="5" cy="5" r="{r}"/></svg>'


class ScoreRequest(BaseModel):
    """One rollout group: a reference and the G completions sampled for it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "task": "im2svg",
                    "reference": {"svg": _CIRCLE.format(r=4)},
                    "completions": [f"```svg\n{_CIRCLE.format(r=3)}\n```", "no idea"],
                    "completion_tokens": [40, 2],
                    "step": 10,
                }
            ]
        }
    )

    task: Literal["im2svg", "text2svg"] = "im2svg"
    reference: ReferenceIn
    completions: list[str] = Field(min_length=1, max_length=1024)
    completion_tokens: list[Count] | None = Field(None, description="Token counts per completion (length reward).")
    reference_tokens: Count | None = Field(None, description="Token count of the reference SVG.")
    profile: Utf8Str | None = Field(None, description="Weight profile; the service default when omitted.")
    weights: dict[Utf8Str, Weight] | None = Field(
        None, description=f"Per-component weight overrides, finite, within ±{MAX_WEIGHT:g}."
    )
    step: Count | None = Field(None, description="Training step, for weight warm-up schedules.")
    request_id: Utf8Str | None = Field(None, max_length=256)
    run_id: Utf8Str | None = Field(
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
