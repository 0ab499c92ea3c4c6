"""``pixel_l2``: pixel fidelity, insensitive to global brightness and contrast.

Both images are z-scored (zero mean, unit std over all pixels and channels; a flat image becomes
all zeros), then ``r = clip(1 - MSE, -1, 1)``. For two non-flat images this equals ``2·ρ - 1`` with
ρ their Pearson correlation: 1 for identical images, 0 for a flat candidate, -1 for inverted ones.
"""

from __future__ import annotations

from services.reward_api.components._canvas import zscored_l2_reward
from services.reward_api.components.base import Sample

NAME = "pixel_l2"
RANGE = (-1.0, 1.0)
STAGE = "render"


def compute(candidate: Sample, reference: Sample) -> float:
    assert candidate.canvas is not None and reference.canvas is not None
    c, r = candidate.canvas, reference.canvas
    return zscored_l2_reward(c.image, c.image_moments, r.image, r.image_moments)
