"""Policy check and canvas normalisation, before any renderer sees untrusted SVG code.

A model's output is untrusted code. Renderers will happily read local files (resvg resolves
``<image href="/etc/...">``), fetch URLs (cairosvg follows ``xml-stylesheet`` and external
``url()``), expand entities and recurse. Rather than trust each renderer's defaults, one streaming
expat pass rejects every construct that can reach outside the document or blow up, and the same
pass collects what the reward guards need (text elements, embedded rasters, intrinsic size).

Rejected (status ``rejected``, flag = the rule): ``doctype``/``entity`` declarations,
``processing_instruction`` (``xml-stylesheet``), ``xinclude``, ``script``, ``foreign_object``,
``external_href`` (an href that is not ``#id`` or an allowed ``data:`` URI, on any element but the
``<a>`` hyperlink: a link is never fetched), ``data_uri`` (not base64 raster or SVG, or over
``max_data_uri_bytes``), ``raster_too_large`` (decoded size over ``max_raster_pixels``: PNG bombs),
``css_import``, ``external_url`` (``url()`` not to ``#id``), ``css_escape`` (backslashes in CSS
could spell either of those), ``too_large``, ``too_many_elements``, ``too_deep``,
``text_in_image`` (text inside an embedded SVG when text must be cut), and ``embedded_raster``
when the settings say so. Undecodable bytes and malformed XML are ``parse_error``.

Embedded images: a raster ``data:`` URI (PNG/JPEG/GIF/WebP, recognised by its bytes, so a missing
MIME type is fine) is an embedded raster. An ``<image>`` holding an SVG ``data:`` URI is a vector
image: its document passes this same policy recursively (``max_nested_svg`` levels, sharing the
element budget), and any raster or text inside it counts as the outer document's.

The accepted document is re-emitted with its root start tag rewritten: ``width``/``height`` set to
the document's own viewport (its intrinsic size, scaled to fit the canvas with its aspect ratio
kept), a ``viewBox`` derived from the old size if it had none, and missing ``xmlns`` declarations
added. The renderer draws that viewport, so the document's ``preserveAspectRatio`` (``slice``
included) applies as it would standalone and nothing outside the viewport shows, and
centres it on the canvas. Every candidate therefore fills the reference canvas as far as its
aspect ratio allows, whatever its own size claims (the RLRF fix for the tiny-viewBox hack), and a
renderer never allocates a 1e8-pixel surface because a model asked for one.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import urllib.parse
import xml.parsers.expat
from collections.abc import Callable
from dataclasses import dataclass, field

from services.reward_api.core.results import Status

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
_TEXT_TAGS = frozenset({"text", "tspan", "textPath"})
_FORBIDDEN_TAGS = {"script": "script", "foreignObject": "foreign_object", "include": "xinclude"}
_URL = re.compile(r"url\(\s*(['\"]?)(.*?)\1\s*\)", re.S)
_RASTER_MIME = frozenset({"", "image/png", "image/jpeg", "image/jpg", "image/gif", "image/webp"})
_RASTER_FORMATS = frozenset({"PNG", "JPEG", "GIF", "WEBP"})
SVG_MIME = "image/svg+xml"
_LENGTH = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(px|pt|pc|mm|cm|in)?\s*$")
_UNIT_PX = {None: 1.0, "px": 1.0, "pt": 4 / 3, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0}
_DEFAULT_SIZE = 100.0  # usvg's fallback for a root with neither size nor viewBox (and no measurable content)


@dataclass(frozen=True, slots=True)
class PolicyLimits:
    """The caps a document is checked against (a picklable slice of the settings)."""

    max_svg_bytes: int = 256 * 1024
    max_elements: int = 10_000
    max_depth: int = 64
    max_data_uri_bytes: int = 512 * 1024
    max_raster_pixels: int = 2048 * 2048
    reject_embedded_raster: bool = True
    max_nested_svg: int = 2  # levels of SVG images inside SVG images (resvg draws one)


@dataclass(slots=True)
class CheckedSvg:
    """Outcome of the policy check: a status, flags, and the normalised document if accepted."""

    status: Status
    flags: list[str] = field(default_factory=list)
    detail: str | None = None
    document: str | None = None
    intrinsic_size: tuple[float, float] = (_DEFAULT_SIZE, _DEFAULT_SIZE)
    has_text: bool = False
    has_raster: bool = False
    viewport: tuple[int, int] = (0, 0)  # the pixel size the root was given (fits the canvas)


class _Reject(Exception):
    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule


def check_svg(
    svg: str | bytes,
    *,
    width: int,
    height: int,
    limits: PolicyLimits = PolicyLimits(),
    font_family: str | None = None,
    strip_text: bool = False,
    measure: Callable[[str], tuple[float, float]] | None = None,
) -> CheckedSvg:
    """Check an SVG against the policy and normalise it onto a ``width`` x ``height`` canvas.

    Args:
        svg: the extracted SVG, as text or raw bytes (bytes must be UTF-8).
        width, height: the canvas the renderer will draw on.
        limits: the caps to enforce.
        font_family: if given and the document has text, a style rule forces every text element
            onto this family, so text renders with the one font the renderer has loaded.
        strip_text: cut every ``<text>``/``<tspan>``/``<textPath>`` out of the document (flag
            ``text_removed``): Text2SVG rewards must not be won by writing the prompt as text.
        measure: the size the renderer gives a root with neither width, height nor viewBox when it
            draws the (accepted) document alone; usvg takes the content's extent from the origin
            (``render.content_extent``). Without it such a root is 100 x 100, usvg's fallback.

    Returns:
        ``CheckedSvg`` with status ``ok`` and ``document`` set, or ``rejected``/``parse_error``
        with the rule in ``flags`` and a reason in ``detail``.
    """
    try:
        data = svg.encode("utf-8") if isinstance(svg, str) else bytes(svg)
        if isinstance(svg, bytes):
            svg.decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError) as exc:  # lone surrogates, or bytes that are not UTF-8
        return CheckedSvg(Status.parse_error, ["encoding"], f"not valid UTF-8: {exc.reason}")
    if len(data) > limits.max_svg_bytes:
        return CheckedSvg(Status.rejected, ["too_large"], f"{len(data)} bytes > {limits.max_svg_bytes}")
    scan = _Scan(limits)
    try:
        scan.run(data)
    except _Reject as exc:
        return CheckedSvg(Status.rejected, [exc.rule], str(exc))
    except xml.parsers.expat.ExpatError as exc:
        return CheckedSvg(Status.parse_error, ["xml"], f"malformed XML: {exc}")
    except RecursionError:  # pragma: no cover - expat is iterative; belt and braces
        return CheckedSvg(Status.rejected, ["too_deep"], "nesting too deep")
    if scan.root_attrs is None:
        return CheckedSvg(Status.parse_error, ["xml"], "no root element")
    if not scan.root_is_svg():
        return CheckedSvg(Status.parse_error, ["not_svg"], f"root element is <{scan.root_name}>, not SVG's <svg>")
    flags: list[str] = []
    if strip_text and scan.nested_text:
        return CheckedSvg(Status.rejected, ["text_in_image"], "text inside an embedded SVG image cannot be cut")
    if scan.has_raster:
        flags.append("embedded_raster")
        if limits.reject_embedded_raster:
            return CheckedSvg(Status.rejected, flags, "embedded raster images are not drawings", has_raster=True)
    if scan.has_text:
        flags.append("text_removed" if strip_text else "text_elements")
    if strip_text and scan.text_spans:
        data = _cut(data, scan.text_spans)
    document, size, viewport = _normalise_root(
        data, scan, width, height, font_family if scan.has_text else None, measure
    )
    return CheckedSvg(Status.ok, flags, None, document, size, scan.has_text, scan.has_raster, viewport)


class _Scan:
    """One expat pass: enforce the policy, remember the root start tag."""

    def __init__(self, limits: PolicyLimits, *, level: int = 0, elements: int = 0) -> None:
        self.limits = limits
        self.level = level  # 0 for the document, n for an SVG image n levels down
        self.depth = 0
        self.elements = elements
        self.root_name = ""
        self.root_attrs: list[str] | None = None
        self.root_offset = 0
        self.uses_xlink = False
        self.has_text = False
        self.has_raster = False
        self.nested_text = False  # text inside an embedded SVG image (strip_text cannot reach it)
        self._style_depth: int | None = None
        self._style_text: list[str] = []
        self.text_spans: list[tuple[int, int]] = []  # byte ranges of outermost text elements
        self._text_depth: int | None = None
        self._text_start = 0

    def run(self, data: bytes) -> None:
        parser = xml.parsers.expat.ParserCreate("utf-8")
        parser.ordered_attributes = True
        parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = self._doctype
        parser.EntityDeclHandler = self._entity
        parser.ExternalEntityRefHandler = self._external_entity
        parser.ProcessingInstructionHandler = self._pi
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._chars
        self._parser = parser
        self._data = data
        parser.Parse(data, True)

    def root_is_svg(self) -> bool:
        """The root is ``svg``, and a prefixed root's prefix is bound to the SVG namespace."""
        prefix, _, local = self.root_name.rpartition(":")
        if local != "svg":
            return False
        if not prefix:
            return True
        attrs = self.root_attrs or []
        return dict(zip(attrs[::2], attrs[1::2])).get(f"xmlns:{prefix}") == SVG_NS

    # expat handlers -----------------------------------------------------------------------
    def _doctype(self, *_: object) -> None:
        raise _Reject("doctype", "DOCTYPE declarations are not allowed (entity expansion, XXE)")

    def _entity(self, *_: object) -> None:
        raise _Reject("entity", "ENTITY declarations are not allowed")

    def _external_entity(self, *_: object) -> int:
        raise _Reject("entity", "external entities are not allowed")

    def _pi(self, target: str, _data: str) -> None:
        raise _Reject("processing_instruction", f"processing instruction <?{target}?> is not allowed")

    def _start(self, name: str, attrs: list[str]) -> None:
        self.depth += 1
        self.elements += 1
        if self.depth > self.limits.max_depth:
            raise _Reject("too_deep", f"nesting deeper than {self.limits.max_depth}")
        if self.elements > self.limits.max_elements:
            raise _Reject("too_many_elements", f"more than {self.limits.max_elements} elements")
        if self.root_attrs is None:
            self.root_name, self.root_attrs = name, attrs
            self.root_offset = self._parser.CurrentByteIndex
        local = name.rsplit(":", 1)[-1]
        if local in _FORBIDDEN_TAGS:
            raise _Reject(_FORBIDDEN_TAGS[local], f"<{name}> is not allowed")
        if local in _TEXT_TAGS:
            self.has_text = True
            if self._text_depth is None:
                self._text_depth, self._text_start = self.depth, self._parser.CurrentByteIndex
        if local == "style":
            self._style_depth, self._style_text = self.depth, []
        for key, value in zip(attrs[::2], attrs[1::2]):
            if key.startswith("xlink:"):
                self.uses_xlink = True
            key_local = key.rsplit(":", 1)[-1]
            if key_local == "href":
                if local != "a":  # a hyperlink is never fetched: any target is fine
                    self._href(value, element=local)
            elif key_local == "style":
                self._css(value)
            elif "url(" in value:
                self._urls(value)

    def _end(self, name: str) -> None:
        if self._text_depth == self.depth:
            # expat's index is at this element's end tag, or just past it when it was self-closing.
            index = self._parser.CurrentByteIndex
            match = _END_TAG.match(self._data, index)
            end = match.end() if match and match.group(1) == name.encode() else index
            self.text_spans.append((self._text_start, end))
            self._text_depth = None
        if self._style_depth == self.depth:
            self._css("".join(self._style_text))
            self._style_depth = None
        self.depth -= 1

    def _chars(self, text: str) -> None:
        if self._style_depth is not None:
            self._style_text.append(text)

    # rules ----------------------------------------------------------------------------------
    def _href(self, value: str, *, element: str) -> None:
        value = value.strip()
        if value.startswith("#"):
            return
        if not value.lower().startswith("data:"):
            raise _Reject(
                "external_href",
                f"href to {value[:60]!r}: only #id and raster data: URIs are allowed, or SVG data: images",
            )
        if element not in ("image", "feImage"):
            raise _Reject("data_uri", f"data URI on <{element}>: only <image> and <feImage> may embed images")
        if len(value) > self.limits.max_data_uri_bytes:
            raise _Reject("data_uri", f"data URI of {len(value)} bytes > {self.limits.max_data_uri_bytes}")
        decoded = decode_data_uri(value)
        if decoded is None:
            raise _Reject("data_uri", f"data URI {value[:40]!r}...: not a valid data URI")
        mime, is_base64, payload = decoded
        if mime == SVG_MIME and element == "image":
            self._nested_svg(payload)
        elif mime in _RASTER_MIME and is_base64:
            self._raster(payload)
        else:
            raise _Reject("data_uri", f"data URI {value[:40]!r}...: only base64 PNG/JPEG/GIF/WebP or SVG images")

    def _raster(self, payload: bytes) -> None:
        found = _raster_info(payload)
        if found is None:  # Pillow refuses decompression bombs before reading them
            raise _Reject("raster_too_large", "embedded raster unreadable or too large")
        if found[0] not in _RASTER_FORMATS:
            raise _Reject("data_uri", f"embedded {found[0]} image: only PNG/JPEG/GIF/WebP")
        if found[1] > self.limits.max_raster_pixels:
            raise _Reject("raster_too_large", f"embedded raster over {self.limits.max_raster_pixels} px")
        self.has_raster = True

    def _nested_svg(self, payload: bytes) -> None:
        """Check an SVG image's document with this same policy, one level down."""
        if self.level >= self.limits.max_nested_svg:
            raise _Reject("too_deep", f"SVG images nested more than {self.limits.max_nested_svg} deep")
        if len(payload) > self.limits.max_svg_bytes:
            raise _Reject("too_large", f"embedded SVG of {len(payload)} bytes > {self.limits.max_svg_bytes}")
        inner = _Scan(self.limits, level=self.level + 1, elements=self.elements)
        try:
            inner.run(payload)
        except xml.parsers.expat.ExpatError as exc:
            raise _Reject("data_uri", f"embedded SVG is not well-formed XML: {exc}") from None
        if not inner.root_is_svg():
            raise _Reject("data_uri", f"embedded SVG image has root <{inner.root_name}>, not <svg>")
        self.elements = inner.elements
        self.has_raster |= inner.has_raster
        self.has_text |= inner.has_text
        self.nested_text |= inner.has_text or inner.nested_text

    def _css(self, css: str) -> None:
        if "\\" in css:
            raise _Reject("css_escape", "backslash escapes in CSS are not allowed")
        if "@import" in css.lower():
            raise _Reject("css_import", "CSS @import is not allowed")
        self._urls(css)

    def _urls(self, value: str) -> None:
        for match in _URL.finditer(value):
            if not match.group(2).strip().startswith("#"):
                raise _Reject("external_url", f"url({match.group(2)[:60]!r}): only url(#id) is allowed")


def decode_data_uri(uri: str) -> tuple[str, bool, bytes] | None:
    """``(mime type, was base64, bytes)`` of a ``data:`` URI (RFC 2397), or None if malformed.

    The renderers' URL fetchers use this too, so what they draw is what the policy checked.
    """
    header, comma, body = uri.strip()[5:].partition(",")
    if not comma:
        return None
    mime, *params = (part.strip().lower() for part in header.split(";"))
    is_base64 = "base64" in params
    try:
        payload = (
            base64.b64decode("".join(body.split()), validate=True) if is_base64 else urllib.parse.unquote_to_bytes(body)
        )
    except (binascii.Error, ValueError):
        return None
    return mime, is_base64, payload


def _raster_info(payload: bytes) -> tuple[str, int] | None:
    """Format and decoded pixel count of an embedded image, read from its header only (no decoding)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(payload)) as image:
            width, height = image.size
            kind = image.format or ""
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    return kind, width * height


def _normalise_root(
    data: bytes,
    scan: _Scan,
    width: int,
    height: int,
    font_family: str | None,
    measure: Callable[[str], tuple[float, float]] | None,
) -> tuple[str, tuple[float, float], tuple[int, int]]:
    attrs = scan.root_attrs or []
    pairs = dict(zip(attrs[::2], attrs[1::2]))
    start = scan.root_offset
    end = _start_tag_end(data, start)
    closing = "/>" if data[end - 2 : end] == b"/>" else ">"
    size = _intrinsic_size(pairs)
    has_viewbox = _parse_viewbox(pairs.get("viewBox")) is not None
    unsized = not (has_viewbox or _parse_length(pairs.get("width")) or _parse_length(pairs.get("height")))
    if unsized and measure is not None and closing == ">":
        size = measure(_root_tag(scan, pairs, closing) + data[end:].decode("utf-8"))
    if not has_viewbox:
        pairs["viewBox"] = f"0 0 {size[0]:g} {size[1]:g}"
    viewport = fit_viewport(size, width, height)
    pairs["width"], pairs["height"] = str(viewport[0]), str(viewport[1])
    tag = _root_tag(scan, pairs, closing)
    if font_family and closing == ">":
        tag += f'<style>*{{font-family:"{font_family}" !important}}</style>'
    return tag + data[end:].decode("utf-8"), size, viewport


def fit_viewport(size: tuple[float, float], width: int, height: int) -> tuple[int, int]:
    """Whole pixels of the largest ``size``-shaped box inside a ``width`` x ``height`` canvas."""
    scale = min(width / size[0], height / size[1])
    return min(width, max(1, round(size[0] * scale))), min(height, max(1, round(size[1] * scale)))


_START_TAG = re.compile(rb"""<[^\s/>]+(?:[^>"']|"[^"]*"|'[^']*')*>""")
_END_TAG = re.compile(rb"</([^\s>]+)\s*>")


def _cut(data: bytes, spans: list[tuple[int, int]]) -> bytes:
    """``data`` without the given (sorted, disjoint) byte ranges."""
    parts, last = [], 0
    for start, end in spans:
        parts.append(data[last:start])
        last = end
    parts.append(data[last:])
    return b"".join(parts)


def _root_tag(scan: _Scan, pairs: dict[str, str], closing: str) -> str:
    pairs.setdefault("xmlns", SVG_NS)
    if scan.uses_xlink:
        pairs.setdefault("xmlns:xlink", XLINK_NS)
    return f"<{scan.root_name} " + " ".join(f"{k}={_quote(v)}" for k, v in pairs.items()) + closing


def _start_tag_end(data: bytes, start: int) -> int:
    """Offset just past the ``>`` closing the start tag at ``start`` (quote-aware)."""
    match = _START_TAG.match(data, start)
    return match.end() if match else len(data)  # always matches a start tag expat accepted


def _quote(value: str) -> str:
    escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
    return '"' + escaped.replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;") + '"'


def _intrinsic_size(attrs: dict[str, str]) -> tuple[float, float]:
    """The size a renderer would give the document by itself (width/height, else viewBox)."""
    viewbox = _parse_viewbox(attrs.get("viewBox"))
    width, height = _parse_length(attrs.get("width")), _parse_length(attrs.get("height"))
    if width and height:
        return width, height
    if viewbox:
        vw, vh = viewbox
        if width:
            return width, width * vh / vw
        if height:
            return height * vw / vh, height
        return vw, vh
    return width or _DEFAULT_SIZE, height or _DEFAULT_SIZE


def _parse_viewbox(value: str | None) -> tuple[float, float] | None:
    if not value:
        return None
    try:
        parts = [float(p) for p in value.replace(",", " ").split()]
    except ValueError:
        return None
    if len(parts) != 4 or not (parts[2] > 0 and parts[3] > 0) or any(p != p for p in parts):
        return None
    return parts[2], parts[3]


def _parse_length(value: str | None) -> float | None:
    match = _LENGTH.match(value or "")
    if not match:
        return None
    number = float(match.group(1)) * _UNIT_PX[match.group(2)]
    return number if number > 0 and number != float("inf") else None
