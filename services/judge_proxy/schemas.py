"""The HTTP contract of the proxy: request and result models, shared by the server and ``client.py``.

Only pydantic here, so the client imports it without the server's dependencies. A candidate's
result is either a ``Verdict`` (``status: "ok"``) or a ``JudgeError`` (``status: "error"``): a
failed judge call is never a score of 0.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services._unicode import Utf8Str

MAX_CANDIDATES = 256


class JudgeRequest(BaseModel):
    """``POST /v1/judge``: candidates judged against one reference image and/or prompt."""

    rubric: str = Field(description="Rubric name, e.g. 'vfig-im2svg' (GET /v1/rubrics lists them).")
    backend: str | None = Field(None, description="'gemini' or 'openai'; null: the configured default.")
    reference_image_b64: str | None = Field(None, description="Reference PNG/JPEG, base64 (Im2SVG rubrics).")
    prompt: Utf8Str | None = Field(
        None, description="The text prompt (Text2SVG rubrics)."
    )
    candidates_b64: list[str] = Field(
        min_length=1,
        max_length=MAX_CANDIDATES,
        description="Rendered candidates, PNG base64; alpha is flattened onto white.",
    )


class Verdict(BaseModel):
    """A judged candidate: the combined score in [0, 1], each axis in its rubric's range, flags."""

    model_config = ConfigDict(frozen=True)

    status: Literal["ok"] = "ok"
    score: float = Field(ge=0, le=1)
    axes: dict[str, float]
    flags: tuple[str, ...] = Field((), description="e.g. 'clamped:<axis>' when the judge answered out of range.")
    cached: bool = False


class JudgeError(BaseModel):
    """A candidate the judge could not score. ``retryable``: the same request may succeed later."""

    model_config = ConfigDict(frozen=True)

    status: Literal["error"] = "error"
    error: str
    retryable: bool


Result = Annotated[Verdict | JudgeError, Field(discriminator="status")]


class JudgeResponse(BaseModel):
    """Results in candidate order."""

    rubric: str
    rubric_version: str
    backend: str
    model: str
    results: list[Result]


class AxisInfo(BaseModel):
    name: str
    description: str
    min: float
    max: float
    weight: float


class RubricInfo(BaseModel):
    """What ``GET /v1/rubrics`` says about one rubric."""

    name: str
    version: str
    description: str
    inputs: list[str] = Field(description="Inputs a request must carry besides candidates_b64.")
    axes: list[AxisInfo]
    verdict_schema: dict[str, Any] = Field(description="JSON schema the judge answers in.")


class RubricsResponse(BaseModel):
    rubrics: list[RubricInfo]
