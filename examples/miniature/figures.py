"""The miniature's PNG figures, drawn with Pillow (the project does not depend on matplotlib)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

PALETTE = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]
_W, _H, _PAD = 900, 420, 60


def line_chart(path: Path, title: str, series: dict[str, Sequence[tuple[float, float]]], ylabel: str = "") -> None:
    """One line per series (x, y points), shared axes, a legend; saved as PNG."""
    points = [p for line in series.values() for p in line]
    if not points:
        return
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) or 1.0
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5
    image = Image.new("RGB", (_W, _H), "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = _PAD + 20, 40, _W - 200, _H - _PAD

    def at(x: float, y: float) -> tuple[float, float]:
        fx = (x - x0) / (x1 - x0) if x1 > x0 else 0.5
        return left + fx * (right - left), bottom - (y - y0) / (y1 - y0) * (bottom - top)

    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    for i in range(5):
        y = y0 + (y1 - y0) * i / 4
        _, py = at(x0, y)
        draw.line([left - 4, py, left, py], fill=(0, 0, 0))
        draw.text((5, py - 6), f"{y:.3g}", fill=(0, 0, 0))
        x = x0 + (x1 - x0) * i / 4
        px, _ = at(x, y0)
        draw.line([px, bottom, px, bottom + 4], fill=(0, 0, 0))
        draw.text((px - 10, bottom + 8), f"{x:.0f}", fill=(0, 0, 0))
    draw.text((left, 12), title, fill=(0, 0, 0))
    draw.text((right - 40, bottom + 28), "step", fill=(0, 0, 0))
    if ylabel:
        draw.text((5, top - 30), ylabel, fill=(0, 0, 0))
    for k, (name, line) in enumerate(series.items()):
        colour = PALETTE[k % len(PALETTE)]
        pts = [at(x, y) for x, y in line]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        draw.line([right + 15, top + 10 + 18 * k, right + 40, top + 10 + 18 * k], fill=colour, width=3)
        draw.text((right + 45, top + 4 + 18 * k), name, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def bar_chart(path: Path, title: str, groups: dict[str, dict[str, float]], note: str = "") -> None:
    """Grouped bars: one group per metric, one bar per stage (values labelled)."""
    image = Image.new("RGB", (_W, _H), "white")
    draw = ImageDraw.Draw(image)
    draw.text((20, 12), title, fill=(0, 0, 0))
    if note:
        draw.text((20, 28), note, fill=(90, 90, 90))
    width = (_W - 40) / max(1, len(groups))
    for g, (metric, values) in enumerate(groups.items()):
        peak = max(abs(v) for v in values.values()) or 1.0
        bar_w = (width - 40) / max(1, len(values))
        base_x = 20 + g * width + 20
        for b, (stage, value) in enumerate(values.items()):
            height = abs(value) / peak * (_H - 150)
            x = base_x + b * bar_w
            draw.rectangle([x, _H - 60 - height, x + bar_w - 6, _H - 60], fill=PALETTE[b % len(PALETTE)])
            draw.text((x, _H - 75 - height), f"{value:.4g}", fill=(0, 0, 0))
            draw.text((x, _H - 52), stage, fill=(0, 0, 0))
        draw.text((base_x, _H - 30), metric, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def render_grid(path: Path, columns: list[str], rows: list[list[str | None]], captions: list[list[str]]) -> None:
    """A grid of thumbnails (data URLs from the service's ``renders``), one row per sample."""
    tile, cap = 128, 30
    image = Image.new("RGB", (len(columns) * (tile + 6) + 6, 20 + len(rows) * (tile + cap + 6)), "white")
    draw = ImageDraw.Draw(image)
    for c, name in enumerate(columns):
        draw.text((6 + c * (tile + 6), 4), name, fill=(0, 0, 0))
    for r, cells in enumerate(rows):
        top = 20 + r * (tile + cap + 6)
        for c, url in enumerate(cells):
            left = 6 + c * (tile + 6)
            thumb = _decode(url)
            if thumb is None:
                draw.rectangle([left, top, left + tile - 1, top + tile - 1], fill=(253, 232, 232))
                draw.text((left + 20, top + tile // 2), "no render", fill=(161, 17, 34))
            else:
                thumb.thumbnail((tile, tile))
                image.paste(thumb, (left, top))
                draw.rectangle([left, top, left + tile - 1, top + tile - 1], outline=(200, 200, 200))
            # Two lines of at most 21 characters: the tile's width in Pillow's default font.
            words, lines = captions[r][c].split(), [""]
            for word in words:
                if lines[-1] and len(lines[-1]) + 1 + len(word) > 21:
                    lines.append("")
                lines[-1] = f"{lines[-1]} {word}".strip()
            draw.text((left, top + tile + 2), "\n".join(line[:21] for line in lines[:2]), fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _decode(url: Any) -> Image.Image | None:
    if not url:
        return None
    return Image.open(io.BytesIO(base64.b64decode(str(url).split(",", 1)[1]))).convert("RGB")
