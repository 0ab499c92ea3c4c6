"""``GET /dashboard``: a training run per step, and the last scored groups with every render; refreshed live.

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


@router.get("/dashboard/runs", dependencies=[Depends(require_token)], responses=error_responses(401))
def dashboard_runs(service: ServiceDep) -> dict[str, Any]:
    """The training runs held (most recently updated first), each with its alerts."""
    runs = service.runs
    return {
        "capacity": runs.max_runs,
        "steps_capacity": runs.max_steps,
        "window_steps": runs.window,
        "thresholds": {"flag": runs.flag_threshold, "error": runs.error_threshold},
        "runs": runs.runs(),
    }


# The run id is a query parameter, not a path segment: a run name may hold "/" (TRL's default run
# names are output directories).
@router.get("/dashboard/run", dependencies=[Depends(require_token)], responses=error_responses(401, 404, 422))
def dashboard_run(service: ServiceDep, run: str) -> dict[str, Any]:
    """One run's per-step aggregates (mean and spread of the total and components, shares, latency)."""
    return service.runs.run(run)


@router.get("/dashboard/step", dependencies=[Depends(require_token)], responses=error_responses(401, 404, 422))
def dashboard_step(service: ServiceDep, run: str, step: int) -> dict[str, Any]:
    """One step's aggregates and its best and worst rollouts' thumbnails beside their references."""
    return service.runs.step(run, step)


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard() -> str:
    """The live page."""
    return _PAGE


_PAGE = (Path(__file__).parent / "dashboard.html").read_text(encoding="utf-8")
