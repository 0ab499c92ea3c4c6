"""Deterministic text-level perturbations of an SVG: stand-ins for the candidates of a rollout group.

Every operation edits the SVG *string* (no DOM round trip, so the untouched parts stay byte-for-byte
what the author wrote) and the result is checked to be well-formed XML; an operation that does not
apply to a document (nothing to recolour, fewer than two shapes to drop from, no closing ``</svg>``)
falls back to the next one in ``KINDS``.

    >>> group = make_group(svg, 8, seed=0, name="twemoji__1f600.svg")   # doctest: +SKIP
    >>> group[0] == svg                                                 # the reference itself
    True

Kinds: ``translate`` / ``rotate`` / ``scale`` (the root's children wrapped in a transformed ``<g>``),
``recolour`` (paint colours remapped), ``drop`` (20-50% of the shapes removed), ``rect`` (a random
rectangle drawn on top) and ``combo`` (a geometric kind, then ``recolour``).
"""

from __future__ import annotations

import random
import re
import xml.parsers.expat
from collections.abc import Callable

KINDS = ("translate", "rotate", "scale", "recolour", "drop", "rect", "combo")

_ROOT_START = re.compile(r"<svg(?=[\s>/])")
_ROOT_END = "</svg>"
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_VIEWBOX = re.compile(
    rf"\bviewBox\s*=\s*[\"']\s*({_NUMBER})[\s,]+({_NUMBER})[\s,]+({_NUMBER})[\s,]+({_NUMBER})\s*[\"']"
)
_WIDTH = re.compile(rf"\swidth\s*=\s*[\"']\s*({_NUMBER})\s*(?:px)?\s*[\"']")
_HEIGHT = re.compile(rf"\sheight\s*=\s*[\"']\s*({_NUMBER})\s*(?:px)?\s*[\"']")
# A paint value in an attribute (fill="#f00") or in CSS (fill:#f00), in either quote style.
_PAINT = re.compile(
    r"(\b(?:fill|stroke|stop-color|color)\s*(?:=\s*[\"']|:)\s*)(#[0-9a-fA-F]{6}\b|#[0-9a-fA-F]{3}\b|currentColor\b|black\b)"
)
# A self-closing shape element; attribute values may hold '>' so quoted strings are skipped whole.
_SHAPE = re.compile(r"<(?:path|circle|ellipse|rect|polygon|polyline|line)\b(?:[^>\"']|\"[^\"]*\"|'[^']*')*/>")


def make_group(svg: str, size: int, *, seed: int, name: str) -> list[str]:
    """The reference followed by ``size - 1`` perturbed copies, the same for the same (seed, name)."""
    rng = random.Random(f"{seed}|{name}")  # str seeds hash with SHA-512: stable across runs
    kinds = list(KINDS)
    rng.shuffle(kinds)
    return [svg] + [perturb(svg, kinds[i % len(kinds)], rng) for i in range(size - 1)]


def perturb(svg: str, kind: str, rng: random.Random) -> str:
    """Apply ``kind`` (or, where it does not apply, the kinds after it) to ``svg``."""
    start = KINDS.index(kind)
    for candidate in KINDS[start:] + KINDS[:start]:
        out = _OPS[candidate](svg, rng)
        if out is not None and out != svg and _well_formed(out):
            return out
    return svg + "<!-- unperturbed -->"  # nothing applied: an identical drawing, different text


# geometry --------------------------------------------------------------------------------------
def _root(svg: str) -> tuple[int, int, int] | None:
    """(start of the root tag, end of the root start tag, start of the closing tag) or None."""
    match = _ROOT_START.search(svg)
    close = svg.rfind(_ROOT_END)
    if match is None or close < 0:
        return None
    quote = ""
    for i in range(match.start(), len(svg)):
        ch = svg[i]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == ">":
            if svg[i - 1] == "/" or i + 1 > close:  # self-closing root: no children to wrap
                return None
            return match.start(), i + 1, close
    return None


def _box(tag: str) -> tuple[float, float, float, float]:
    """The user-space box (x, y, w, h) of the root: its viewBox, else width/height, else 100x100."""
    viewbox = _VIEWBOX.search(tag)
    if viewbox:
        x, y, w, h = (float(v) for v in viewbox.groups())
        if w > 0 and h > 0:
            return x, y, w, h
    width, height = _WIDTH.search(tag), _HEIGHT.search(tag)
    w = float(width.group(1)) if width else 100.0
    h = float(height.group(1)) if height else 100.0
    return 0.0, 0.0, (w if w > 0 else 100.0), (h if h > 0 else 100.0)


def _wrap(svg: str, attrs: str) -> str | None:
    """Wrap every child of the root in ``<g {attrs}>``."""
    root = _root(svg)
    if root is None:
        return None
    _, body, close = root
    return f"{svg[:body]}<g {attrs}>{svg[body:close]}</g>{svg[close:]}"


def _root_box(svg: str) -> tuple[float, float, float, float] | None:
    root = _root(svg)
    return None if root is None else _box(svg[root[0] : root[1]])


def _translate(svg: str, rng: random.Random) -> str | None:
    box = _root_box(svg)
    if box is None:
        return None
    _, _, w, h = box
    dx = rng.choice((-1, 1)) * rng.uniform(0.03, 0.15) * w
    dy = rng.choice((-1, 1)) * rng.uniform(0.03, 0.15) * h
    return _wrap(svg, f'transform="translate({dx:.3g} {dy:.3g})"')


def _rotate(svg: str, rng: random.Random) -> str | None:
    box = _root_box(svg)
    if box is None:
        return None
    x, y, w, h = box
    angle = rng.choice((-1, 1)) * rng.uniform(5, 45)
    return _wrap(svg, f'transform="rotate({angle:.3g} {x + w / 2:.4g} {y + h / 2:.4g})"')


def _scale(svg: str, rng: random.Random) -> str | None:
    box = _root_box(svg)
    if box is None:
        return None
    x, y, w, h = box
    s = rng.uniform(0.6, 0.95) if rng.random() < 0.5 else rng.uniform(1.05, 1.3)
    cx, cy = x + w / 2, y + h / 2
    return _wrap(svg, f'transform="translate({cx:.4g} {cy:.4g}) scale({s:.3g}) translate({-cx:.4g} {-cy:.4g})"')


# appearance and content --------------------------------------------------------------------------
def _colour(rng: random.Random) -> str:
    return f"#{rng.randrange(0x1000000):06x}"


def _recolour(svg: str, rng: random.Random) -> str | None:
    """Map each distinct paint colour to a random one (each kept with probability 1/3)."""
    found = sorted({m.group(2).lower() for m in _PAINT.finditer(svg)})
    mapping = {old: _colour(rng) for old in found if rng.random() >= 1 / 3}
    if found and not mapping:
        mapping[found[rng.randrange(len(found))]] = _colour(rng)
    if mapping:
        return _PAINT.sub(lambda m: m.group(1) + mapping.get(m.group(2).lower(), m.group(2)), svg)
    return _wrap(svg, f'fill="{_colour(rng)}"')  # only default (black) paint: give it a colour


def _drop(svg: str, rng: random.Random) -> str | None:
    """Remove 20-50% of the self-closing shapes (at least one, never all)."""
    shapes = list(_SHAPE.finditer(svg))
    if len(shapes) < 2:
        return None
    count = min(len(shapes) - 1, max(1, round(rng.uniform(0.2, 0.5) * len(shapes))))
    doomed = sorted(rng.sample(range(len(shapes)), count))
    out, last = [], 0
    for i in doomed:
        out.append(svg[last : shapes[i].start()])
        last = shapes[i].end()
    out.append(svg[last:])
    return "".join(out)


def _rect(svg: str, rng: random.Random) -> str | None:
    root = _root(svg)
    if root is None:
        return None
    x, y, w, h = _box(svg[root[0] : root[1]])
    rw, rh = rng.uniform(0.1, 0.4) * w, rng.uniform(0.1, 0.4) * h
    rx, ry = x + rng.uniform(0, w - rw), y + rng.uniform(0, h - rh)
    rect = f'<rect x="{rx:.4g}" y="{ry:.4g}" width="{rw:.4g}" height="{rh:.4g}" fill="{_colour(rng)}"/>'
    return svg[: root[2]] + rect + svg[root[2] :]


def _combo(svg: str, rng: random.Random) -> str | None:
    moved = (_translate, _rotate, _scale)[rng.randrange(3)](svg, rng)
    return None if moved is None else _recolour(moved, rng)


_OPS: dict[str, Callable[[str, random.Random], str | None]] = {
    "translate": _translate,
    "rotate": _rotate,
    "scale": _scale,
    "recolour": _recolour,
    "drop": _drop,
    "rect": _rect,
    "combo": _combo,
}


def _well_formed(svg: str) -> bool:
    parser = xml.parsers.expat.ParserCreate("utf-8")
    try:
        parser.Parse(svg.encode("utf-8"), True)
    except xml.parsers.expat.ExpatError:
        return False
    return True
