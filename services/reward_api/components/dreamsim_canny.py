"""``dreamsim_canny``: DreamSim on the Canny edge maps (RLRF Im2SVG): structure, not colour.

The edge maps are those of ``canny_l2`` (Canny 100/200, dilated 3x3, Gaussian 13): white edges on
black, repeated on three channels. ``r = clip(1 - 2·d, -1, 1)`` as for ``dreamsim``.
"""

from __future__ import annotations

from services.reward_api.components.base import Sample
from services.reward_api.components.dreamsim import reward

NAME = "dreamsim_canny"
RANGE = (-1.0, 1.0)
STAGE = "model"
FEATURES = ("dreamsim_edges",)
REQUIRES = {"image"}  # the reference's edge map is embedded too


def compute(candidate: Sample, reference: Sample) -> float:
    return reward(candidate.features["dreamsim_edges"], reference.features["dreamsim_edges"])
