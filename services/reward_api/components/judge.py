"""``judge``: a VLM judge's verdict on the render, in [0, 1] (VFig / RLRF Text2SVG rubrics).

The judge proxy (``services/judge_proxy``) scores the render composited on white against the
reference image and/or prompt with a named, versioned rubric. A judge that fails is never a 0: the
pipeline turns it into status ``error`` and reward null before ``compute`` is reached.
"""

from __future__ import annotations

from services.reward_api.components.base import Sample

NAME = "judge"
RANGE = (0.0, 1.0)
STAGE = "judge"


def compute(candidate: Sample, reference: Sample) -> float | None:
    return candidate.judge
