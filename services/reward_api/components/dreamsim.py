"""``dreamsim``: perceptual similarity of the render to the reference (RLRF Im2SVG).

With d the DreamSim distance (``1 - cos`` of the two DreamSim embeddings), ``r = clip(1 - 2·d, -1, 1)``:
1 for identical images, 0 at d = 0.5, -1 from d = 1 (orthogonal embeddings) on.
"""

from __future__ import annotations

import numpy as np

from services.reward_api.components.base import Sample, cosine

NAME = "dreamsim"
RANGE = (-1.0, 1.0)
STAGE = "model"
FEATURES = ("dreamsim",)
REQUIRES = {"image"}  # the reference's render is embedded too


def compute(candidate: Sample, reference: Sample) -> float:
    return reward(candidate.features["dreamsim"], reference.features["dreamsim"])


def reward(a: np.ndarray, b: np.ndarray) -> float:
    """``clip(1 - 2·d, -1, 1)`` with d = 1 - cos(a, b), the DreamSim distance of two embeddings."""
    distance = 1.0 - cosine(a, b)
    return float(min(1.0, max(-1.0, 1.0 - 2.0 * distance)))
