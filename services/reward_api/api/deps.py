"""Dependencies shared by the routes: the service, and the optional bearer token."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from services.reward_api.api.service import RewardService
from services.reward_api.core.errors import UnauthorizedError


def get_service(request: Request) -> RewardService:
    service: RewardService = request.app.state.service
    return service


def require_token(request: Request) -> None:
    """With ``RLRF_API_TOKEN`` set, every scoring route needs ``Authorization: Bearer <token>``."""
    token = request.app.state.service.settings.api_token
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise UnauthorizedError("missing or wrong bearer token")


ServiceDep = Annotated[RewardService, Depends(get_service)]
