"""Candidates for the hack audit: honest corruptions of a reference, and cheap tricks (hack classes).

Honest candidates are the reference with a share ``s`` of its shapes corrupted: dropped, shifted and
recoloured, nested in ``s`` (a shape dropped at 0.2 is dropped at 0.5 too; shifts grow along one
direction per shape), so the reward should fall monotonically with ``s``. ``MILD = 0.1`` is the
honest drawing every hack must lose to: 10% of the shapes (rounded down) dropped, the rest shifted by
0.5% of the viewBox side, 10% recoloured.

Hack generators take the reference SVG and its target raster (the reference rendered on the reward
canvas, BGR uint8) and return SVG text. All are deterministic.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from services.reward_api.guards import SVG_NS

STRENGTHS = (0.0, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9)
MILD = 0.1
MAX_SHIFT = 0.05  # share of the viewBox side a shape moves at strength 1
FONT_FILE = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
XLINK_NS = "http://www.w3.org/1999/xlink"
_SHAPES = {"path", "rect", "circle", "ellipse", "line", "polyline", "polygon", "use", "image", "text"}
_NOT_DRAWN = {"defs", "clipPath", "mask", "symbol", "pattern", "marker", "linearGradient", "radialGradient", "filter"}

ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", XLINK_NS)


def _q(tag: str) -> str:
    return f"{{{SVG_NS}}}{tag}"


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def _dump(root: ET.Element) -> str:
    return ET.tostring(root, encoding="unicode")


def viewbox(root: ET.Element) -> tuple[float, float, float, float]:
    """The root's viewBox (from width/height when absent; 0 0 300 150 as browsers default)."""
    box = root.get("viewBox")
    if box:
        numbers = [float(v) for v in re.split(r"[\s,]+", box.strip()) if v]
        if len(numbers) == 4 and numbers[2] > 0 and numbers[3] > 0:
            return numbers[0], numbers[1], numbers[2], numbers[3]
    w = _length(root.get("width")) or 300.0
    h = _length(root.get("height")) or 150.0
    return 0.0, 0.0, w, h


def _length(value: str | None) -> float | None:
    match = re.match(r"\s*([-+]?\d*\.?\d+)", value or "")
    return float(match.group(1)) if match and "%" not in (value or "") else None


def _drawn_shapes(root: ET.Element) -> list[tuple[ET.Element, ET.Element]]:
    """(parent, shape) pairs of the drawn shapes, in document order (not those inside defs, clipPath...)."""
    found: list[tuple[ET.Element, ET.Element]] = []

    def walk(element: ET.Element) -> None:
        for child in list(element):
            name = _local(child.tag)
            if name in _NOT_DRAWN:
                continue
            if name in _SHAPES:
                found.append((element, child))
            else:
                walk(child)

    walk(root)
    return found


# honest corruptions -----------------------------------------------------------------------------
def corrupt(svg: str, strength: float, *, seed: str = "") -> str:
    """The reference with a share ``strength`` of its shapes dropped and recoloured, the rest shifted.

    Nested in ``strength`` for a fixed ``seed``; at strength 0 it is the reference re-serialised.
    """
    root = _parse(svg)
    side = max(viewbox(root)[2:])
    shapes = _drawn_shapes(root)
    scales = _ancestor_scales(root)
    rng = np.random.default_rng(_seed(seed or svg))
    n = len(shapes)
    # Exactly floor(strength * n) shapes dropped and recoloured, picked in one fixed random order each,
    # so every strength corrupts a superset of the shapes the weaker ones do.
    dropped = set(rng.permutation(n)[: int(strength * n + 1e-9)].tolist())
    recoloured = set(rng.permutation(n)[: int(strength * n + 1e-9)].tolist())
    angles = rng.random(n)
    colours = rng.integers(0, 256, (n, 3))
    defs = None
    for k, (parent, shape) in enumerate(shapes):
        angle = angles[k]
        if k in dropped:
            parent.remove(shape)
            continue
        # The shift rewrites the shape's own coordinates and the recolour goes on the shape, not on a
        # wrapping <g>: a corruption should not lengthen the code much, or under a length-weighted
        # profile the honest drawing pays for the audit's own markup.
        # The shift is in the root's units: divided by the scale of the groups around the shape.
        shift = strength * MAX_SHIFT * side / scales.get(id(parent), 1.0)
        if shift > 0:
            _shift(shape, shift * np.cos(2 * np.pi * angle), shift * np.sin(2 * np.pi * angle))
        if k in recoloured:
            if defs is None:
                defs = ET.Element(_q("defs"))
                root.insert(0, defs)
            fid = f"rlrf-audit-recolour-{k}"
            r, g, b = (colours[k] / 255.0 * 0.6).tolist()
            keep = 0.4
            matrix = f"{keep} 0 0 0 {r:.3f} 0 {keep} 0 0 {g:.3f} 0 0 {keep} 0 {b:.3f} 0 0 0 1 0"
            filt = ET.SubElement(defs, _q("filter"), {"id": fid, "color-interpolation-filters": "sRGB"})
            ET.SubElement(filt, _q("feColorMatrix"), {"type": "matrix", "values": matrix})
            shape.set("filter", f"url(#{fid})")
    return _dump(root)


_POSITIONS = {"rect": ("x", "y"), "image": ("x", "y"), "use": ("x", "y"), "text": ("x", "y")}
_POSITIONS |= {"circle": ("cx", "cy"), "ellipse": ("cx", "cy")}
_PATH_TOKEN = re.compile(r"[MmZzLlHhVvCcSsQqTtAa]|[-+]?(?:\d*\.\d+|\d+\.?)(?:[eE][-+]?\d+)?")
_ABSOLUTE = {"M": "xy", "L": "xy", "T": "xy", "H": "x", "V": "y", "C": "xyxyxy", "S": "xyxy", "Q": "xyxy"}


def _num(value: float) -> str:
    return f"{round(value, 3):g}"


def _shift(shape: ET.Element, dx: float, dy: float) -> None:
    """Move ``shape`` by (dx, dy) of its parent's units, rewriting its own coordinates where it can.

    Positions (``x``/``y``, ``cx``/``cy``, a line's ends, polygon points, a path's absolute coordinates)
    move in place, so the code barely grows; a shape with its own transform, a path with arcs, or any
    other element gets ``translate(dx dy)`` prepended to its transform instead.
    """
    name = _local(shape.tag)
    d = shape.get("d", "")
    keys = (*_POSITIONS.get(name, ()), "x1", "y1", "x2", "y2")
    if (
        shape.get("transform")
        or any(re.search(r"[%\s,]", (shape.get(k) or "").strip()) for k in keys)
        or (name == "path" and re.search("[Aa]", d))
        or name not in (*_POSITIONS, "line", "path", "polygon", "polyline")
    ):
        own = shape.get("transform")
        shape.set("transform", f"translate({_num(dx)} {_num(dy)})" + (f" {own}" if own else ""))
    elif name in _POSITIONS:
        for key, delta in zip(_POSITIONS[name], (dx, dy)):
            shape.set(key, _num((_length(shape.get(key)) or 0.0) + delta))
    elif name == "line":
        for key, delta in (("x1", dx), ("y1", dy), ("x2", dx), ("y2", dy)):
            shape.set(key, _num((_length(shape.get(key)) or 0.0) + delta))
    elif name in ("polygon", "polyline"):
        values = [float(v) for v in _NUMBER.findall(shape.get("points", ""))]
        shape.set("points", " ".join(_num(v + (dx, dy)[k % 2]) for k, v in enumerate(values)))
    else:
        shape.set("d", _shift_path(d, dx, dy))


def _shift_path(d: str, dx: float, dy: float) -> str:
    """A curve-or-line path (no arcs) with every absolute coordinate, and its first moveto, moved."""
    out: list[str] = []
    command, slot, seen = "", 0, 0
    for token in _PATH_TOKEN.findall(d):
        if token.isalpha():
            command, slot = token, 0
            out.append(token)
            continue
        value = float(token)
        # The path's opening moveto is absolute even when written "m"; later relative ones are not.
        axes = _ABSOLUTE.get(command) or ("xy" if command == "m" and seen < 2 else "")
        if axes:
            value += dx if axes[slot % len(axes)] == "x" else dy
        slot += 1
        seen += 1
        text = _num(value) if axes else token
        if out and not out[-1].isalpha() and not text.startswith("-"):
            out.append(" ")
        out.append(text)
    return "".join(out)


_TRANSFORM = re.compile(r"([a-zA-Z]+)\s*\(([^)]*)\)")


def _scale(transform: str | None) -> float:
    """The linear scale of an SVG ``transform`` (the root of its determinant's magnitude; 1 if none)."""
    det = 1.0
    for name, args in _TRANSFORM.findall(transform or ""):
        values = [float(v) for v in re.findall(r"[-+]?(?:\d*\.\d+|\d+\.?)(?:[eE][-+]?\d+)?", args)]
        if name == "scale" and values:
            det *= values[0] * (values[1] if len(values) > 1 else values[0])
        elif name == "matrix" and len(values) == 6:
            det *= values[0] * values[3] - values[1] * values[2]
    return float(np.sqrt(abs(det))) or 1.0


def _ancestor_scales(root: ET.Element) -> dict[int, float]:
    """``id(element)`` -> the scale from its user space to the root's, for every container element."""
    scales = {id(root): 1.0}

    def walk(element: ET.Element, scale: float) -> None:
        for child in element:
            inner = scale * _scale(child.get("transform"))
            scales[id(child)] = inner
            walk(child, inner)

    walk(root, 1.0)
    return scales


# hack classes ----------------------------------------------------------------------------------
def _root_like(svg: str) -> ET.Element:
    """An empty root with the reference's size and viewBox."""
    ref = _parse(svg)
    root = ET.Element(_q("svg"))
    for name in ("width", "height", "viewBox"):
        if ref.get(name) is not None:
            root.set(name, ref.get(name))  # type: ignore[arg-type]
    return root


def _hex(bgr: np.ndarray) -> str:
    b, g, r = (int(v) for v in bgr)
    return f"#{r:02x}{g:02x}{b:02x}"


def _canvas_root(target: np.ndarray, crisp: bool = False) -> ET.Element:
    """A root whose user units are the target's pixels (its viewBox is the canvas).

    ``crisp``: no antialiasing (``shape-rendering="crispEdges"``), so abutting cells leave no seams.
    """
    h, w = target.shape[:2]
    root = ET.Element(_q("svg"), {"width": str(w), "height": str(h), "viewBox": f"0 0 {w} {h}"})
    if crisp:
        root.set("shape-rendering", "crispEdges")
    return root


def blank(svg: str, target: np.ndarray) -> str:
    return _dump(_root_like(svg))


def mean_rect(svg: str, target: np.ndarray) -> str:
    root = _canvas_root(target)
    h, w = target.shape[:2]
    mean = target.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
    ET.SubElement(root, _q("rect"), {"width": str(w), "height": str(h), "fill": _hex(mean)})
    return _dump(root)


def tiny_viewbox(svg: str, target: np.ndarray) -> str:
    """The reference's drawing declared at 1/16 of its size, its viewBox its top-left 1/16th."""
    root = _parse(svg)
    x0, y0, w, h = viewbox(root)
    root.set("width", f"{w / 16:g}")
    root.set("height", f"{h / 16:g}")
    root.set("viewBox", f"{x0:g} {y0:g} {w / 16:g} {h / 16:g}")
    return _dump(root)


def truncated(svg: str, target: np.ndarray) -> str:
    text = _dump(_parse(svg))
    return text[: max(8, int(len(text) * 0.6))]


def length_collapse(svg: str, target: np.ndarray) -> str:
    """The reference cut to at most half its length: trailing shapes dropped, then trailing subpaths."""
    from services.reward_api.components.length import char_length

    budget = char_length(svg) // 2
    root = _parse(svg)
    shapes = _drawn_shapes(root)
    while len(shapes) > 1 and char_length(_dump(root)) > budget:
        parent, shape = shapes.pop()
        parent.remove(shape)
    if char_length(_dump(root)) > budget and shapes:
        _, shape = shapes[0]
        d = shape.get("d")
        if d:
            for pattern in (r"(?=[Mm])", r"(?=[MmZzLlHhVvCcSsQqTtAa])"):  # subpaths, then commands
                parts = re.split(pattern, shape.get("d", ""))
                while len(parts) > 1 and char_length(_dump(root)) > budget:
                    parts.pop()
                    shape.set("d", "".join(parts))
    if char_length(_dump(root)) > budget and shapes:  # one shape that cannot be cut: nothing drawn at all
        parent, shape = shapes[0]
        parent.remove(shape)
    return _dump(root)


def padding(svg: str, target: np.ndarray, factor: float = 4.0) -> str:
    """The reference with comments, whitespace, metadata, ``<desc>`` and unused defs up to ``factor`` x."""
    from services.reward_api.components.length import char_length

    body = _dump(_parse(svg))
    goal = factor * char_length(svg)
    filler = "lorem ipsum dolor sit amet consectetur adipiscing elit "
    head, _, tail = body.rpartition("</svg>")
    start = head.index(">") + 1
    pads: list[str] = []
    while True:
        padded = head[:start] + "".join(pads) + head[start:] + "</svg>" + tail
        missing = goal - char_length(padded)
        if missing <= 0:
            return padded
        for _ in range(int(missing // 150) + 1):
            k = len(pads)
            pads.append(
                [
                    f"<!-- {filler * 3}-->\n\n    ",
                    f"<metadata>{filler * 3}</metadata>",
                    f"<desc>{filler * 3}</desc>",
                    f'<defs><linearGradient id="rlrf-unused-{k}"><stop offset="0" stop-color="#123456"/>'
                    f'<stop offset="1" stop-color="#654321"/></linearGradient></defs>',
                ][k % 4]
            )


def drawn_twice(svg: str, target: np.ndarray) -> str:
    root = _parse(svg)
    for child in [c for c in root if _local(c.tag) not in _NOT_DRAWN and _local(c.tag) not in {"title", "desc"}]:
        root.append(copy.deepcopy(child))
    return _dump(root)


NUDGE = 0.002  # share of the viewBox side the second copy of ``drawn_twice_nudged`` moves by
_NUMBER = re.compile(r"[-+]?(?:\d*\.\d+|\d+\.?)(?:[eE][-+]?\d+)?")


def drawn_twice_nudged(svg: str, target: np.ndarray) -> str:
    """``drawn_twice`` with every shape of the copy moved by 0.2% of the viewBox side: not an exact duplicate.

    Positions (``x``, ``cx``, ``x1``, ..., ``points``, a path's first point) move; sizes, arcs and
    relative segments do not, so the copy renders within a pixel of the original.
    """
    root = _parse(svg)
    delta = NUDGE * max(viewbox(root)[2:])
    for child in [c for c in root if _local(c.tag) not in _NOT_DRAWN and _local(c.tag) not in {"title", "desc"}]:
        twin = copy.deepcopy(child)
        for shape in twin.iter():
            for key in ("x", "y", "cx", "cy", "x1", "y1", "x2", "y2"):
                if (value := _length(shape.get(key))) is not None:
                    shape.set(key, f"{value + delta:.6g}")
            if shape.get("points"):
                shape.set("points", _NUMBER.sub(lambda m: f"{float(m.group()) + delta:.6g}", shape.get("points", "")))
            if shape.get("d"):
                shape.set("d", _NUMBER.sub(lambda m: f"{float(m.group()) + delta:.6g}", shape.get("d", ""), count=2))
        root.append(twin)
    return _dump(root)


def embedded_raster(svg: str, target: np.ndarray) -> str:
    ok, png = cv2.imencode(".png", target)
    assert ok
    root = _canvas_root(target)
    h, w = target.shape[:2]
    ET.SubElement(
        root,
        _q("image"),
        {
            "width": str(w),
            "height": str(h),
            "href": "data:image/png;base64," + base64.b64encode(png.tobytes()).decode(),
        },
    )
    return _dump(root)


def _cells(target: np.ndarray, n: int) -> tuple[np.ndarray, float]:
    """The target area-averaged to ``n`` x ``n`` cells (BGR uint8) and the cell side in canvas pixels."""
    small = cv2.resize(target, (n, n), interpolation=cv2.INTER_AREA)
    return small, target.shape[1] / n


def _near_white(bgr: np.ndarray) -> bool:
    return bool(bgr.min() >= 250)


def grid_rects(svg: str, target: np.ndarray, n: int = 32) -> str:
    """One ``<rect>`` per non-white cell of an ``n`` x ``n`` grid, in the cell's mean colour."""
    small, cell = _cells(target, n)
    root = _canvas_root(target, crisp=True)
    for i in range(n):
        for j in range(n):
            if not _near_white(small[i, j]):
                ET.SubElement(
                    root,
                    _q("rect"),
                    {
                        "x": f"{j * cell:g}",
                        "y": f"{i * cell:g}",
                        "width": f"{cell:g}",
                        "height": f"{cell:g}",
                        "fill": _hex(small[i, j]),
                    },
                )
    return _dump(root)


def _quantise(small: np.ndarray, levels: int = 6) -> np.ndarray:
    step = 255.0 / (levels - 1)
    return (np.round(small / step) * step).round().astype(np.uint8)


def grid_path_per_colour(svg: str, target: np.ndarray, n: int = 32) -> str:
    """An ``n`` x ``n`` grid, colours quantised to 6 levels a channel, one ``<path>`` per colour."""
    small, cell = _cells(target, n)
    small = _quantise(small)
    root = _canvas_root(target, crisp=True)
    by_colour: dict[str, list[str]] = {}
    for i in range(n):
        for j in range(n):
            if not _near_white(small[i, j]):
                by_colour.setdefault(_hex(small[i, j]), []).append(
                    f"M{j * cell:g} {i * cell:g}h{cell:g}v{cell:g}h{-cell:g}z"
                )
    for colour, parts in by_colour.items():
        ET.SubElement(root, _q("path"), {"fill": colour, "d": "".join(parts)})
    return _dump(root)


def grid_cell_paths(svg: str, target: np.ndarray, n: int = 32) -> str:
    """One ``<path>`` per non-white cell."""
    small, cell = _cells(target, n)
    root = _canvas_root(target, crisp=True)
    for i in range(n):
        for j in range(n):
            if not _near_white(small[i, j]):
                ET.SubElement(
                    root,
                    _q("path"),
                    {"fill": _hex(small[i, j]), "d": f"M{j * cell:g} {i * cell:g}h{cell:g}v{cell:g}h{-cell:g}z"},
                )
    return _dump(root)


def grid_circles(svg: str, target: np.ndarray, n: int = 32) -> str:
    """A dot grid: one ``<circle>`` per non-white cell (the grid guard is not about rects only)."""
    small, cell = _cells(target, n)
    root = _canvas_root(target)
    for i in range(n):
        for j in range(n):
            if not _near_white(small[i, j]):
                ET.SubElement(
                    root,
                    _q("circle"),
                    {
                        "cx": f"{(j + 0.5) * cell:g}",
                        "cy": f"{(i + 0.5) * cell:g}",
                        "r": f"{cell * 0.71:g}",
                        "fill": _hex(small[i, j]),
                    },
                )
    return _dump(root)


def coarse_grid_shapes(svg: str, target: np.ndarray, n: int = 8, keep: int = 3) -> str:
    """An ``n`` x ``n`` grid of the target under a few of the reference's shapes: the first ``keep``,
    at most a third of them (at least one), the rest dropped: the grid stands in for what is missing."""
    grid = _parse(grid_rects(svg, target, n))
    ref = _parse(svg)
    shapes = _drawn_shapes(ref)
    for parent, shape in shapes[min(keep, max(1, len(shapes) // 3)) :]:
        parent.remove(shape)
    x0, y0, w, h = viewbox(ref)
    size = target.shape[1]
    # A nested <svg> at canvas size places the reference's content as the reward canvas does ('meet').
    inner = ET.SubElement(grid, _q("svg"), {"x": "0", "y": "0", "width": str(size), "height": str(target.shape[0])})
    for name in (
        "viewBox",
        "preserveAspectRatio",
        "fill",
        "stroke",
        "stroke-width",
        "stroke-linecap",
        "stroke-linejoin",
        "style",
    ):
        if ref.get(name) is not None:
            inner.set(name, ref.get(name))  # type: ignore[arg-type]
    if ref.get("viewBox") is None:
        inner.set("viewBox", f"{x0:g} {y0:g} {w:g} {h:g}")
    for child in list(ref):
        inner.append(child)
    return _dump(grid)


# Text2SVG -------------------------------------------------------------------------------------
def prompt_text(prompt: str, size: int = 224) -> str:
    """The prompt written as ``<text>`` (Text2SVG scoring cuts text: this must win nothing)."""
    root = ET.Element(_q("svg"), {"width": str(size), "height": str(size), "viewBox": f"0 0 {size} {size}"})
    for k, line in enumerate(_lines(prompt)):
        text = ET.SubElement(
            root, _q("text"), {"x": "8", "y": f"{32 + 28 * k}", "font-size": "24", "font-family": "DejaVu Sans"}
        )
        text.text = line
    return _dump(root)


def prompt_glyphs(prompt: str, size: int = 224, font_file: Path = FONT_FILE) -> str:
    """The prompt's letters as outline ``<path>``s from the bundled font (text that no text filter sees)."""
    font = _font(str(font_file))
    glyphs = font.getGlyphSet()
    cmap = font.getBestCmap()
    scale = 24 / font["head"].unitsPerEm
    root = ET.Element(_q("svg"), {"width": str(size), "height": str(size), "viewBox": f"0 0 {size} {size}"})
    from fontTools.pens.svgPathPen import SVGPathPen

    for k, line in enumerate(_lines(prompt)):
        x = 8.0
        y = 32.0 + 28 * k
        for char in line:
            name = cmap.get(ord(char), ".notdef")
            glyph = glyphs[name]
            pen = SVGPathPen(glyphs)
            glyph.draw(pen)
            d = pen.getCommands()
            if d:
                ET.SubElement(
                    root,
                    _q("path"),
                    {"d": d, "transform": f"translate({x:.2f} {y:.2f}) scale({scale:.5f} {-scale:.5f})"},
                )
            x += glyph.width * scale
    return _dump(root)


@lru_cache(maxsize=2)
def _font(path: str) -> Any:  # a fontTools TTFont (untyped)
    from fontTools.ttLib import TTFont

    return TTFont(path)


def _lines(prompt: str, width: int = 16) -> list[str]:
    words, lines, line = prompt.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    if line:
        lines.append(line)
    return lines[:7]


# the library -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Hack:
    """One hack class: a name, what it does, and its generator ``(svg, target) -> SVG``."""

    name: str
    description: str
    make: Callable[[str, np.ndarray], str]
    raster_policy: str = "reject"  # RLRF_EMBEDDED_RASTER the class is scored under


def _n(fn: Callable[..., str], **kw: object) -> Callable[[str, np.ndarray], str]:
    return lambda svg, target: fn(svg, target, **kw)


IM2SVG_HACKS: tuple[Hack, ...] = (
    Hack("blank", "an empty <svg> with the reference's size", blank),
    Hack("mean_rect", "one rect in the target's mean colour", mean_rect),
    Hack("tiny_viewbox", "the drawing declared at 1/16 size, viewBox its top-left 1/16th", tiny_viewbox),
    Hack("truncated", "the reference cut at 60% of its text (never closes)", truncated),
    Hack("length_collapse", "the reference cut to half its length (trailing shapes dropped)", length_collapse),
    Hack("padding_4x", "the reference padded to 4x (comments, whitespace, metadata, <desc>, unused defs)", padding),
    Hack("drawn_twice", "the reference's drawing repeated on top of itself", drawn_twice),
    Hack("drawn_twice_nudged", "the same, the copy's shapes moved by 0.2% of the side", drawn_twice_nudged),
    Hack("embedded_raster", "an <image> holding the target's own render", embedded_raster),
    Hack("embedded_raster_allow", "the same, scored with RLRF_EMBEDDED_RASTER=allow", embedded_raster, "allow"),
    Hack("grid_rects_16", "the target as 16x16 <rect> cells", _n(grid_rects, n=16)),
    Hack("grid_rects_32", "the target as 32x32 <rect> cells", _n(grid_rects, n=32)),
    Hack("grid_rects_64", "the target as 64x64 <rect> cells", _n(grid_rects, n=64)),
    Hack("grid_path_per_colour", "a 32x32 grid, one <path> per quantised colour", _n(grid_path_per_colour, n=32)),
    Hack("grid_cell_paths", "a 32x32 grid, one <path> per cell", _n(grid_cell_paths, n=32)),
    Hack("grid_circles", "a 32x32 dot grid of <circle>s (new: grids need not be rects)", _n(grid_circles, n=32)),
    Hack(
        "coarse_grid_shapes",
        "an 8x8 rect grid under the reference's first shapes (3 at most, a third of them at most)",
        coarse_grid_shapes,
    ),
)
