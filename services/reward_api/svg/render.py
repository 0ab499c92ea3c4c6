"""Rasterise a policy-checked SVG document onto the canvas, as a BGR uint8 array on white.

Only call this on documents that ``policy.check_svg`` accepted, and only inside a sandboxed
worker (``sandbox.py``): renderers can hang, abort or segfault on hostile input.

Two renderers give the same canvas:

* ``resvg`` (default) through the ``resvg`` binding: measured ~3x faster than the ``resvg-py``
  package on the svg_dev corpus with identical pixels (``bench/bench_pipeline.py --renderers``);
  it also lets us build the options (and font) once per process. Both hand back PNG bytes only,
  so a PNG decode is unavoidable with either; libspng (``pyspng``) does it ~2x faster than OpenCV.
* ``cairosvg``, for parity with the RLRF paper and StarVector. We draw into cairo's surface and read
  its pixels directly, skipping the PNG round trip, and never let it fetch a URL.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pyspng

from services.reward_api.core.errors import ConfigError
from services.reward_api.core.settings import Renderer

_WHITE = (255, 255, 255, 255)


class RenderError(Exception):
    """The renderer refused the document (invalid SVG it could not build a tree from)."""


class RenderLimitError(RenderError):
    """The renderer gave up on a resource limit of its own (resvg's node limit: ``<use>`` bombs)."""


def render(
    document: str, *, width: int, height: int, renderer: Renderer, font_file: Path, font_family: str
) -> np.ndarray:
    """Render ``document`` (root already sized to ``width`` x ``height``) to a BGR uint8 array."""
    if renderer == "resvg":
        return _render_resvg(document, width, height, str(font_file), font_family)
    if renderer == "cairosvg":
        return _render_cairosvg(document, width, height)
    raise ValueError(f"unknown renderer {renderer!r}")


@lru_cache(maxsize=4)
def _resvg_options(font_file: str, font_family: str) -> object:
    import resvg

    if not Path(font_file).is_file():  # our setup, not the SVG: must surface as an error, never a score
        raise ConfigError(f"font_file {font_file} does not exist (install fonts-dejavu-core or set RLRF_FONT_FILE)")
    options = resvg.usvg.Options.default()
    options.load_font_file(font_file)  # the only font: text renders the same on every machine
    options.font_family = font_family
    return options


def _render_resvg(document: str, width: int, height: int, font_file: str, font_family: str) -> np.ndarray:
    import resvg

    options = _resvg_options(font_file, font_family)
    try:
        tree = resvg.usvg.Tree.from_str(document, options)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the binding panics (pyo3 PanicException) on every invalid document
        kind = RenderLimitError if "LimitReached" in str(exc) else RenderError
        raise kind(f"resvg: {exc}") from None
    tree_w, tree_h = tree.int_size()
    sx, sy = width / tree_w, height / tree_h  # 1.0 unless rounding moved the root size
    png = resvg.render(tree, (sx, 0.0, 0.0, 0.0, sy, 0.0), bg_size=(width, height), bg_color=_WHITE)
    rgba = pyspng.load(png)  # libspng decodes ~2x faster than cv2.imdecode (bench --renderers)
    return cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGR)


def _deny_fetch(url: str, resource_type: str) -> dict[str, object]:
    raise RenderError(f"cairosvg tried to fetch {url!r} ({resource_type}); fetching is disabled")


def _render_cairosvg(document: str, width: int, height: int) -> np.ndarray:
    from cairosvg.parser import Tree
    from cairosvg.surface import PNGSurface

    try:
        tree = Tree(bytestring=document.encode("utf-8"), unsafe=False, url_fetcher=_deny_fetch)
        surface = PNGSurface(tree, None, 96, output_width=width, output_height=height, background_color="white")
    except (RenderError, RecursionError, MemoryError):
        raise
    except Exception as exc:
        raise RenderError(f"cairosvg: {type(exc).__name__}: {exc}") from exc
    cairo_surface = surface.cairo
    cairo_surface.flush()
    h, w, stride = cairo_surface.get_height(), cairo_surface.get_width(), cairo_surface.get_stride()
    # ARGB32 is stored B, G, R, A in memory on little-endian machines; alpha is 255 on white.
    pixels = np.frombuffer(cairo_surface.get_data(), np.uint8).reshape(h, stride)[:, : w * 4]
    image = np.ascontiguousarray(pixels.reshape(h, w, 4)[:, :, :3])
    if (h, w) != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return image
