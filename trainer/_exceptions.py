"""Errors of the reward client.

RewardServiceError          base: the service could not give rewards for a request
├── ServiceUnavailable      connection failures, timeouts, 5xx, 429: retried, then raised
└── RequestRejected         4xx other than 429: the request breaks the contract; never retried
"""

from __future__ import annotations

from functools import partial
from typing import Any


class RewardServiceError(Exception):
    """Base of every error the client raises; httpx errors never leak past the client."""


class ServiceUnavailable(RewardServiceError):
    """Raised when the service stayed unreachable or overloaded through every retry."""


class RequestRejected(RewardServiceError):
    """Raised for a 4xx answer (except 429): fix the request, retrying cannot help."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle as ``cls(*args)``; the keyword-only status must travel too, or a 422
        # raised inside a Ray actor (verl's reward workers) arrives as Ray's UnserializableException.
        return partial(type(self), status_code=self.status_code), self.args, self.__dict__
