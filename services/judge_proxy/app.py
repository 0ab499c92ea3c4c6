"""Assembles the FastAPI app: lifespan (backends, cache), routers, error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services._http import Guard, error_response, install
from services.judge_proxy.errors import JudgeProxyError
from services.judge_proxy.routes import api, operations
from services.judge_proxy.service import JudgeService
from services.judge_proxy.settings import JudgeSettings, get_settings


def create_app(settings: JudgeSettings | None = None, service: JudgeService | None = None) -> FastAPI:
    """The judge proxy. Without ``service`` it builds one from ``settings`` when the app starts."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        active = service or JudgeService.from_settings(settings)  # httpx/Redis clients bind to this loop
        app.state.service = active
        try:
            yield
        finally:
            if service is None:
                await active.aclose()

    app = FastAPI(
        title="RLRF judge proxy",
        version="0.1.0",
        summary="One HTTP front for VLM judges (Gemini, OpenAI-compatible servers): rubrics, cache, limits, retries.",
        lifespan=lifespan,
    )
    app.include_router(api)
    app.include_router(operations)
    install(app)
    app.add_exception_handler(JudgeProxyError, _judge_proxy_error)  # type: ignore[arg-type]
    app.add_middleware(Guard, paths=("/v1/judge",), count=_count)
    return app


def _count(app: Any, path: str, status: int) -> None:
    service = getattr(app.state, "service", None)
    if service is not None:
        service.metrics.http_requests.labels(str(status)).inc()


async def _judge_proxy_error(request: Request, exc: JudgeProxyError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
    return error_response(exc.http_status, str(exc), type(exc).__name__, headers=headers)
