"""``GET /dashboard``: the last scored groups, every rollout's render beside its reward, refreshed live.

The page is one self-contained HTML document (no external scripts or fonts, no data) that polls
``/dashboard/data`` every two seconds. With ``RLRF_API_TOKEN`` set, open ``/dashboard#token=...``:
the fragment never leaves the browser, and the page sends the token as a bearer header, so it never
lands in access logs or proxies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from services._http import error_responses
from services.reward_api.api.deps import ServiceDep, require_token

router = APIRouter(tags=["dashboard"])


@router.get("/dashboard/data", dependencies=[Depends(require_token)], responses=error_responses(401))
def dashboard_data(service: ServiceDep) -> dict[str, Any]:
    """The captured groups, newest first (thumbnails as PNG data URLs).

    A plain ``def``: FastAPI runs it, and the serialisation of megabytes of thumbnails, in its
    thread pool rather than on the event loop that admits ``/score`` requests.
    """
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
