"""Rasterise a policy-checked SVG document onto the canvas, as a BGR uint8 array on white.

The document's root is already sized to its own viewport (``policy.fit_viewport``). Renderers draw
exactly that viewport, so nothing outside it shows, and the result is centred on the canvas.
A document that blends with its backdrop (``mix-blend-mode``, ``BackgroundImage``) is drawn on a
transparent surface and composited onto white afterwards, so it mixes with transparency as the SVG
conformance suites' reference images do, not with white. Every other document only paints
source-over, where painting white first gives the same pixels (to rounding) and saves the
compositing pass (~40% of a 512 px resvg render).

Only call this on documents that ``policy.check_svg`` accepted, and only inside a sandboxed
worker (``sandbox.py``): renderers can hang, abort or segfault on hostile input.

Two renderers give the same canvas:

* ``resvg`` (default) through the ``resvg`` binding: measured ~3x faster than the ``resvg-py``
  package on the svg_dev corpus with identical pixels (``bench/bench_pipeline.py --renderers``);
  it also lets us build the options (and font) once per process. Both hand back PNG bytes only,
  so a PNG decode is unavoidable with either; libspng (``pyspng``) does it ~2x faster than OpenCV.
* ``cairosvg``, for parity with the RLRF paper and StarVector. We draw into cairo's surface and read
  its pixels directly, skipping the PNG round trip, and never let it fetch a URL: its fetcher only
  decodes the ``data:`` URIs that the policy checked.

resvg reports an invalid document and a bug of its own the same way (a Rust panic); the message
tells them apart: usvg's parse errors are ``RenderError`` (the document's fault, ``parse_error``),
any other panic on a document the policy accepted is ``RenderCrash`` (``render_crash``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pyspng

from services.reward_api.core.errors import ConfigError
from services.reward_api.core.settings import Renderer
from services.reward_api.svg.policy import decode_data_uri

if TYPE_CHECKING:
    import resvg

_TRANSPARENT, _WHITE = (0, 0, 0, 0), (255, 255, 255, 255)
_BACKDROP = ("blend-mode", "BackgroundImage", "BackgroundAlpha")  # what reads the backdrop
# usvg's errors for documents it cannot build a tree from; any other panic is a renderer bug.
_INVALID = ("ParsingFailed", "NotAnUtf8Str", "MalformedGZip", "InvalidSize")
_ERR_VALUE = "Err` value: "  # the binding panics with "called `Result::unwrap()` on an `Err` value: <error>"
# usvg's errors in the words a model author needs (the rest are passed on as usvg names them).
_EXPLAINED = {
    "NoRootNode": 'no <svg> root in the SVG namespace (xmlns="http://www.w3.org/2000/svg")',
    "InvalidSize": "the document's width, height or viewBox is zero or negative",
    "NotAnUtf8Str": "not UTF-8",
    "MalformedGZip": "malformed gzip",
}


class RenderError(Exception):
    """The renderer refused the document (invalid SVG it could not build a tree from)."""


class RenderLimitError(RenderError):
    """The renderer gave up on a resource limit of its own (resvg's node limit: ``<use>`` bombs)."""


class RenderCrash(Exception):
    """The renderer panicked on a document it could parse: its bug, not the document's (``render_crash``)."""


def render(
    document: str, *, width: int, height: int, renderer: Renderer, font_file: Path, font_family: str
) -> np.ndarray:
    """Render ``document`` to a ``width`` x ``height`` BGR uint8 array.

    The root must already be sized to its viewport within the canvas (``policy.check_svg`` does it).

    Raises:
        RenderError: the document is invalid (``parse_error``); ``RenderLimitError`` for resvg's limits.
        RenderCrash: the renderer panicked on a valid document (``render_crash``).
    """
    transparent = any(marker in document for marker in _BACKDROP)
    if renderer == "resvg":
        return _render_resvg(document, width, height, str(font_file), font_family, transparent)
    if renderer == "cairosvg":
        return _render_cairosvg(document, width, height, transparent)
    raise ValueError(f"unknown renderer {renderer!r}")


@lru_cache(maxsize=4)
def _resvg_options(font_file: str, font_family: str) -> resvg.usvg.Options:
    import resvg

    if not Path(font_file).is_file():  # our setup, not the SVG: must surface as an error, never a score
        raise ConfigError(f"font_file {font_file} does not exist (install fonts-dejavu-core or set RLRF_FONT_FILE)")
    options = resvg.usvg.Options.default()
    options.load_font_file(font_file)  # the only font: text renders the same on every machine
    options.font_family = font_family
    return options


def _render_resvg(
    document: str, width: int, height: int, font_file: str, font_family: str, transparent: bool
) -> np.ndarray:
    import resvg

    options = _resvg_options(font_file, font_family)
    try:
        tree = resvg.usvg.Tree.from_str(document, options)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the binding panics (pyo3 PanicException) on every failure
        raise _classify(str(exc)) from None
    view_w, view_h = tree.int_size()  # the root's size, fitted to the canvas by the policy
    view_w, view_h = min(view_w, width), min(view_h, height)
    background = _TRANSPARENT if transparent else _WHITE
    png = resvg.render(tree, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), bg_size=(view_w, view_h), bg_color=background)
    rgba = pyspng.load(png)  # libspng decodes ~2x faster than cv2.imdecode (bench --renderers)
    if transparent and rgba[:, :, 3].min() < 255:
        # PNG holds straight alpha: on white, 255 - alpha * (255 - colour), in integers.
        a = rgba[:, :, 3:].astype(np.uint16)
        rgba = rgba.copy()
        rgba[:, :, :3] = 255 - ((255 - rgba[:, :, :3].astype(np.uint16)) * a + 127) // 255
    return _place(cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGR), width, height)


def content_extent(document: str) -> tuple[float, float]:
    """The size resvg gives a root with neither width, height nor viewBox: the content's extent from
    the origin (strokes aside), or its 100 x 100 fallback when that is empty. Only called on documents
    the policy accepted, inside a worker; a panic here falls back too (the render reports it)."""
    import resvg

    try:
        width, height = resvg.usvg.Tree.from_str(document, resvg.usvg.Options.default()).int_size()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # the binding panics on every failure
        return 100.0, 100.0
    return float(width), float(height)


def _classify(message: str) -> Exception:
    """Turn a resvg panic into the document's fault or the renderer's."""
    if "LimitReached" in message:
        return RenderLimitError(f"resvg: {message}")
    error = message.partition(_ERR_VALUE)[2]
    if error.startswith(_INVALID):
        explained = next((words for name, words in _EXPLAINED.items() if name in error), None)
        return RenderError(f"resvg: {explained} ({error})" if explained else f"resvg: {error}")
    return RenderCrash(f"resvg panicked: {message}"[:500])


def _place(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Centre a rendered viewport on a white ``width`` x ``height`` canvas."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    canvas = np.full((height, width, 3), 255, np.uint8)
    top, left = (height - h) // 2, (width - w) // 2
    canvas[top : top + h, left : left + w] = image
    return canvas


def _fetch_data_only(url: str, resource_type: str) -> bytes:
    """cairosvg's fetcher: the ``data:`` URIs the policy allowed, nothing else (no files, no network)."""
    decoded = decode_data_uri(url) if url.lower().startswith("data:") else None
    if decoded is None:
        raise RenderError(f"cairosvg tried to fetch {url[:80]!r} ({resource_type}); fetching is disabled")
    return decoded[2]


def _render_cairosvg(document: str, width: int, height: int, transparent: bool) -> np.ndarray:
    from cairosvg.parser import Tree
    from cairosvg.surface import PNGSurface

    try:
        tree = Tree(bytestring=document.encode("utf-8"), unsafe=False, url_fetcher=_fetch_data_only)
        surface = PNGSurface(tree, None, 96, background_color=None if transparent else "white")
    except (RenderError, RecursionError, MemoryError):
        raise
    except Exception as exc:
        raise RenderError(f"cairosvg: {type(exc).__name__}: {exc}") from exc
    cairo_surface = surface.cairo
    cairo_surface.flush()
    h, w, stride = cairo_surface.get_height(), cairo_surface.get_width(), cairo_surface.get_stride()
    # ARGB32 is premultiplied B, G, R, A in memory on little-endian machines: on white, c + (255 - a).
    pixels = np.frombuffer(cairo_surface.get_data(), np.uint8).reshape(h, stride)[:, : w * 4].reshape(h, w, 4)
    image: np.ndarray = (
        pixels[:, :, :3] + (255 - pixels[:, :, 3:]) if transparent else np.ascontiguousarray(pixels[:, :, :3])
    )
    if h > height or w > width:  # cairosvg rounds the root size on its own
        image = cv2.resize(image, (min(w, width), min(h, height)), interpolation=cv2.INTER_AREA)
    return _place(image, width, height)
