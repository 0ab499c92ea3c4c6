"""``format``: 1 for an SVG that passed the policy and rendered, -1 otherwise.

Failed rollouts never reach ``compute``: the pipeline scores every component of a failure at its
lower bound, so ``format`` is -1 exactly when the status is not ``ok``.
"""

from __future__ import annotations

from services.reward_api.components.base import Sample

NAME = "format"
RANGE = (-1.0, 1.0)
STAGE = "render"
REQUIRES: set[str] = set()  # needs only the candidate's render


def compute(candidate: Sample, reference: Sample) -> float:
    return 1.0 if candidate.canvas is not None else -1.0
