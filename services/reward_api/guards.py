"""Reference-relative structural guards: what a drawing reward must not pay for, whatever its weights.

The render rewards (``pixel_l2``, ``canny_l2``, DreamSim) only see pixels, so code that reproduces the
target's pixels without drawing it wins them: the target's raster redrawn as a grid of cells, the
reference drawn twice over itself, the reference padded with inert content, a pasted raster. Each
guard below compares the candidate's *structure* with the reference SVG's, so a reference that is
itself a grid (pixel art, a QR code, a chequered flag) or that uses many small rects scores its own
copy at the maximum: the candidate is measured against what the reference needs, never against an
absolute idea of a "normal" drawing. A guard that fires makes the rollout ``rejected`` (flag named
after the guard, bounded penalty), exactly as a policy rule does; ``length_collapse`` caps instead.

Guards (``Structure`` of candidate ``c`` and reference ``r``):

* ``pixel_grid``: ``c.tiles > 2·r.tiles + 8``, ``c.primitives > 4·r.primitives + 32`` or
  ``c.lattice > 2·r.lattice + 4``. *Tiles* are the cell-like primitives a grid is made of: rects,
  circles/ellipses, lines, polygons of up to 4 points, and rectilinear path subpaths (only
  axis-aligned segments; one tile per 4 corners, so a traced region outline counts as the cells it
  covers). *Primitives* are all drawn elements plus the extra subpaths of paths, however shaped.
  *Lattice* is the largest number of tiles of one size (rects and 4-corner subpaths by width and
  height, dots by radius): a grid's cells are all alike, so even a coarse grid hidden under a few
  correct shapes shows, where the tile count alone does not.
* ``duplicate_drawing``: ``c.duplicates - r.duplicates >= max(1, r.elements / 4)``, where
  ``duplicates`` counts drawn elements whose attributes (ids and classes aside) repeat an earlier
  element's: the reference drawn over itself pays twice the code for its
  own render.
* ``padding``: ``c.inert > r.inert + L_ref / 4`` (characters): comments, ``<metadata>``, ``<desc>``,
  ``<title>`` and ``<defs>`` children nothing refers to. Padding moves a short drawing past the
  ``length`` component's collapse threshold and costs nothing under profiles without ``length``.
* ``length_collapse``: ``L < L_ref / 2`` (the ``length`` component's own collapse test, tokens when
  sent) and, in characters, ``t = 2·(c.length - c.inert) / (r.length - r.inert) < 1``. Not a
  rejection: the rollout stays ``ok`` but earns no credit for fidelity: every component but
  ``length`` becomes ``lower + t·(min(v, 0) - lower)``, its negative part at half the reference's
  code, falling to its lower bound as the code goes to nothing. The ``length`` component scores a
  collapse -1, but at weight 0.1 that costs at most 0.175 against an honest drawing: keeping the
  big shapes of a detailed reference and dropping its details beat a faithful drawing on 4% of
  svg_dev. Capping keeps the penalty bounded and the signal
  graded (a worse collapse still scores lower), and lets any small drawing still be scored.
* ``embedded_raster``: the candidate holds an ``<image>`` and the reference has none. By default
  (``RLRF_EMBEDDED_RASTER=reject``) the policy already rejects every ``<image>``; with ``allow``, a
  raster is scored only where the reference itself carries one.

With an image reference (PNG/JPEG) there is no reference structure and only ``embedded_raster``
applies (see README: the audit runs on SVG references).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass

from services.reward_api.components.length import char_length

SVG_NS = "http://www.w3.org/2000/svg"
_SHAPES = {"path", "rect", "circle", "ellipse", "line", "polyline", "polygon", "use", "image", "text"}
_TILE_SHAPES = {"rect", "circle", "ellipse", "line"}
_NOT_DRAWN = {"defs", "clipPath", "mask", "symbol", "pattern", "marker", "linearGradient", "radialGradient", "filter"}
_INERT = {"metadata", "desc", "title"}
_IGNORED_ATTRS = {"id", "class"}
_PATH_TOKEN = re.compile(r"[MmZzLlHhVvCcSsQqTtAa]|[-+]?(?:\d*\.\d+|\d+\.?)(?:[eE][-+]?\d+)?")
_NUMBER = re.compile(r"[-+]?(?:\d*\.\d+|\d+\.?)(?:[eE][-+]?\d+)?")
_REF = re.compile(r"url\(\s*['\"]?#([^)'\"\s]+)|href\s*=\s*['\"]#([^'\"]+)")
_SUBPATH = re.compile(r"(?=[Mm])")
_CURVE = re.compile(r"[CcSsQqTtAa]")

# Thresholds of the guards (see the module docstring); named so the README and tests cite them.
GRID_TILE_FACTOR, GRID_TILE_SLACK = 2.0, 8
GRID_PRIMITIVE_FACTOR, GRID_PRIMITIVE_SLACK = 4.0, 32
GRID_LATTICE_FACTOR, GRID_LATTICE_SLACK = 2.0, 4
PADDING_SLACK = 0.25
DUPLICATE_SHARE = 0.25


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
    counts = _Counts()
    _walk(root, counts, referenced, drawn=True)
    return Structure(
        primitives=counts.primitives,
        elements=counts.elements,
        tiles=counts.tiles,
        lattice=max(counts.sizes.values(), default=0),
        duplicates=counts.duplicates,
        inert=counts.inert,
        rasters=counts.rasters,
        length=char_length(svg),
    )


def check(candidate: Structure | None, reference: Structure | None) -> list[str]:
    """The guards ``candidate`` trips against ``reference`` (an empty list: none)."""
    if candidate is None:
        return []
    if reference is None:  # an image reference: nothing structural to compare against
        return []
    fired = []
    c, r = candidate, reference
    if (
        c.tiles > GRID_TILE_FACTOR * r.tiles + GRID_TILE_SLACK
        or c.primitives > GRID_PRIMITIVE_FACTOR * r.primitives + GRID_PRIMITIVE_SLACK
        or c.lattice > GRID_LATTICE_FACTOR * r.lattice + GRID_LATTICE_SLACK
    ):
        fired.append("pixel_grid")
    if c.duplicates - r.duplicates >= max(1.0, DUPLICATE_SHARE * r.elements):
        fired.append("duplicate_drawing")
    if c.inert > r.inert + PADDING_SLACK * r.length:
        fired.append("padding")
    if c.rasters > 0 and r.rasters == 0:
        fired.append("embedded_raster")
    return fired


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
    __slots__ = ("duplicates", "elements", "inert", "primitives", "rasters", "seen", "sizes", "tiles")

    def __init__(self) -> None:
        self.primitives = 0
        self.elements = 0
        self.tiles = 0.0
        self.duplicates = 0
        self.inert = 0
        self.rasters = 0
        self.seen: set[str] = set()
        self.sizes: Counter[tuple[str, float, float]] = Counter()


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _walk(element: ET.Element, counts: _Counts, referenced: set[str], *, drawn: bool) -> None:
    for child in element:
        if child.tag is ET.Comment:
            counts.inert += len(child.text or "") + 7
            continue
        name = _local(child.tag)
        if name in _INERT:
            counts.inert += len(ET.tostring(child, encoding="unicode"))
            continue
        if name == "defs":
            for item in child:
                if item.tag is ET.Comment or item.get("id") not in referenced:
                    counts.inert += len(ET.tostring(item, encoding="unicode"))
            _walk(child, counts, referenced, drawn=False)
            continue
        if name == "image":
            counts.rasters += 1
        if drawn and name in _SHAPES:
            _count_shape(child, name, counts)
        _walk(child, counts, referenced, drawn=drawn and name not in _NOT_DRAWN)


def _count_shape(element: ET.Element, name: str, counts: _Counts) -> None:
    key = name + "|" + "|".join(f"{k}={v}" for k, v in sorted(element.attrib.items()) if k not in _IGNORED_ATTRS)
    counts.elements += 1
    if key in counts.seen:
        counts.duplicates += 1
    counts.seen.add(key)
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
