"""Reference-relative structural guards: what a drawing reward must not pay for, whatever its weights.

The render rewards (``pixel_l2``, ``canny_l2``, DreamSim) only see pixels, so code that reproduces the
target's pixels without drawing it wins them: the target's raster redrawn as a grid of cells, the
reference drawn twice over itself, the reference padded with inert content, a pasted raster. Each
guard below compares the candidate's *structure* with the reference SVG's, so a reference that is
itself a grid (pixel art, a QR code, a chequered flag) or that uses many small rects scores its own
copy at the maximum: the candidate is measured against what the reference needs, never against an
absolute idea of a "normal" drawing.

A guard never refuses a drawing. An honest drawing of something else can trip one too (a detailed
flag against a plain one has far more tiles), and a ``rejected`` penalty would give every such
rollout of a GRPO group the same reward, with no gradient between them. So a guard that fires
raises its flag, the rollout stays ``ok``, and its *fidelity credit is capped*: each guard gives a
share ``t = allowance / measure`` in (0, 1] (how far the candidate's structure exceeds what the
reference allows; smaller is worse), the shares of every guard that fired multiply into ``t``, and
every component but ``length`` becomes

    ``cap(v) = lower + t·(min(v, 0) - lower)``

(``cap``): its negative part when barely over the allowance, falling to its lower bound as the
violation grows. A capped rollout therefore earns at most 0 from each capped component, so it
cannot beat an honest drawing that earns positive fidelity credit (the audit's 10% corruption does
on every svg_dev reference under ``rlrf-im2svg``), and never less than the failure penalty; a worse
violation or a worse drawing still scores lower.

Guards (``Structure`` of candidate ``c`` and reference ``r``; allowance / measure):

* ``pixel_grid``: ``c.tiles > 2·r.tiles + 8``, ``c.primitives > 4·r.primitives + 32`` or
  ``c.lattice > 2·r.lattice + 4``; ``t`` is the smallest ratio of right side to left side.
  *Tiles* are the cell-like primitives a grid is made of: rects, circles/ellipses, lines, polygons of
  up to 4 points, and rectilinear path subpaths (only axis-aligned segments; one tile per 4 corners,
  so a traced region outline counts as the cells it covers). *Primitives* are all drawn elements
  plus the extra subpaths of paths, however shaped. *Lattice* is the largest number of tiles of one
  size (rects and 4-corner subpaths by width and height, dots by radius): a grid's cells are all
  alike, so even a coarse grid hidden under a few correct shapes shows, where the tile count alone
  does not.
* ``duplicate_drawing``: ``c.duplicates - r.duplicates >= a = max(1, max(r.elements, c.elements) / 4)``,
  ``t = a / (c.duplicates - r.duplicates)``, where ``duplicates`` counts drawn elements that repeat an
  earlier element: the same non-geometric attributes (ids and classes aside) and every geometric
  number (``d``, ``x``, ``points``, ``transform``, ...) within 0.5% of the viewBox side of it. The
  reference drawn over itself, exactly or nudged, pays twice the code for its own render (``t =
  0.5``); an honest drawing with a pair of identical eyes is a small share of its own elements.
* ``padding``: ``c.inert - r.inert > a = L_ref / 4`` (characters), ``t = a / (c.inert - r.inert)``:
  comments, ``<metadata>``, ``<desc>``, ``<title>`` and ``<defs>`` children nothing refers to. Padding
  moves a short drawing past the ``length`` component's collapse threshold and costs nothing under
  profiles without ``length``.
* ``embedded_raster``: the candidate holds an ``<image>`` and the reference has none; ``t = 1 -
  (characters of image data) / c.length``, the share of the code that is not pasted pixels. By
  default (``RLRF_EMBEDDED_RASTER=reject``) the policy already rejects every ``<image>``; with
  ``allow``, a raster is scored in full only where the reference itself carries one.
* ``length_collapse``: ``L < L_ref / 2`` (the ``length`` component's own collapse test, tokens when
  sent) and, in characters, ``t = 2·(c.length - c.inert) / (r.length - r.inert) < 1`` (``collapsed``;
  the pipeline multiplies it into the guards' ``t``). The ``length`` component scores a collapse -1,
  but at weight 0.1 that costs at most 0.175 against an honest drawing: keeping the big shapes of a
  detailed reference and dropping its details beat a faithful drawing on 4% of svg_dev.

With an image reference (PNG/JPEG) there is no reference structure and no guard applies (see
README: the audit runs on SVG references; the policy still rejects ``<image>`` by default).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from services.reward_api.components.length import char_length

SVG_NS = "http://www.w3.org/2000/svg"
_SHAPES = {"path", "rect", "circle", "ellipse", "line", "polyline", "polygon", "use", "image", "text"}
_TILE_SHAPES = {"rect", "circle", "ellipse", "line"}
_NOT_DRAWN = {"defs", "clipPath", "mask", "symbol", "pattern", "marker", "linearGradient", "radialGradient", "filter"}
_INERT = {"metadata", "desc", "title"}
_IGNORED_ATTRS = {"id", "class"}
# Attributes whose numbers are geometry, compared within a tolerance by the duplicate guard; the
# position ones first, so an element's first two numbers place it (see ``_repeats``).
_GEOMETRY = {
    k: i
    for i, k in enumerate(
        ("x", "y", "cx", "cy", "x1", "y1", "d", "points", "x2", "y2", "r", "rx", "ry", "width", "height", "transform")
    )
}
_BIN_LIMIT = 64  # elements compared per neighbouring bin: bounds the cost of pathological documents
_PATH_TOKEN = re.compile(r"[MmZzLlHhVvCcSsQqTtAa]|[-+]?(?:\d*\.\d+|\d+\.?)(?:[eE][-+]?\d+)?")
_NUMBER = re.compile(r"[-+]?(?:\d*\.\d+|\d+\.?)(?:[eE][-+]?\d+)?")
_NUMBER_SPLIT = re.compile(f"({_NUMBER.pattern})")  # one pass: text and numbers, alternating
_REF = re.compile(r"url\(\s*['\"]?#([^)'\"\s]+)|href\s*=\s*['\"]#([^'\"]+)")
_SUBPATH = re.compile(r"(?=[Mm])")
_CURVE = re.compile(r"[CcSsQqTtAa]")

# Thresholds of the guards (see the module docstring); named so the README and tests cite them.
GRID_TILE_FACTOR, GRID_TILE_SLACK = 2.0, 8
GRID_PRIMITIVE_FACTOR, GRID_PRIMITIVE_SLACK = 4.0, 32
GRID_LATTICE_FACTOR, GRID_LATTICE_SLACK = 2.0, 4
PADDING_SLACK = 0.25
DUPLICATE_SHARE = 0.25
DUPLICATE_TOLERANCE = 0.005  # share of the viewBox side within which a repeated shape is a duplicate


@dataclass(frozen=True, slots=True)
class Structure:
    """What the guards compare: counts of an SVG's drawn structure and its inert characters."""

    primitives: int = 0
    elements: int = 0  # drawn shape elements (a path with many subpaths is one)
    tiles: float = 0.0
    lattice: int = 0  # the most tiles of one size (a grid's cells are all alike)
    duplicates: int = 0
    inert: int = 0
    rasters: int = 0
    raster_chars: int = 0  # characters of ``<image>`` data (href values)
    length: int = 0  # ``length.char_length`` of the document


def structure(svg: str) -> Structure | None:
    """The ``Structure`` of an SVG document, or ``None`` when it does not parse (the guards then skip).

    Call it only on documents the policy accepted (no DTD, no entities, bounded size).
    """
    try:
        parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
        root = ET.fromstring(svg, parser=parser)
    except (ET.ParseError, ValueError):
        return None
    referenced = {a or b for a, b in _REF.findall(svg)}
    counts = _Counts(DUPLICATE_TOLERANCE * _side(root))
    _walk(root, counts, referenced, drawn=True)
    return Structure(
        primitives=counts.primitives,
        elements=counts.elements,
        tiles=counts.tiles,
        lattice=max(counts.sizes.values(), default=0),
        duplicates=counts.duplicates,
        inert=counts.inert,
        rasters=counts.rasters,
        raster_chars=counts.raster_chars,
        length=char_length(svg),
    )


def shares(candidate: Structure | None, reference: Structure | None, raised: Sequence[str] = ()) -> dict[str, float]:
    """Each guard ``candidate`` trips against ``reference``, with its credit share ``t`` in [0, 1].

    ``raised``: the rollout's flags so far; ``length_collapse`` (``collapse``) adds the collapse share
    when the code, in characters, is under half the reference's too.

    Returns:
        ``{flag: t}`` in a fixed order (empty: no guard fired); see the module for each ``t``.
    """
    if candidate is None or reference is None:  # unparsed, or an image reference: nothing to compare
        return {}
    fired: dict[str, float] = {}
    c, r = candidate, reference
    grid = [
        (c.tiles, GRID_TILE_FACTOR * r.tiles + GRID_TILE_SLACK),
        (c.primitives, GRID_PRIMITIVE_FACTOR * r.primitives + GRID_PRIMITIVE_SLACK),
        (c.lattice, GRID_LATTICE_FACTOR * r.lattice + GRID_LATTICE_SLACK),
    ]
    over = [allowance / measure for measure, allowance in grid if measure > allowance]
    if over:
        fired["pixel_grid"] = min(over)
    extra, allowed = c.duplicates - r.duplicates, max(1.0, DUPLICATE_SHARE * max(r.elements, c.elements))
    if extra >= allowed:
        fired["duplicate_drawing"] = allowed / extra
    inert, allowed = c.inert - r.inert, PADDING_SLACK * r.length
    if inert > allowed:
        fired["padding"] = allowed / inert if inert > 0 else 0.0
    if c.rasters > 0 and r.rasters == 0:
        fired["embedded_raster"] = max(0.0, 1.0 - c.raster_chars / max(1, c.length))
    if "length_collapse" in raised and (share := collapsed(candidate, reference)) is not None:
        fired["length_collapse"] = share
    return fired


def collapse(length: int | None, reference_length: int | None) -> list[str]:
    """``length_collapse`` under half the reference's length (tokens when sent), whatever the profile weighs."""
    if length is None or reference_length is None or length >= reference_length / 2:
        return []
    return ["length_collapse"]


def check(candidate: Structure | None, reference: Structure | None) -> list[str]:
    """The guards ``candidate`` trips against ``reference`` (an empty list: none)."""
    return list(shares(candidate, reference))


def cap(value: float, lower: float, share: float) -> float:
    """A guarded component: ``lower + t·(min(v, 0) - lower)``, its negative part at ``t = 1``, its lower
    bound at ``t = 0``, so capped credit never exceeds 0 and a worse violation scores lower.

    >>> cap(0.9, -1.0, 0.5), cap(-0.4, -1.0, 1.0), cap(0.9, -1.0, 0.0)
    (-0.5, -0.4, -1.0)
    """
    return lower + share * (min(value, 0.0) - lower)


def combined(fired: dict[str, float]) -> float:
    """The credit share of a rollout that tripped ``fired``: the product of their shares."""
    return math.prod(min(1.0, max(0.0, t)) for t in fired.values())


def collapsed(candidate: Structure | None, reference: Structure | None) -> float | None:
    """The length-collapse test: ``t = 2·(c.chars - c.inert) / (r.chars - r.inert)`` if under 1, else None.

    The pipeline applies it to rollouts whose ``length`` (tokens when sent) is already under half the
    reference's; this second test in characters keeps a clean copy of a reference bloated with
    metadata from being capped. ``t`` (0 for nothing, towards 1 at half the reference) grades the cap.
    """
    if candidate is None or reference is None or reference.length - reference.inert <= 0:
        return None
    t = 2 * (candidate.length - candidate.inert) / (reference.length - reference.inert)
    return max(0.0, t) if t < 1 else None


class _Counts:
    __slots__ = (
        "duplicates",
        "elements",
        "inert",
        "primitives",
        "raster_chars",
        "rasters",
        "seen",
        "sizes",
        "skeletons",
        "tiles",
        "tolerance",
    )

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self.primitives = 0
        self.elements = 0
        self.tiles = 0.0
        self.duplicates = 0
        self.inert = 0
        self.rasters = 0
        self.raster_chars = 0
        # (skeleton, cell of the first two geometric numbers) -> the geometric numbers (as written) seen there
        self.seen: dict[tuple[str, int, int], list[list[str]]] = {}
        self.skeletons: set[str] = set()
        self.sizes: Counter[tuple[str, float, float]] = Counter()


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _size_of(element: ET.Element) -> int:
    """About the characters ``element`` takes in the source, namespace prefixes aside.

    Not ``len(ET.tostring(...))``: that depends on which prefixes the process registered (``ns0:``
    on every tag otherwise), so the same document would count differently in different processes.
    """
    if element.tag is ET.Comment:
        return len(element.text or "") + 7
    name = len(_local(element.tag))
    size = 2 * name + 5 + len(element.text or "")
    size += sum(len(_local(k)) + len(v) + 4 for k, v in element.attrib.items())
    return size + sum(_size_of(child) + len(child.tail or "") for child in element)


def _walk(element: ET.Element, counts: _Counts, referenced: set[str], *, drawn: bool) -> None:
    for child in element:
        if child.tag is ET.Comment:
            counts.inert += len(child.text or "") + 7
            continue
        name = _local(child.tag)
        if name in _INERT:
            counts.inert += _size_of(child)
            continue
        if name == "defs":
            for item in child:
                if item.tag is ET.Comment or item.get("id") not in referenced:
                    counts.inert += _size_of(item)
            _walk(child, counts, referenced, drawn=False)
            continue
        if name == "image":
            counts.rasters += 1
            counts.raster_chars += sum(len(v) for k, v in child.attrib.items() if _local(k) == "href")
        if drawn and name in _SHAPES:
            _count_shape(child, name, counts)
        _walk(child, counts, referenced, drawn=drawn and name not in _NOT_DRAWN)


def _count_shape(element: ET.Element, name: str, counts: _Counts) -> None:
    counts.elements += 1
    if _repeats(element, name, counts):
        counts.duplicates += 1
    if name == "path":
        subpaths, tiles, sizes = _path_shape(element.get("d", ""))
        counts.primitives += max(1, subpaths)
        counts.tiles += tiles
        counts.sizes.update(sizes)
        return
    counts.primitives += 1
    if name in _TILE_SHAPES or (
        name in ("polygon", "polyline") and len(_NUMBER.findall(element.get("points", ""))) <= 8
    ):
        counts.tiles += 1
        size = _size(element, name)
        if size is not None:
            counts.sizes[size] += 1


def _side(root: ET.Element) -> float:
    """The larger side of the root's viewBox (else its width/height; 100 when neither parses)."""
    numbers = _NUMBER.findall(root.get("viewBox", ""))
    if len(numbers) == 4 and max(float(numbers[2]), float(numbers[3])) > 0:
        return max(float(numbers[2]), float(numbers[3]))
    sides = [float(m.group()) for v in (root.get("width"), root.get("height")) if v and (m := _NUMBER.match(v.strip()))]
    return max(sides, default=0.0) or 100.0


def _repeats(element: ET.Element, name: str, counts: _Counts) -> bool:
    """Whether ``element`` repeats an earlier one: same skeleton, every geometric number within tolerance.

    The skeleton is the tag, the non-geometric attributes and the geometric ones with numbers blanked;
    elements are binned by their first two numbers (their position: cells of the tolerance), and only
    the last ``_BIN_LIMIT`` elements of the 3x3 neighbouring cells are compared, so a grid of distinct
    cells costs a few lookups per cell.
    """
    parts, numbers = [name], []
    for k, v in sorted(element.attrib.items(), key=lambda kv: (_GEOMETRY.get(kv[0], -1), kv[0])):
        if k in _IGNORED_ATTRS:
            continue
        if k in _GEOMETRY:
            pieces = _NUMBER_SPLIT.split(v)
            numbers += pieces[1::2]
            parts.append(f"{k}={'#'.join(pieces[0::2])}")
        else:
            parts.append(f"{k}={v}")
    skeleton = "|".join(parts)
    tol = counts.tolerance
    head = (*[float(n) for n in numbers[:2]], 0.0, 0.0)[:2]
    cx, cy = (math.floor(h / tol) if tol > 0 and math.isfinite(h) else 0 for h in head)
    if skeleton not in counts.skeletons:  # nothing earlier to compare with: no need for the numbers' values
        counts.skeletons.add(skeleton)
        counts.seen.setdefault((skeleton, cx, cy), []).append(numbers)
        return False
    geometry = [float(n) for n in numbers]
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for other in counts.seen.get((skeleton, cx + dx, cy + dy), [])[-_BIN_LIMIT:]:
                if all(abs(a - float(b)) <= tol for a, b in zip(geometry, other)):
                    counts.seen.setdefault((skeleton, cx, cy), []).append(numbers)
                    return True
    counts.seen.setdefault((skeleton, cx, cy), []).append(numbers)
    return False


def _size(element: ET.Element, name: str) -> tuple[str, float, float] | None:
    """A tile's size key: what the cells of one grid share."""
    keys = {"rect": ("width", "height"), "circle": ("r", "r"), "ellipse": ("rx", "ry")}.get(name)
    if keys is None:
        return None
    try:
        return (
            "box" if name == "rect" else "dot",
            round(float(element.get(keys[0], "")), 2),
            round(float(element.get(keys[1], "")), 2),
        )
    except ValueError:
        return None


def _path_shape(d: str) -> tuple[int, float, list[tuple[str, float, float]]]:
    """(subpaths, tiles) of a path: a rectilinear subpath counts one tile per 4 corners.

    Subpaths with curves or arcs are never tiles and are not tokenised (the common case is cheap);
    a subpath with an absolute ``L`` after a relative ``m`` that follows a curve is counted as not
    rectilinear (its start point is not tracked), which can only under-count tiles.
    """
    parts = _SUBPATH.split(d)
    subpaths = 0
    tiles = 0.0
    point: tuple[float, float] | None = (0.0, 0.0)
    sizes: list[tuple[str, float, float]] = []
    for part in parts:
        if not part or part[0] not in "Mm":
            continue
        subpaths += 1
        if _CURVE.search(part):
            point = None
            continue
        corners, point, extent = _rectilinear(part, point)
        if corners >= 3:
            tiles += max(1.0, corners / 4)
            if corners <= 4:
                sizes.append(("box", round(extent[0], 2), round(extent[1], 2)))
    return subpaths, tiles, sizes


def _rectilinear(
    part: str, point: tuple[float, float] | None
) -> tuple[int, tuple[float, float] | None, tuple[float, float]]:
    """(segments if every segment is axis-aligned else 0, end point, extent) of a curve-free subpath.

    Stops at the first slanted segment: the end point is then unknown (``None``), which can only make
    a later subpath with an absolute ``L`` after a relative ``m`` count as not rectilinear.
    """
    tokens = _PATH_TOKEN.findall(part)
    command, segments = "", 0
    args: list[float] = []
    x, y = point if point is not None else (0.0, 0.0)
    known = point is not None
    start = (x, y)
    low_x = high_x = x
    low_y = high_y = y
    for token in tokens:
        if token.isalpha():
            command, args = token, []
            if token in "Zz":
                x, y = start
            continue
        args.append(float(token))
        need = 1 if command in "HhVv" else 2
        if len(args) < need:
            continue
        if command in "Mm":
            if command == "M":
                x, y, known = args[0], args[1], True
            else:
                x, y = x + args[0], y + args[1]
            start = (x, y)
            low_x = high_x = x
            low_y = high_y = y
            command = "l" if command == "m" else "L"
        elif command in "Hh":
            x = args[0] if command == "H" else x + args[0]
            segments += 1
        elif command in "Vv":
            y = args[0] if command == "V" else y + args[0]
            segments += 1
        else:
            nx, ny = (args[0], args[1]) if command == "L" else (x + args[0], y + args[1])
            if (command == "L" and not known) or (abs(nx - x) > 1e-9 and abs(ny - y) > 1e-9):
                return 0, None, (0.0, 0.0)  # not a tile; where it ends is not tracked further
            segments += 1
        low_x, high_x, low_y, high_y = min(low_x, x), max(high_x, x), min(low_y, y), max(high_y, y)
        args = []
    extent = (high_x - low_x, high_y - low_y)
    return segments, ((x, y) if known else None), extent
