"""``canny_l2``: structure fidelity on edge maps, forgiving small misalignments.

Edge map = Canny(grey, 100, 200), dilated by a 3x3 kernel (1 iteration), blurred by a 13x13
Gaussian; then exactly as ``pixel_l2``: ``r = clip(1 - MSE(z(edges_c), z(edges_r)), -1, 1)``.
"""

from __future__ import annotations

from services.reward_api.components._canvas import zscored_l2_reward
from services.reward_api.components.base import Sample

NAME = "canny_l2"
RANGE = (-1.0, 1.0)
STAGE = "render"


def compute(candidate: Sample, reference: Sample) -> float:
    assert candidate.canvas is not None and reference.canvas is not None
    c, r = candidate.canvas, reference.canvas
    return zscored_l2_reward(c.edges, c.edge_moments, r.edges, r.edge_moments)
