"""HTTP clients of the reward service, sync and async, on httpx.

Pooling comes from one ``httpx.Client``/``AsyncClient`` per instance. Retries with exponential
backoff and jitter cover connection errors, timeouts and 5xx (``retries`` of them); a 429 is the
service's back-pressure, not a failure: it is waited out as ``Retry-After`` says, for up to
``overload_wait_s`` in all, without using up ``retries``. A 4xx contract error is raised at once.
httpx errors are translated at this one boundary.
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from trainer._exceptions import RequestRejected, ServiceUnavailable

Group = Mapping[str, Any]  # the body of POST /score: {"reference": {...}, "completions": [...], ...}

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=600.0, write=60.0, pool=60.0)


class _Retry:
    """Shared retry policy: which answers are retried, and how long to wait before the next try."""

    def __init__(self, retries: int, backoff_s: float, max_backoff_s: float, overload_wait_s: float) -> None:
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.overload_wait_s = overload_wait_s

    def delay(self, failures: int, response: httpx.Response | None, started: float) -> float | None:
        """Seconds to wait before the next try, or None to give up.

        ``failures``: failed tries so far other than 429s; ``started``: ``time.monotonic()`` of the first try.
        """
        if response is not None and response.status_code == 429:
            retry_after = response.headers.get("retry-after", "")
            wait = float(retry_after) if retry_after.isdigit() else self.backoff_s
            return wait if time.monotonic() + wait - started <= self.overload_wait_s else None
        if failures > self.retries:
            return None
        base = min(self.max_backoff_s, self.backoff_s * 2 ** (failures - 1))
        return base * (0.5 + random.random() / 2)

    @staticmethod
    def check(response: httpx.Response) -> bool:
        """True when the answer is final (success); raise for contract errors; False to retry."""
        if response.status_code < 400:
            return True
        if response.status_code == 429 or response.status_code >= 500:
            return False
        raise RequestRejected(f"{response.status_code}: {response.text[:500]}", status_code=response.status_code)


class RewardClient:
    """Blocking client. ``score`` sends one rollout group; ``score_batch`` several in one call.

    Args:
        base_url: e.g. ``http://reward-api:8000``.
        token: bearer token when the service sets ``RLRF_API_TOKEN``.
        retries: extra attempts after the first for connection errors, timeouts and 5xx.
        overload_wait_s: how long 429s (back-pressure) are waited out, in all, before giving up.
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
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)
        self._retry = _Retry(retries, backoff_s, max_backoff_s, overload_wait_s)

    def score(self, group: Group) -> dict[str, Any]:
        return self._post("/score", dict(group))

    def score_batch(self, groups: Sequence[Group]) -> list[dict[str, Any]]:
        groups_out: list[dict[str, Any]] = self._post("/score/batch", {"groups": list(groups)})["groups"]
        return groups_out

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        started, tries, failures = time.monotonic(), 0, 0
        while True:
            response = None
            tries += 1
            try:
                response = self._http.post(path, json=body)
                if self._retry.check(response):
                    data: dict[str, Any] = response.json()
                    return data
                last = f"{response.status_code}: {response.text[:200]}"
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            failures += response is None or response.status_code != 429
            wait = self._retry.delay(failures, response, started)
            if wait is None:
                raise ServiceUnavailable(f"reward service failed after {tries} attempts: {last}")
            time.sleep(wait)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncRewardClient:
    """The same as ``RewardClient`` for asyncio; concurrent calls share one connection pool."""

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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base_url = base_url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout
        self._transport = transport
        self._retry = _Retry(retries, backoff_s, max_backoff_s, overload_wait_s)
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def _http(self) -> httpx.AsyncClient:
        # One pool per event loop: TRL runs async rewards on its own loop, a test may run another.
        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            self._clients[loop] = httpx.AsyncClient(
                base_url=self._base_url, headers=self._headers, timeout=self._timeout, transport=self._transport
            )
        return self._clients[loop]

    async def score(self, group: Group) -> dict[str, Any]:
        return await self._post("/score", dict(group))

    async def score_batch(self, groups: Sequence[Group]) -> list[dict[str, Any]]:
        """Several groups in one ``POST /score/batch`` (at most 256)."""
        groups_out: list[dict[str, Any]] = (await self._post("/score/batch", {"groups": list(groups)}))["groups"]
        return groups_out

    async def score_groups(self, groups: Sequence[Group]) -> list[dict[str, Any]]:
        """Send the groups concurrently, one ``POST /score`` each; results in order."""
        return list(await asyncio.gather(*(self.score(g) for g in groups)))

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        started, tries, failures = time.monotonic(), 0, 0
        while True:
            response = None
            tries += 1
            try:
                response = await self._http().post(path, json=body)
                if self._retry.check(response):
                    data: dict[str, Any] = response.json()
                    return data
                last = f"{response.status_code}: {response.text[:200]}"
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            failures += response is None or response.status_code != 429
            wait = self._retry.delay(failures, response, started)
            if wait is None:
                raise ServiceUnavailable(f"reward service failed after {tries} attempts: {last}")
            await asyncio.sleep(wait)

    async def aclose(self) -> None:
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
