"""What every reward component receives and declares.

A component is a module with ``NAME``, ``RANGE`` (lower, upper), ``NEEDS_CANVAS`` and one pure
function ``compute(candidate: Sample, reference: Sample) -> float | None``. ``None`` means "does not
apply to this request" (``length`` without a reference SVG); the component is then left out of the
sum rather than scored. Higher is always better.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.reward_api.components._canvas import Canvas


@dataclass(frozen=True, slots=True)
class Sample:
    """One side of a comparison: its rendered canvas (if any) and its code length (if known)."""

    canvas: Canvas | None = None
    length: int | None = None


ComputeFn = Callable[[Sample, Sample], "float | None"]


@dataclass(frozen=True, slots=True)
class Component:
    """A registered reward component."""

    name: str
    compute: ComputeFn
    lower: float
    upper: float
    needs_canvas: bool
