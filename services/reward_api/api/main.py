"""Assembles the FastAPI app: lifespan (pipeline + workers), routers, limits, error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services._http import Guard, error_response, install
from services.reward_api.api.routes import dashboard, health, openrlhf, score
from services.reward_api.api.service import RewardService
from services.reward_api.core.errors import OverloadedError, RewardError
from services.reward_api.core.settings import Settings, get_settings
from services.reward_api.pipeline import Pipeline


def create_app(settings: Settings | None = None, pipeline: Pipeline | None = None) -> FastAPI:
    """The reward service. Without ``pipeline`` it starts an embedded one (its own render workers)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = pipeline is None
        if pipeline is not None:
            active = pipeline
        elif settings.backend == "celery":
            active = Pipeline.distributed(settings)
        else:
            active = Pipeline.embedded(settings)
        models = getattr(active.backend, "models", None)
        if owned and models is not None and models.configured_features():
            await anyio.to_thread.run_sync(models.load)  # load the weights now, not in the first request
        app.state.service = RewardService(settings, active)
        try:
            yield
        finally:
            if owned:
                active.close()

    app = FastAPI(
        title="RLRF reward service",
        version="0.1.0",
        summary="Rendering-feedback rewards for SVG reinforcement learning: one POST /score per rollout group.",
        lifespan=lifespan,
    )
    app.include_router(score.router)
    app.include_router(openrlhf.router)
    app.include_router(health.router)
    app.include_router(dashboard.router)
    install(app)
    app.add_exception_handler(RewardError, _reward_error)  # type: ignore[arg-type]
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(Guard, paths=_COUNTED, count=_count)  # added last: outside BodyLimit, counts its 413s
    return app


_COUNTED = frozenset({"/score", "/score/batch", "/openrlhf/reward"})


def _count(app: Any, path: str, status: int) -> None:
    service = getattr(app.state, "service", None)
    if service is not None:
        service.metrics.requests.labels(path, str(status)).inc()


async def _reward_error(request: Request, exc: RewardError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, OverloadedError) else None
    if exc.http_status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return error_response(exc.http_status, str(exc), type(exc).__name__, headers=headers)


class BodyLimit:
    """413 for bodies over ``max_bytes``: by Content-Length up front, else while streaming."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _too_large(self.max_bytes, send)
            return
        seen = 0
        refused = False

        async def limited() -> Message:
            # Past the limit: answer 413 ourselves and tell the app the client left, so no
            # framework layer can turn it into a generic 400.
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                refused = True
                await _too_large(self.max_bytes, send)
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, limited, guarded_send)
        except Exception:
            if not refused:
                raise


async def _too_large(limit: int, send: Send) -> None:
    body = b'{"detail":"request body over %d bytes","error":"RequestTooLargeError"}' % limit
    headers: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
