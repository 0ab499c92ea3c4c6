"""What both HTTP services (reward API, judge proxy) share: the error model, the 500 guard, counting.

Every answer that is not a success has the body ``ErrorBody``: ``{"detail": str, "error": str}``
plus, for a request that failed validation, ``errors`` (where and why, never the input itself:
echoing input can fail to encode, e.g. a lone surrogate, and can be megabytes). The OpenAPI
schema documents it per status through ``error_responses(...)``, so what a client reads is what the
schema says. Starlette's own errors (404, 405, a body it cannot parse: 400) and request
validation (422) go through the handlers ``install`` adds, anything unhandled (500) through
``Guard``; each service maps its own error tree to a status with its own handler, rendered by
``error_response``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

_MAX_ERRORS = 50  # validation issues listed; a 1,024-item list of wrong types must not answer 1,024 entries


class FieldError(BaseModel):
    """One validation issue: where in the request (``["body", "completions", 3]``) and why."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """The body of every error answer."""

    detail: str = Field(description="What went wrong, for a person.")
    error: str = Field(description="The error's kind, for a program (e.g. RequestValidationError, OverloadedError).")
    errors: list[FieldError] | None = Field(None, description="Validation issues (422 from validation only).")


_DESCRIPTIONS = {
    400: "The body could not be read (not parseable as the declared content type).",
    401: "Missing or wrong bearer token (only when the service is configured with one).",
    404: "Not held: e.g. a run or step the dashboard has not seen, or no longer keeps.",
    413: "Too large: the body is over the size limit, or the request holds more work than the service "
    "ever admits at once. Retrying the same request cannot succeed.",
    422: "The request breaks the contract: failed validation (see `errors`) or is inconsistent "
    "(unknown profile, rubric or component, mismatched lengths, an unusable reference).",
    429: "Overloaded: admitting the request would exceed the work in flight. Retry after `Retry-After` seconds.",
    500: "A bug: the failure is logged; the request may be retried.",
    503: "The backend failed on work that is not the request's fault (render workers, judge backends): retry.",
}

_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the documented error statuses, each with ``ErrorBody``."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": ErrorBody, "description": _DESCRIPTIONS[code]}
        if code == 429:
            entry["headers"] = _RETRY_AFTER
        out[code] = entry
    return out


def clean(text: str) -> str:
    """``text`` made encodable as UTF-8: a lone surrogate becomes its escape, ``\\udcff``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_response(
    status: int,
    detail: str,
    error: str,
    *,
    headers: dict[str, str] | None = None,
    errors: list[FieldError] | None = None,
) -> JSONResponse:
    """An ``ErrorBody`` answer that always encodes, whatever text it carries."""
    body = ErrorBody(detail=clean(detail), error=error, errors=errors)
    return JSONResponse(body.model_dump(exclude_none=True), status, headers=headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    issues = list(exc.errors())
    errors = [
        FieldError(
            loc=[part if isinstance(part, int) else clean(str(part)) for part in issue.get("loc", ())],
            msg=clean(str(issue.get("msg", ""))),
            type=clean(str(issue.get("type", ""))),
        )
        for issue in issues[:_MAX_ERRORS]
    ]
    lines = [f"{'.'.join(str(p) for p in e.loc)}: {e.msg}" for e in errors]
    if len(issues) > _MAX_ERRORS:
        lines.append(f"... and {len(issues) - _MAX_ERRORS} more")
    noun = "error" if len(issues) == 1 else "errors"
    return error_response(
        422, f"{len(issues)} validation {noun}: " + "; ".join(lines), "RequestValidationError", errors=errors
    )


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    names = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed"}
    response = error_response(exc.status_code, str(exc.detail), names.get(exc.status_code, "HTTPError"))
    for key, value in (exc.headers or {}).items():
        response.headers[key] = value
    return response


def install(app: FastAPI) -> None:
    """Route validation errors and Starlette's HTTP errors through ``ErrorBody`` (``Guard`` does the 500s)."""
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]


class Guard:
    """The outer layer: an unhandled error becomes a 500 in the error model, and answers are counted.

    Added last, so it sees what the client gets, the 413s of outer size limits included. It
    answers the 500 itself, rather than Starlette's error layer, which re-raises to the server:
    uvicorn then drops the keep-alive connection, and the client's next request on it fails.
    ``count(app, path, status)`` counts an answer on ``paths`` (the metrics live on the app's state).
    """

    def __init__(self, app: ASGIApp, *, paths: Collection[str], count: Callable[[Any, str, int], None]) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.count = count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: int | None = None

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            log.error("unhandled error on %s %s", scope.get("method"), scope["path"], exc_info=exc)
            if status is not None:
                raise  # too late for an answer of our own: the server closes the connection
            status = 500
            await error_response(500, f"internal error ({type(exc).__name__}); it is logged", "InternalError")(
                scope, receive, send
            )
        finally:
            if scope["path"] in self.paths:
                self.count(scope["app"], scope["path"], status or 500)
