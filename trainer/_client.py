"""HTTP clients of the reward service, sync and async, on httpx.

Pooling comes from one ``httpx.Client``/``AsyncClient`` per instance. Retries with exponential
backoff and jitter cover connection errors, timeouts and 5xx (``retries`` of them); a 429 is the
service's back-pressure, not a failure: it is waited out as ``Retry-After`` says, for up to
``overload_wait_s`` in all, without using up ``retries``. A 4xx contract error is raised at once.
httpx errors are translated at this one boundary.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import httpx

from trainer._exceptions import RequestRejected, ServiceUnavailable

Group = Mapping[str, Any]  # the body of POST /score: {"reference": {...}, "completions": [...], ...}

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=600.0, write=60.0, pool=60.0)

_PROCESS_RUN_ID = time.strftime("run-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def default_run_id() -> str:
    """``RLRF_RUN_ID`` if set, else one id made per process.

    The service's run view groups requests by it. Set ``RLRF_RUN_ID`` for a multi-process run
    (torchrun passes the environment to every rank), so all ranks land in one run.
    """
    return os.environ.get("RLRF_RUN_ID") or _PROCESS_RUN_ID


class RolloutResult(TypedDict, total=False):
    """One rollout's result, as the service returns it (``results[i]``)."""

    reward: float | None  # None: our infrastructure failed (status "error"), never a score
    components: dict[str, float]
    status: str
    flags: list[str]
    detail: str | None


class ScoreResponse(TypedDict, total=False):
    """The answer to one group (``POST /score``; one entry of ``POST /score/batch``)."""

    rewards: list[float | None]  # in completion order
    results: list[RolloutResult]
    timings_ms: dict[str, float]
    renders: dict[str, Any] | None


class _Attempts:
    """One request's tries, without I/O, so the sync and async clients share every decision.

    Connection errors, timeouts and 5xx are retried ``retries`` times with jittered exponential
    backoff; a 429 waits as ``Retry-After`` says, for up to ``overload_wait_s`` in all, and uses up
    no retry; any other 4xx raises ``RequestRejected`` at once.
    """

    def __init__(self, retries: int, backoff_s: float, max_backoff_s: float, overload_wait_s: float) -> None:
        self.retries, self.backoff_s, self.max_backoff_s = retries, backoff_s, max_backoff_s
        self.overload_wait_s = overload_wait_s
        self.started, self.tries, self.failures = time.monotonic(), 0, 0
        self.wait, self.last = 0.0, ""  # before the next try; what the last failed one said

    def outcome(self, response: httpx.Response | None, error: httpx.TransportError | None) -> Any:
        """The answer's JSON, or ``None`` after a failed try that may be retried (then ``wait`` says when).

        Raises:
            RequestRejected: a contract error (4xx other than 429): retrying cannot help.
            ServiceUnavailable: out of retries, or 429s past ``overload_wait_s``.
        """
        self.tries += 1
        if response is not None and response.status_code < 400:
            return response.json()
        if response is not None and response.status_code != 429 and response.status_code < 500:
            raise RequestRejected(f"{response.status_code}: {response.text[:500]}", status_code=response.status_code)
        self.last = (
            f"{type(error).__name__}: {error}" if response is None else f"{response.status_code}: {response.text[:200]}"
        )
        self.failures += response is None or response.status_code != 429
        wait = self._delay(response)
        if wait is None:
            raise ServiceUnavailable(f"reward service failed after {self.tries} attempts: {self.last}")
        self.wait = wait
        return None

    def _delay(self, response: httpx.Response | None) -> float | None:
        if response is not None and response.status_code == 429:
            retry_after = response.headers.get("retry-after", "")
            wait = float(retry_after) if retry_after.isdigit() else self.backoff_s
            return wait if time.monotonic() + wait - self.started <= self.overload_wait_s else None
        if self.failures > self.retries:
            return None
        base = min(self.max_backoff_s, self.backoff_s * 2 ** (self.failures - 1))
        return base * (0.5 + random.random() / 2)


class _BaseClient:
    """What the two clients share: configuration, the run id, request bodies and the retry policy.

    Args:
        base_url: e.g. ``http://reward-api:8000``.
        token: bearer token when the service sets ``RLRF_API_TOKEN``.
        retries: extra attempts after the first for connection errors, timeouts and 5xx.
        overload_wait_s: how long 429s (back-pressure) are waited out, in all, before giving up.
        run_id: sent with every group that has none (the dashboard's run view); ``None``:
            ``default_run_id()``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        overload_wait_s: float = 600.0,
        run_id: str | None = None,
    ) -> None:
        self.base_url = base_url
        self.run_id = run_id or default_run_id()
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout
        self._policy = (retries, backoff_s, max_backoff_s, overload_wait_s)

    def _attempts(self) -> _Attempts:
        return _Attempts(*self._policy)

    def _group(self, group: Group) -> dict[str, Any]:
        body = dict(group)
        if self.run_id:
            body.setdefault("run_id", self.run_id)
        return body

    def _batch(self, groups: Sequence[Group]) -> dict[str, Any]:
        return {"groups": [self._group(g) for g in groups]}


class RewardClient(_BaseClient):
    """Blocking client. ``score`` sends one rollout group; ``score_batch`` several in one call."""

    def __init__(self, base_url: str, *, transport: httpx.BaseTransport | None = None, **options: Any) -> None:
        super().__init__(base_url, **options)
        self._http = httpx.Client(base_url=base_url, headers=self._headers, timeout=self._timeout, transport=transport)

    def score(self, group: Group) -> ScoreResponse:
        response: ScoreResponse = self._post("/score", self._group(group))
        return response

    def score_batch(self, groups: Sequence[Group]) -> list[ScoreResponse]:
        """Several groups in one ``POST /score/batch`` (at most 256); results in order."""
        responses: list[ScoreResponse] = self._post("/score/batch", self._batch(groups))["groups"]
        return responses

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        attempts = self._attempts()
        while True:
            try:
                response, error = self._http.post(path, json=body), None
            except httpx.TransportError as exc:
                response, error = None, exc
            data = attempts.outcome(response, error)
            if data is not None:
                return data
            time.sleep(attempts.wait)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncRewardClient(_BaseClient):
    """The same as ``RewardClient`` for asyncio; concurrent calls share one connection pool per loop.

    ``score_groups`` sends groups concurrently, one ``POST /score`` each (what TRL's reward
    functions do); ``score_batch`` sends them in one request.
    """

    def __init__(self, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None, **options: Any) -> None:
        super().__init__(base_url, **options)
        self._transport = transport
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def _http(self) -> httpx.AsyncClient:
        # One pool per event loop: TRL runs async rewards on its own loop, a test may run another.
        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            self._clients[loop] = httpx.AsyncClient(
                base_url=self.base_url, headers=self._headers, timeout=self._timeout, transport=self._transport
            )
        return self._clients[loop]

    async def score(self, group: Group) -> ScoreResponse:
        response: ScoreResponse = await self._post("/score", self._group(group))
        return response

    async def score_batch(self, groups: Sequence[Group]) -> list[ScoreResponse]:
        """Several groups in one ``POST /score/batch`` (at most 256); results in order."""
        responses: list[ScoreResponse] = (await self._post("/score/batch", self._batch(groups)))["groups"]
        return responses

    async def score_groups(self, groups: Sequence[Group]) -> list[ScoreResponse]:
        """Send the groups concurrently, one ``POST /score`` each; results in order."""
        return list(await asyncio.gather(*(self.score(g) for g in groups)))

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        attempts = self._attempts()
        while True:
            try:
                response, error = await self._http().post(path, json=body), None
            except httpx.TransportError as exc:
                response, error = None, exc
            data = attempts.outcome(response, error)
            if data is not None:
                return data
            await asyncio.sleep(attempts.wait)

    async def aclose(self) -> None:
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
