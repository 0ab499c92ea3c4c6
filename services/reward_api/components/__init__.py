"""Reward components, one module each, all with the signature of ``base.Component.compute``."""

from __future__ import annotations

from types import ModuleType

from services.reward_api.components import (
    canny_l2,
    clip_text,
    dreamsim,
    dreamsim_canny,
    format,
    judge,
    length,
    pixel_l2,
)
from services.reward_api.components._canvas import Canvas
from services.reward_api.components.base import Component, Requirement, Sample


def _register(module: ModuleType) -> Component:
    """A component from its module's declarations (``base.py`` says what each means)."""
    reference_features = getattr(module, "REFERENCE_FEATURES", getattr(module, "FEATURES", ()))
    default: frozenset[Requirement] = frozenset({"image"}) if module.STAGE == "render" else frozenset()
    return Component(
        module.NAME,
        module.compute,
        lower=module.RANGE[0],
        upper=module.RANGE[1],
        stage=module.STAGE,
        features=getattr(module, "FEATURES", ()),
        reference_features=reference_features,
        requires=frozenset(getattr(module, "REQUIRES", default)),
        applies_with=frozenset(getattr(module, "APPLIES_WITH", ())),
        strips_text=getattr(module, "STRIPS_TEXT", False),
        capped=getattr(module, "CAPPED", True),
    )


COMPONENTS: dict[str, Component] = {
    module.NAME: _register(module)
    for module in (pixel_l2, canny_l2, length, format, dreamsim, dreamsim_canny, clip_text, judge)
}

__all__ = ["COMPONENTS", "Canvas", "Component", "Sample"]
