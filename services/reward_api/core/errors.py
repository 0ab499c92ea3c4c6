"""Errors of the reward service.

    RewardError                 base; never escapes as a bare traceback
    ├── ConfigError             bad settings or missing files at start-up (fail fast)
    │   └── MissingWeightsError     a model weight file is not where settings say
    ├── BadReferenceError       the group's reference cannot be prepared (caller's input)
    ├── BackendError            the render workers failed us (closed pool, a bug): not the input's fault
    ├── InvalidRequestError     a request that breaks the contract (mismatched list lengths, ...)
    ├── InputError              a command's input files or options cannot be used (rlrf eval, data prepare)
    ├── UnknownProfileError     a profile or component name that does not exist
    ├── UnavailableComponentError  a component this server is not configured for (no weights, no judge)
    ├── OverloadedError         too many rollouts in flight: back-pressure (HTTP 429, Retry-After)
    ├── RequestTooLargeError    more rollouts than are ever admitted at once: can never fit (HTTP 413)
    ├── UnauthorizedError       missing or wrong bearer token (HTTP 401)
    └── NotFoundError           a run or step the dashboard does not hold (HTTP 404)

Per-rollout problems are not exceptions: they become a ``Status`` on that rollout.
"""

from __future__ import annotations


class RewardError(Exception):
    """Base of every error the reward service raises on purpose."""

    http_status = 500


class ConfigError(RewardError):
    """Raised at start-up when settings point at something unusable."""


class MissingWeightsError(ConfigError):
    """Raised when a model's weight file is missing: names the file and where it comes from."""


class BadReferenceError(RewardError):
    """Raised when the group's reference (SVG or image) cannot be turned into a canvas."""

    http_status = 422


class UnknownProfileError(RewardError):
    """Raised for a profile or component name that is not defined."""

    http_status = 422


class UnavailableComponentError(RewardError):
    """Raised for a component whose model or judge this server was not configured with."""

    http_status = 422


class InvalidRequestError(RewardError):
    """Raised for a request that is well-formed JSON but inconsistent."""

    http_status = 422


class InputError(RewardError):
    """Raised for files or options given to a command that cannot be used: names the file and line."""

    http_status = 422


class BackendError(RewardError):
    """Raised when the sandboxed backend could not do group-level work (e.g. render the reference)."""

    http_status = 503


class OverloadedError(RewardError):
    """Raised when admitting a request would exceed the in-flight limit (``Settings.inflight_limit``)."""

    http_status = 429

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RequestTooLargeError(RewardError):
    """Raised for a request holding more rollouts than the in-flight limit: retrying cannot help."""

    http_status = 413


class UnauthorizedError(RewardError):
    """Raised when ``RLRF_API_TOKEN`` is set and the request does not carry it."""

    http_status = 401


class NotFoundError(RewardError):
    """Raised for a run or step the dashboard does not hold (never seen, or dropped from its ring)."""

    http_status = 404
