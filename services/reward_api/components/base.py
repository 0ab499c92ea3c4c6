"""What every reward component receives and declares.

A component is a module with ``NAME``, ``RANGE`` (lower, upper), ``STAGE`` and one pure function
``compute(candidate: Sample, reference: Sample) -> float | None``. ``None`` means "does not apply
to this request" (``length`` without a reference SVG); the component is then left out of the sum
rather than scored. Higher is always better.

``STAGE`` says where the inputs come from, and so where ``compute`` runs:

* ``render``: canvases, in the sandboxed render worker (``scoring.score_svg``);
* ``code``: code lengths, in the pipeline;
* ``model``: embeddings of learned models (``FEATURES`` of the candidate, ``REFERENCE_FEATURES``
  of the reference, default the same), computed in batches by ``models.ModelScorer``;
* ``judge``: a VLM judge's verdict, fetched from the judge proxy.

What a component needs and does beyond ``compute`` it declares, so the pipeline never names it:

* ``REQUIRES``: what the reference must carry, or the group is refused (``BadReferenceError``):
  ``"image"`` (a reference SVG or image to render or decode). Default: ``{"image"}`` for the render
  stage, nothing otherwise.
* ``APPLIES_WITH``: what the reference must carry for the component to apply at all; without it the
  component is left out of the sum silently: ``"svg"`` (the reference's code: ``length``),
  ``"prompt"`` (``clip_text``).
* ``STRIPS_TEXT``: a text reward: whenever it is weighted, ``<text>`` is cut from the candidates
  before rendering, or writing the prompt as text would win it.
* ``CAPPED`` (default ``True``): the structural guards cap its credit on a flagged rollout
  (``guards.py``); ``length`` carries its own collapse penalty and is left as it is.

The flags of a scored rollout come from the guards (``guards.py``), whatever the profile weighs:
``length_collapse`` caps credit under ``pixel`` too, which has no ``length`` term.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import numpy as np

from services.reward_api.components._canvas import Canvas

Stage = Literal["render", "code", "model", "judge"]
_EMPTY: Mapping[str, np.ndarray] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Sample:
    """One side of a comparison: whatever of it the components may look at."""

    canvas: Canvas | None = None
    length: int | None = None
    features: Mapping[str, np.ndarray] = field(default_factory=lambda: _EMPTY)
    judge: float | None = None


ComputeFn = Callable[[Sample, Sample], "float | None"]
Requirement = Literal["image", "svg", "prompt"]


@dataclass(frozen=True, slots=True)
class Component:
    """A registered reward component."""

    name: str
    compute: ComputeFn
    lower: float
    upper: float
    stage: Stage
    features: tuple[str, ...] = ()
    reference_features: tuple[str, ...] = ()
    requires: frozenset[Requirement] = frozenset()
    applies_with: frozenset[Requirement] = frozenset()
    strips_text: bool = False
    capped: bool = True

    @property
    def needs_canvas(self) -> bool:
        """Computed in the render worker, next to the canvases."""
        return self.stage == "render"

    def applies(self, available: frozenset[Requirement]) -> bool:
        """Whether it is part of the sum for a reference that carries ``available``."""
        return self.applies_with <= available


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (0 when either is all zeros)."""
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b)) / norm if norm > 0 else 0.0
