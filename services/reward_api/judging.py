"""The pipeline's judge stage: renders out to the judge proxy, verdicts (or explicit failures) back.

The proxy (``services/judge_proxy``) owns backends, rubrics, caching, rate limits and retries. This
side only picks the rubric for the task, sends the renders (already composited on white) with the
reference image and/or prompt, and keeps every failure explicit: a judge that could not answer
makes the rollout status ``error`` with reward null, never a 0.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from services.reward_api.core.errors import UnavailableComponentError
from services.reward_api.core.schemas import ScoreRequest
from services.reward_api.core.settings import Settings

if TYPE_CHECKING:
    from services.judge_proxy.client import JudgeClient


class JudgeStage:
    """One judge-proxy client per pipeline, made on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: JudgeClient | None = None
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raises ``UnavailableComponentError`` when no judge proxy is configured."""
        if not self.settings.judge_url:
            raise UnavailableComponentError("the judge component needs a judge proxy: set RLRF_JUDGE_URL")

    def judge(self, request: ScoreRequest, reference: Any, images: list[np.ndarray]) -> list[Any]:
        """One verdict (or ``JudgeError``, or a failure message) per render, in order."""
        from services.judge_proxy.client import JudgeUnavailable

        if not images:
            return []
        rubric = (
            self.settings.judge_rubric_text2svg if request.task == "text2svg" else self.settings.judge_rubric_im2svg
        )
        reference_png = _png(reference.canvas.image) if reference.canvas is not None else None
        try:
            return self.client.judge(
                rubric,
                [_png(image) for image in images],
                reference_png=reference_png,
                prompt=request.reference.text,
                backend=self.settings.judge_backend,
            )
        except JudgeUnavailable as exc:
            return [f"judge proxy unavailable: {exc}"] * len(images)

    @property
    def client(self) -> JudgeClient:
        from services.judge_proxy.client import JudgeClient

        with self._lock:
            if self._client is None:
                assert self.settings.judge_url is not None
                token = self.settings.judge_token.get_secret_value() if self.settings.judge_token else None
                self._client = JudgeClient(
                    self.settings.judge_url, token=token, timeout_s=self.settings.judge_timeout_s
                )
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # reading a verdict --------------------------------------------------------------------------
    @staticmethod
    def failure(verdict: Any) -> str | None:
        """Why this rollout has no judge score (``None``: it has one, or was not judged)."""
        from services.judge_proxy.client import JudgeError

        if isinstance(verdict, str):
            return verdict
        if isinstance(verdict, JudgeError):
            return f"judge failed: {verdict.error}"
        return None

    @staticmethod
    def score(verdict: Any) -> float | None:
        return None if verdict is None or isinstance(verdict, str) else getattr(verdict, "score", None)

    @staticmethod
    def flags(verdict: Any) -> list[str]:
        return [f"judge:{flag}" for flag in getattr(verdict, "flags", None) or []]


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError("could not encode a render as PNG")
    return data.tobytes()
