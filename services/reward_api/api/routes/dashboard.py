"""``GET /dashboard``: the last scored groups, every rollout's render beside its reward, refreshed live.

The page is one self-contained HTML document (no external scripts or fonts) that polls
``/dashboard/data`` every two seconds. With ``RLRF_API_TOKEN`` set, open ``/dashboard?token=...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from services.reward_api.api.deps import ServiceDep, require_token_or_query

router = APIRouter(tags=["dashboard"], dependencies=[Depends(require_token_or_query)])


@router.get("/dashboard/data")
async def dashboard_data(service: ServiceDep) -> dict[str, Any]:
    """The captured groups, newest first (thumbnails as PNG data URLs)."""
    return {
        "capacity": service.recent.size,
        "interval_s": service.recent.interval_s,
        "groups": service.recent.snapshot(),
    }


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard() -> str:
    """The live page."""
    return _PAGE


_PAGE = (Path(__file__).parent / "dashboard.html").read_text(encoding="utf-8")
