"""What a failed sandbox task means for its rollout: the SVG's fault (a status) or ours (``error``).

The render pool (``sandbox.py``) reports why an item has no result; this is the one place that
maps the reason to a ``Status``, for the pipeline and ``rlrf eval`` alike.
"""

from __future__ import annotations

from services.reward_api.core.results import Status
from services.reward_api.sandbox import TaskCrash, TaskFailure, TaskTimeout

__all__ = ["failure_status"]

# A renderer that hung or died on an SVG is the SVG's fault; every other task failure is ours.
_RENDER_FAILURES: dict[type[TaskFailure], Status] = {TaskTimeout: Status.render_timeout, TaskCrash: Status.render_crash}


def failure_status(failure: TaskFailure) -> Status:
    """``render_timeout`` / ``render_crash`` (the pool already retried the SVG on a second worker),
    else ``error`` (a stalled or lost worker, a deadline, a closed pool).
    """
    return _RENDER_FAILURES.get(type(failure), Status.error)
