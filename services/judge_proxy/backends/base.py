"""What every judge backend does: send one call, return the text and the usage, or raise a ``CallError``.

Backends make exactly one HTTP attempt per ``generate``. Retries, the deadline, rate limits and
parsing live in ``service.py``, once for all backends.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from services.judge_proxy.images import png_size
from services.judge_proxy.limits import Limiter
from services.judge_proxy.rubrics import Part


@dataclass(frozen=True)
class Call:
    """One judge request, independent of the wire format."""

    system: str
    parts: list[Part]
    schema: dict[str, Any]
    schema_name: str


@dataclass(frozen=True)
class Reply:
    """The judge's text and the token usage the server reported (None when it reported none)."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class Backend(ABC):
    """One configured judge: a wire format, a model, and its own limits."""

    name: str

    def __init__(self, *, model: str, limiter: Limiter) -> None:
        self.model = model
        self.limiter = limiter

    @abstractmethod
    async def generate(self, call: Call, *, timeout_s: float) -> Reply:
        """One attempt. Raises ``TransientError``, ``RejectedError`` or ``MalformedVerdictError``."""

    @abstractmethod
    def image_tokens(self, width: int, height: int) -> int:
        """Prompt tokens one image costs on this backend's model."""

    def estimate_tokens(self, call: Call, *, completion_tokens: int) -> int:
        """Prompt plus expected completion tokens, charged to the TPM bucket before the call."""
        text = len(call.system) + sum(len(p) for p in call.parts if isinstance(p, str))
        images = sum(self.image_tokens(*png_size(p)) for p in call.parts if isinstance(p, bytes))
        return math.ceil(text / 4) + images + completion_tokens

    @abstractmethod
    async def aclose(self) -> None:
        """Release connections."""
