"""Named weight profiles, per-request overrides, step schedules, and the weighted sum.

The total reward of a rollout is ``sum(w_c(step) * r_c)`` over the components that apply to the
request (a component returning ``None``, such as ``length`` without a reference SVG, is left out;
weights are not renormalised). A failed rollout scores every weighted component at its lower bound,
so its penalty is bounded by ``-sum(w_c)`` and never worse than any drawing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.reward_api.components import COMPONENTS
from services.reward_api.core.errors import UnknownProfileError


@dataclass(frozen=True, slots=True)
class Weight:
    """A weight that grows linearly from ``start`` to ``end`` over ``warmup_steps`` training steps."""

    start: float
    end: float | None = None
    warmup_steps: int = 0

    def at(self, step: int | None) -> float:
        """The weight at ``step``; without a step (evaluation, CLI) the starting weight."""
        if self.end is None or self.warmup_steps <= 0 or step is None:
            return self.start
        progress = min(1.0, max(0.0, step / self.warmup_steps))
        return self.start + (self.end - self.start) * progress


PROFILES: dict[str, dict[str, Weight]] = {
    # RLRF Im2SVG without the learned metrics: pixel and edge fidelity, light code-length pressure.
    "rlrf-im2svg": {"pixel_l2": Weight(1.0), "canny_l2": Weight(1.0), "length": Weight(0.1)},
    # The same with the length weight grown from 0.1 to 1.0 over the first 500 steps, as the paper
    # grows it once the drawing rewards have taken hold.
    "rlrf-im2svg-length-warmup": {
        "pixel_l2": Weight(1.0),
        "canny_l2": Weight(1.0),
        "length": Weight(0.1, 1.0, 500),
    },
    # The paper's full Im2SVG reward: the CPU components plus DreamSim on the render and on its
    # edges (needs RLRF_DREAMSIM_DIR).
    "rlrf-im2svg-full": {
        "pixel_l2": Weight(1.0),
        "canny_l2": Weight(1.0),
        "dreamsim": Weight(1.0),
        "dreamsim_canny": Weight(1.0),
        "length": Weight(0.1),
    },
    # Text2SVG: CLIP similarity to the prompt (needs RLRF_CLIP_CHECKPOINT); text is stripped first.
    "rlrf-text2svg": {"clip_text": Weight(1.0)},
    # Text2SVG with the RLRF VLM judge (aesthetics, prompt resemblance, semantics) on top.
    "rlrf-text2svg-judge": {"clip_text": Weight(1.0), "judge": Weight(1.0)},
    # VFig-style Im2SVG: the judge's four-axis rubric, with pixel fidelity as a dense anchor.
    "vfig-im2svg-judge": {"judge": Weight(1.0), "pixel_l2": Weight(0.5)},
    "dreamsim": {"dreamsim": Weight(1.0)},
    "pixel": {"pixel_l2": Weight(1.0)},
    # No "format" profile: it would pay 1 for any SVG that renders, so every valid hack ties an honest
    # drawing. The `format` component stays, as a shaping term added to a drawing profile via `weights`.
}


def resolve_weights(
    profile: str, overrides: Mapping[str, float] | None = None, step: int | None = None
) -> dict[str, float]:
    """Weights for one request: the profile at ``step``, then per-request overrides on top.

    Raises:
        UnknownProfileError: for a profile or component name that does not exist.
    """
    if profile not in PROFILES:
        raise UnknownProfileError(f"unknown profile {profile!r}; known: {', '.join(sorted(PROFILES))}")
    weights = {name: weight.at(step) for name, weight in PROFILES[profile].items()}
    for name, value in (overrides or {}).items():
        if name not in COMPONENTS:
            raise UnknownProfileError(f"unknown component {name!r}; known: {', '.join(sorted(COMPONENTS))}")
        weights[name] = float(value)
    return weights


def combine(components: Mapping[str, float | None], weights: Mapping[str, float]) -> tuple[float, dict[str, float]]:
    """Weighted sum over the applicable components; returns (total, the applicable components)."""
    applied = {name: value for name, value in components.items() if value is not None and name in weights}
    return sum(weights[name] * value for name, value in applied.items()), applied


def failure_components(names: Iterable[str]) -> dict[str, float]:
    """Each named component at its lower bound: the bounded penalty of a failed rollout."""
    return {name: COMPONENTS[name].lower for name in names}
