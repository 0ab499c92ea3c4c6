"""Judge rubrics: named, versioned templates.

A rubric fixes everything that decides a verdict: the inputs it needs, the instructions, the axes
with their ranges and weights, the JSON schema the judge must answer in, and how axes combine into
one score in [0, 1]. Cached verdicts are keyed by name and version, so any change to a rubric's
wording or axes must bump its version.

    >>> rubric = RUBRICS["vfig-im2svg"]
    >>> rubric.parse('{"presence": 1, "layout": 0.5, "connectivity": 1, "details": 0.5}').score
    0.75
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.judge_proxy.errors import MalformedVerdictError

Part = str | bytes  # text, or PNG bytes of an image on white
_MAX_SCAN_CHARS = 100_000  # a verdict is a few hundred characters; never scan a runaway reply further
_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class Axis:
    """One rated aspect; the judge answers a number in [low, high]."""

    name: str
    description: str
    low: float = 0.0
    high: float = 1.0
    weight: float = 1.0


@dataclass(frozen=True)
class ParsedVerdict:
    """A judge reply read against its rubric: axes in range, combined score, flags."""

    score: float
    axes: dict[str, float]
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rubric:
    """A judge template. ``parts`` builds the user turn, ``parse`` reads the reply."""

    name: str
    version: str
    description: str
    preamble: str  # what the judge is and what it sees; the axis list and answer format are appended
    axes: tuple[Axis, ...]
    needs_reference_image: bool = False
    needs_prompt: bool = False
    schema: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        properties = {
            a.name: {"type": "number", "minimum": a.low, "maximum": a.high, "description": a.description}
            for a in self.axes
        }
        schema = {
            "type": "object",
            "properties": properties,
            "required": [a.name for a in self.axes],
            "additionalProperties": False,
        }
        object.__setattr__(self, "schema", schema)

    @property
    def inputs(self) -> list[str]:
        """Request fields this rubric needs besides ``candidates_b64``."""
        needed = (("reference_image_b64", self.needs_reference_image), ("prompt", self.needs_prompt))
        return [name for name, is_needed in needed if is_needed]

    @property
    def instructions(self) -> str:
        """The system instruction: preamble, one line per axis, and the answer format."""
        lines = [self.preamble.strip(), "", "Rate each axis:"]
        lines += [f"- {a.name} ({_num(a.low)} to {_num(a.high)}): {a.description}" for a in self.axes]
        keys = ", ".join(f'"{a.name}"' for a in self.axes)
        lines += ["", f"Answer with one JSON object with exactly the keys {keys}, each a number. Nothing else."]
        return "\n".join(lines)

    def parts(
        self, *, candidate_png: bytes, reference_png: bytes | None = None, prompt: str | None = None
    ) -> list[Part]:
        """The user turn, labelled so the judge can tell reference from candidate."""
        out: list[Part] = []
        if self.needs_prompt:
            out.append(f"Prompt: {prompt}")
        if self.needs_reference_image and reference_png is not None:
            out += ["Reference image (ground truth):", reference_png]
        out += ["Candidate image (the SVG, rendered on white):", candidate_png, "Rate the candidate."]
        return out

    def combine(self, axes: Mapping[str, float]) -> float:
        """Weighted mean of the axes, each rescaled from [low, high] to [0, 1]."""
        total = sum(a.weight for a in self.axes)
        return round(sum(a.weight * (axes[a.name] - a.low) / (a.high - a.low) for a in self.axes) / total, 6)

    def parse(self, text: str) -> ParsedVerdict:
        """Read a reply: plain JSON, fenced JSON or JSON inside prose; out-of-range numbers are clamped.

        Raises:
            MalformedVerdictError: no JSON object with every axis as a finite number.
        """
        names = {a.name for a in self.axes}
        for obj in _json_objects(text[:_MAX_SCAN_CHARS]):
            if isinstance(obj, list) and len(obj) == 1:
                obj = obj[0]
            if isinstance(obj, dict) and names <= obj.keys():
                return self._read(obj)
        snippet = " ".join(text.split())[:200]
        raise MalformedVerdictError(f"malformed: no JSON object with {sorted(names)} in the reply: {snippet!r}")

    def _read(self, obj: Mapping[str, Any]) -> ParsedVerdict:
        axes: dict[str, float] = {}
        flags: list[str] = []
        for a in self.axes:
            value = _number(obj[a.name])
            if value is None:
                raise MalformedVerdictError(f"malformed: axis {a.name!r} is not a finite number: {obj[a.name]!r}")
            if not a.low <= value <= a.high:
                value = min(max(value, a.low), a.high)
                flags.append(f"clamped:{a.name}")
            axes[a.name] = value
        return ParsedVerdict(score=self.combine(axes), axes=axes, flags=tuple(flags))


def _json_objects(text: str) -> Iterator[Any]:
    """JSON values found in ``text``: the whole text, then fenced blocks, then each ``{`` onwards."""
    for chunk in (text.strip(), *(m.group(1).strip() for m in _FENCE.finditer(text))):
        try:
            yield json.loads(chunk)
        except ValueError:
            pass
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            yield decoder.raw_decode(text, start)[0]
        except ValueError:
            pass
        start = text.find("{", start + 1)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _num(x: float) -> str:
    return f"{x:g}"


VFIG_IM2SVG = Rubric(
    name="vfig-im2svg",
    version="v1",
    description="VFig's judge for Im2SVG: four visual-fidelity axes in [0, 1], 0.25 each.",
    preamble=(
        "You audit the visual fidelity of vectorised figures and diagrams. You see a reference image (the ground "
        "truth) and a candidate image (an SVG rendered on white). Compare only what is visible; ignore code, "
        "resolution and anti-aliasing. 0 means absent or wrong, 1 means it matches the reference."
    ),
    axes=(
        Axis("presence", "every element of the reference (shapes, boxes, labels, text, icons) appears", weight=0.25),
        Axis("layout", "positions, sizes, spacing and alignment match the reference", weight=0.25),
        Axis("connectivity", "arrows and lines join the same elements, in the same direction", weight=0.25),
        Axis(
            "details", "text is legible and correct; arrowheads, dashes, colours and small marks are kept", weight=0.25
        ),
    ),
    needs_reference_image=True,
)

RLRF_TEXT2SVG = Rubric(
    name="rlrf-text2svg",
    version="v1",
    description="RLRF's judge for Text2SVG: aesthetics, resemblance and semantic accuracy on 0-10, equal weights.",
    preamble=(
        "You judge illustrations drawn from a text prompt. You see the prompt and the candidate image (an SVG "
        "rendered on white). 0 is the worst, 10 the best."
    ),
    axes=(
        Axis("aesthetics", "visual quality: clean shapes, coherent colours, balanced composition, no clutter", 0, 10),
        Axis("resemblance", "how recognisably the image depicts what the prompt describes", 0, 10),
        Axis(
            "semantic_accuracy",
            "the objects, attributes (colour, count, position) and relations the prompt states are right",
            0,
            10,
        ),
    ),
    needs_prompt=True,
)

RUBRICS: dict[str, Rubric] = {r.name: r for r in (VFIG_IM2SVG, RLRF_TEXT2SVG)}
