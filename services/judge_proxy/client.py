"""A small synchronous client of the judge proxy, for the reward API.

Two kinds of failure, kept apart on purpose:

- the proxy answered, but the judge could not score a candidate: that candidate's result is a
  ``JudgeError`` (``retryable`` says whether trying later may help), the others are ``Verdict``\\ s;
- the proxy itself failed (unreachable, timed out, 4xx, 5xx, or a reply that breaks the contract):
  ``JudgeUnavailable`` is raised and there are no results at all.

Either way the caller reports ``status: "error"`` with reward ``None`` for the affected rollouts,
never a score of 0. Only httpx and pydantic are imported: no server dependencies.
"""

from __future__ import annotations

import base64
from types import TracebackType

import httpx
from pydantic import ValidationError

from services.judge_proxy.schemas import JudgeError, JudgeResponse, RubricInfo, RubricsResponse, Verdict

__all__ = ["JudgeClient", "JudgeError", "JudgeUnavailable", "Verdict"]


class JudgeUnavailable(Exception):
    """Raised when the proxy cannot be reached or refuses the request as a whole (no verdicts at all)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code  # None: no HTTP answer (connection refused, timeout, bad reply)


class JudgeClient:
    """Calls ``POST /v1/judge`` on one proxy.

    Args:
        base_url: the proxy, e.g. ``http://127.0.0.1:8100``.
        token: sent as ``Authorization: Bearer <token>`` when the proxy has ``RLRF_JUDGE_API_TOKEN`` set.
        timeout_s: per HTTP request; keep it above the proxy's ``deadline_s`` (default 90 s), which
            already bounds every candidate.

    Example:
        >>> with JudgeClient("http://127.0.0.1:8100") as judge:  # doctest: +SKIP
        ...     results = judge.judge("vfig-im2svg", [candidate_png], reference_png=reference_png)
        >>> [r.score if r.status == "ok" else None for r in results]  # doctest: +SKIP
        [0.82]
    """

    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = 180.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)

    def judge(
        self,
        rubric: str,
        candidates_png: list[bytes],
        reference_png: bytes | None = None,
        prompt: str | None = None,
        backend: str | None = None,
    ) -> list[Verdict | JudgeError]:
        """Judge rendered candidates against one reference image and/or prompt.

        Args:
            rubric: a rubric name, e.g. ``"vfig-im2svg"`` (needs ``reference_png``) or ``"rlrf-text2svg"``
                (needs ``prompt``).
            candidates_png: 1 to 256 rendered candidates (PNG; transparency is flattened onto white).
            reference_png: the reference image (PNG or JPEG).
            prompt: the text prompt.
            backend: ``"gemini"`` or ``"openai"``; None: the proxy's default.

        Returns:
            One ``Verdict`` or ``JudgeError`` per candidate, in order.

        Raises:
            JudgeUnavailable: the proxy is unreachable, timed out, or answered 4xx/5xx.
        """
        body = {
            "rubric": rubric,
            "backend": backend,
            "reference_image_b64": _b64(reference_png) if reference_png is not None else None,
            "prompt": prompt,
            "candidates_b64": [_b64(png) for png in candidates_png],
        }
        response = self._request("POST", "/v1/judge", json=body)
        try:
            results = JudgeResponse.model_validate_json(response.content).results
        except ValidationError as exc:
            raise JudgeUnavailable(f"judge proxy broke the contract: {exc}") from exc
        if len(results) != len(candidates_png):
            raise JudgeUnavailable(f"judge proxy returned {len(results)} results for {len(candidates_png)} candidates")
        return list(results)

    def rubrics(self) -> list[RubricInfo]:
        """The rubrics the proxy knows."""
        response = self._request("GET", "/v1/rubrics")
        try:
            return RubricsResponse.model_validate_json(response.content).rubrics
        except ValidationError as exc:
            raise JudgeUnavailable(f"judge proxy broke the contract: {exc}") from exc

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> JudgeClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        """The one place httpx errors become ``JudgeUnavailable``."""
        try:
            response = self._http.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise JudgeUnavailable(
                f"judge proxy unreachable at {self._http.base_url}: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code >= 400:
            raise JudgeUnavailable(
                f"judge proxy answered HTTP {response.status_code}: {response.text[:500]}",
                status_code=response.status_code,
            )
        return response


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
