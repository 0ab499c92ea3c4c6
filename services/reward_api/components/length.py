"""``length``: code efficiency against the reference SVG, with a length-collapse guard.

With L the candidate's length and L_ref the reference's:

* ``r = -1`` when ``L < L_ref / 2`` (collapse: a tiny SVG that draws little must not win),
* else ``r = clip(1 - ((L - L_ref/2) / L_ref)^2, -1, 1)``: 1 at half the reference, 0.75 at equal
  length, 0 at 1.5x, -1 from ~1.91x on.

Lengths are token counts when the caller sends them; otherwise a character proxy (the SVG's
characters after collapsing whitespace runs). Only the ratio L/L_ref matters, so any proxy
proportional to tokens gives the same reward. Without a reference SVG it does not apply.
"""

from __future__ import annotations

from services.reward_api.components.base import Sample

NAME = "length"
RANGE = (-1.0, 1.0)
STAGE = "code"
APPLIES_WITH = {"svg"}  # the reference's code
CAPPED = False  # its own collapse penalty; the guards cap the fidelity components only


def compute(candidate: Sample, reference: Sample) -> float | None:
    if reference.length is None or candidate.length is None or reference.length <= 0:
        return None
    length, ref = candidate.length, reference.length
    if length < ref / 2:
        return -1.0
    return float(min(1.0, max(-1.0, 1.0 - ((length - ref / 2) / ref) ** 2)))


def char_length(svg: str) -> int:
    """The documented character proxy for a token count: characters after collapsing whitespace."""
    return len(" ".join(svg.split()))
