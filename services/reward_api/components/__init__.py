"""Reward components, one module each, all with the signature of ``base.Component.compute``."""

from __future__ import annotations

from services.reward_api.components import canny_l2, format, length, pixel_l2
from services.reward_api.components._canvas import Canvas
from services.reward_api.components.base import Component, Sample

COMPONENTS: dict[str, Component] = {
    module.NAME: Component(module.NAME, module.compute, *module.RANGE, needs_canvas=module.NEEDS_CANVAS)
    for module in (pixel_l2, canny_l2, length, format)
}

__all__ = ["COMPONENTS", "Canvas", "Component", "Sample"]
