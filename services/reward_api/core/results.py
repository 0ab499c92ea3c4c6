"""The one result model: CLI, HTTP, workers and the trainer client all speak it.

A rollout either gets a reward (``ok``, or a bounded penalty for a bad drawing) or, when our own
infrastructure failed, ``status="error"`` and ``reward=None``. A broken judge or a lost worker must
never look like a bad drawing to the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
from pydantic import BaseModel, Field


class Status(str, Enum):
    """Outcome of one rollout. Every value but ``error`` carries a reward."""

    ok = "ok"
    no_svg = "no_svg"
    truncated = "truncated"
    parse_error = "parse_error"
    rejected = "rejected"
    render_timeout = "render_timeout"
    render_crash = "render_crash"
    blank = "blank"
    error = "error"

    @property
    def is_failure(self) -> bool:
        """A bad output of the model: scored with the failure penalty."""
        return self not in (Status.ok, Status.error)


class RolloutResult(BaseModel):
    """Score of one completion."""

    reward: float | None = Field(description="Weighted total; null only when status is 'error'.")
    components: dict[str, float] = Field(default_factory=dict, description="Each component's value.")
    status: Status
    flags: list[str] = Field(default_factory=list, description="Policy rules hit and reward-hack guards.")
    detail: str | None = Field(None, description="Human-readable reason for a non-ok status.")


class GroupResult(BaseModel):
    """Scores of one rollout group, in completion order."""

    results: list[RolloutResult]
    timings_ms: dict[str, float] = Field(default_factory=dict)

    @property
    def rewards(self) -> list[float | None]:
        return [r.reward for r in self.results]


@dataclass(frozen=True, slots=True)
class Capture:
    """The renders of a group scored with ``Pipeline.score_group_captured`` (the dashboard, thumbnails,
    the audit's report): the reference canvas and one BGR uint8 image per rollout, ``None`` where
    nothing rendered. Never serialised as it is."""

    reference: np.ndarray | None
    rollouts: list[np.ndarray | None]
