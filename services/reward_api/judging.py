"""The pipeline's judge stage: renders out to the judge proxy, verdicts (or explicit failures) back.

The proxy (``services/judge_proxy``) owns backends, rubrics, caching, rate limits and retries. This
side only picks the rubric for the task, sends the renders (already composited on white) with the
reference image and/or prompt, and keeps every failure explicit: a judge that could not answer
makes the rollout status ``error`` with reward null, never a 0.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from services.reward_api import png
from services.reward_api.core.errors import BadReferenceError, UnavailableComponentError
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
        self._inputs: dict[str, list[str]] = {}  # rubric name -> the inputs it needs (GET /v1/rubrics)

    def rubric(self, text_task: bool) -> str:
        return self.settings.judge_rubric_text2svg if text_task else self.settings.judge_rubric_im2svg

    def check(self, rubric: str, *, has_image: bool, has_prompt: bool) -> None:
        """Fail the request (not its rollouts) when the judge cannot run on it.

        Raises:
            UnavailableComponentError: no judge proxy is configured.
            BadReferenceError: the rubric needs a reference image or prompt the group lacks.
        """
        from services.judge_proxy.client import JudgeUnavailable

        if not self.settings.judge_url:
            raise UnavailableComponentError("the judge component needs a judge proxy: set RLRF_JUDGE_URL")
        if rubric not in self._inputs:
            try:
                self._inputs.update({r.name: r.inputs for r in self.client.rubrics()})
            except JudgeUnavailable:
                return  # the judge call itself will report the outage per rollout
        inputs = self._inputs.get(rubric)
        if inputs is None:
            raise UnavailableComponentError(f"the judge proxy has no rubric {rubric!r}")
        missing = [
            name
            for name, present in (("reference_image_b64", has_image), ("prompt", has_prompt))
            if name in inputs and not present
        ]
        if missing:
            what = " and ".join(
                "a reference image or svg" if m == "reference_image_b64" else "reference.text" for m in missing
            )
            raise BadReferenceError(f"judge rubric {rubric!r} needs {what}")

    def judge(self, rubric: str, request: ScoreRequest, reference: Any, images: list[np.ndarray]) -> list[Any]:
        """One verdict (or ``JudgeError``, or a failure message) per render of the group, in order."""
        reference_png = png.encode(reference.canvas.image) if reference.canvas is not None else None
        return self.verdicts(rubric, images, reference_png=reference_png, prompt=request.reference.text)

    def verdicts(
        self, rubric: str, images: list[np.ndarray], *, reference_png: bytes | None = None, prompt: str | None = None
    ) -> list[Any]:
        """One verdict (or ``JudgeError``, or a failure message) per image, in order; read them with
        ``failure``, ``score`` and ``flags``.

        Sent in chunks of at most ``MAX_CANDIDATES`` (the proxy's cap per request). An unreachable
        proxy is a failure message per image, never an exception.
        """
        from services.judge_proxy.client import JudgeUnavailable
        from services.judge_proxy.schemas import MAX_CANDIDATES

        out: list[Any] = []
        for start in range(0, len(images), MAX_CANDIDATES):
            chunk = images[start : start + MAX_CANDIDATES]
            try:
                out += self.client.judge(
                    rubric,
                    [png.encode(image) for image in chunk],
                    reference_png=reference_png,
                    prompt=prompt,
                    backend=self.settings.judge_backend,
                )
            except JudgeUnavailable as exc:
                out += [f"judge proxy unavailable: {exc}"] * len(chunk)
        return out

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
