"""The last N scored groups, with their renders, for ``/dashboard``.

Bringing renders back from the workers costs a copy per rollout, so groups are *sampled*: at most
one per ``dashboard_interval_s`` is scored with ``Pipeline.score_group_captured``. A training run therefore shows
a fresh group every second or so without paying for 2,048 images a step.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import deque
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, Field

from services.reward_api import png
from services.reward_api.core.results import Capture, GroupResult
from services.reward_api.core.schemas import ScoreRequest
from services.reward_api.core.settings import Settings

_THUMB = 160  # pixels: enough to see what a rollout drew, small enough for 64 per group
_RETURNED = 128  # pixels a side of the thumbnails a request asks for with ``renders``


class Renders(BaseModel):
    """Thumbnails returned with a group scored with ``renders: true`` (PNG data URLs, 128 px a side)."""

    reference: str | None = Field(description="The reference canvas; null for a text-only reference.")
    rollouts: list[str | None] = Field(description="One per completion, in order; null where nothing rendered.")

    @classmethod
    def of(cls, capture: Capture) -> Renders:
        return cls(
            reference=data_url(capture.reference, _RETURNED),
            rollouts=[data_url(i, _RETURNED) for i in capture.rollouts],
        )


class RecentGroups:
    """A ring buffer of captured groups, as JSON-ready dicts (thumbnails inlined as PNG data URLs)."""

    def __init__(self, settings: Settings) -> None:
        self.size = settings.dashboard_groups
        self.interval_s = settings.dashboard_interval_s
        self._groups: deque[dict[str, Any]] = deque(maxlen=max(1, self.size))
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._seq = 0

    def want(self) -> bool:
        """Whether the next group should be captured (claims the slot if so)."""
        if self.size == 0:
            return False
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.interval_s:
                return False
            self._last = now
            return True

    def add(self, request: ScoreRequest, result: GroupResult, capture: Capture) -> None:
        """Keep a captured group, its renders as thumbnails."""
        reference, renders = capture.reference, capture.rollouts
        rollouts = [
            {
                "reward": r.reward,
                "status": r.status.value,
                "components": r.components,
                "flags": r.flags,
                "detail": r.detail,
                "image": data_url(image),
            }
            for r, image in zip(result.results, renders)
        ]
        with self._lock:
            self._seq += 1
            self._groups.appendleft(
                {
                    "seq": self._seq,
                    "time": time.time(),
                    "request_id": request.request_id,
                    "task": request.task,
                    "profile": request.profile,
                    "step": request.step,
                    "prompt": request.reference.text,
                    "reference": data_url(reference),
                    "timings_ms": result.timings_ms,
                    "rollouts": rollouts,
                }
            )

    def snapshot(self) -> list[dict[str, Any]]:
        """Newest first."""
        with self._lock:
            return list(self._groups)


def data_url(image: np.ndarray | None, side: int = _THUMB) -> str | None:
    """A PNG thumbnail (at most ``side`` pixels a side) as a data URL; ``None`` for no image."""
    if image is None:
        return None
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale < 1:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return "data:image/png;base64," + base64.b64encode(png.encode(image)).decode("ascii")
