"""Errors of the judge proxy.

Request-level errors become an HTTP status (one handler renders them):

    JudgeProxyError             base; never escapes as a bare traceback
    ├── ConfigError             unusable settings at start-up (fail fast)
    ├── InvalidRequestError     a request the rubric cannot be applied to (HTTP 422)
    │   ├── UnknownRubricError
    │   ├── UnknownBackendError
    │   └── MissingInputError   the rubric needs a reference image or a prompt that is absent
    ├── NoBackendError          no backend configured at all (HTTP 503)
    └── UnauthorizedError       missing or wrong bearer token (HTTP 401)

Call-level errors concern one candidate's judge call. The retry loop reads ``retryable`` and
``retry_after_s``; what is left when it gives up becomes that candidate's ``status: "error"``:

    CallError                   base: one call failed
    ├── TransientError          429, 408, 5xx, timeouts, dropped connections: worth another attempt
    ├── RejectedError           the backend refused the request itself (400, 401, 403, 404, ...)
    ├── MalformedVerdictError   the reply holds no verdict the rubric can read
    └── BadImageError           a candidate image that cannot be decoded
"""

from __future__ import annotations


class JudgeProxyError(Exception):
    """Base of every request-level error the proxy raises on purpose."""

    http_status = 500


class ConfigError(JudgeProxyError):
    """Raised at start-up when settings point at something unusable."""


class InvalidRequestError(JudgeProxyError):
    """Raised for a well-formed request that cannot be judged as asked."""

    http_status = 422


class UnknownRubricError(InvalidRequestError):
    """Raised for a rubric name that is not registered."""


class UnknownBackendError(InvalidRequestError):
    """Raised for a backend name that does not exist or is not configured."""


class MissingInputError(InvalidRequestError):
    """Raised when the rubric needs an input (reference image, prompt) the request lacks."""


class NoBackendError(JudgeProxyError):
    """Raised when no backend is configured: the proxy cannot judge anything."""

    http_status = 503


class UnauthorizedError(JudgeProxyError):
    """Raised when ``RLRF_JUDGE_API_TOKEN`` is set and the request does not carry it."""

    http_status = 401


class CallError(Exception):
    """One judge call failed; ``retryable`` tells the caller whether trying later may help."""

    retryable = False

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TransientError(CallError):
    """Raised for failures that another attempt may fix: rate limits, server errors, timeouts."""

    retryable = True

    def __init__(self, message: str, *, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.reason = reason  # metric label: rate_limited, server_error, timeout, connection_error


class RejectedError(CallError):
    """Raised when the backend refuses the request as such; the same request would fail again."""


class MalformedVerdictError(CallError):
    """Raised when the judge answered but its text is not a verdict of the rubric."""


class BadImageError(CallError):
    """Raised for a candidate image that cannot be decoded or is too large."""
