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

    @property
    def needs_canvas(self) -> bool:
        """Computed in the render worker, next to the canvases."""
        return self.stage == "render"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (0 when either is all zeros)."""
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b)) / norm if norm > 0 else 0.0
