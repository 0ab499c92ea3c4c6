"""Each generator produces what it claims, checked on real renders of svg_dev references."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest

from services.reward_api.audit import generators as gen
from services.reward_api.components.length import char_length
from services.reward_api.image_metrics import mean_squared_error
from tests.audit.conftest import Scorer
from tests.conftest import SVG_DEV

NAMES = ["bootstrap__icons_gear", "flag4x3__flags_4x3_lr", "twemoji__1fab4", "openmoji__color_svg_1F537"]


@pytest.fixture(scope="module", params=NAMES)
def case(request: pytest.FixtureRequest, scorer: Scorer) -> tuple[str, str, np.ndarray]:
    svg = (SVG_DEV / f"{request.param}.svg").read_text()
    return request.param, svg, scorer.target(svg)


def _render(scorer: Scorer, reference: str, candidate: str) -> np.ndarray:
    ((result, image),) = scorer.score(reference, [candidate], profile="pixel")
    assert image is not None, result
    return image


def test_corruptions_are_nested_and_graded(case: tuple[str, str, np.ndarray], scorer: Scorer) -> None:
    name, svg, target = case
    assert mean_squared_error(_render(scorer, svg, gen.corrupt(svg, 0.0, seed=name)), target) == 0.0
    shapes = len(gen._drawn_shapes(ET.fromstring(svg)))
    kept = [len(gen._drawn_shapes(ET.fromstring(gen.corrupt(svg, s, seed=name)))) for s in gen.STRENGTHS]
    # floor(s * n) shapes dropped (the survivors shifted by their own transform)
    assert kept == [shapes - int(s * shapes + 1e-9) for s in gen.STRENGTHS]
    errors = [mean_squared_error(_render(scorer, svg, gen.corrupt(svg, s, seed=name)), target) for s in (0.1, 0.5, 0.9)]
    assert 0 < errors[0] < errors[2]


def _cell_raster(target: np.ndarray, n: int) -> np.ndarray:
    """The target area-averaged to n x n cells and blown back up: what an n-cell grid can reproduce at best."""
    small = cv2.resize(target, (n, n), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, target.shape[1::-1], interpolation=cv2.INTER_NEAREST)


@pytest.mark.parametrize(
    ("maker", "n", "bound"),
    [
        ("grid_rects_16", 16, 0.002),
        ("grid_rects_32", 32, 0.002),
        ("grid_rects_64", 64, 0.005),  # 3.5 px cells: edges snap to whole pixels
        ("grid_cell_paths", 32, 0.002),
        ("grid_path_per_colour", 32, 0.01),  # colours quantised to 6 levels a channel
        ("grid_circles", 32, 0.03),  # antialiased dots overlapping their neighbours' corners
    ],
)
def test_pixel_grids_reproduce_the_target_raster(
    case: tuple[str, str, np.ndarray], scorer: Scorer, maker: str, n: int, bound: float
) -> None:
    _, svg, target = case
    hack = {h.name: h for h in gen.IM2SVG_HACKS}[maker]
    grid = _render(scorer, svg, hack.make(svg, target))
    assert mean_squared_error(grid, _cell_raster(target, n)) < bound


def test_grid_resolutions_converge(case: tuple[str, str, np.ndarray], scorer: Scorer) -> None:
    _, svg, target = case
    errors = [mean_squared_error(_render(scorer, svg, gen.grid_rects(svg, target, n=n)), target) for n in (16, 32, 64)]
    assert errors[0] >= errors[1] >= errors[2]


def test_code_hacks(case: tuple[str, str, np.ndarray], scorer: Scorer) -> None:
    _, svg, target = case
    padded = gen.padding(svg, target)
    assert char_length(padded) >= 4 * char_length(svg)
    assert "<!--" in padded and "<metadata>" in padded and "<desc>" in padded
    collapsed = gen.length_collapse(svg, target)
    assert char_length(collapsed) <= char_length(svg) / 2
    twice = gen.drawn_twice(svg, target)
    assert len(gen._drawn_shapes(ET.fromstring(twice))) == 2 * len(gen._drawn_shapes(ET.fromstring(svg)))
    nudged = gen.drawn_twice_nudged(svg, target)
    assert len(gen._drawn_shapes(ET.fromstring(nudged))) == 2 * len(gen._drawn_shapes(ET.fromstring(svg)))
    shapes = [shape.attrib for _, shape in gen._drawn_shapes(ET.fromstring(nudged))]
    half = len(shapes) // 2
    assert all(a != b for a, b in zip(shapes[:half], shapes[half:]))  # no exact duplicate: every copy moved
    results = scorer.score(
        svg,
        [svg, padded, twice, nudged, gen.truncated(svg, target), gen.tiny_viewbox(svg, target)],
        profile="pixel",
    )
    (_, ref_image), (pad, _), (dup, _), (near, near_image), (cut, _), (tiny, _) = results
    assert "padding" in pad.flags and "duplicate_drawing" in dup.flags and "duplicate_drawing" in near.flags
    assert ref_image is not None and near_image is not None
    assert mean_squared_error(near_image, ref_image) < 0.005  # within a pixel: the reference, drawn twice
    assert cut.status.value == "truncated"
    assert "tiny_viewbox" in tiny.flags


def test_canvas_hacks(case: tuple[str, str, np.ndarray], scorer: Scorer) -> None:
    _, svg, target = case
    mean_rect = gen.mean_rect(svg, target)
    (blank, _), (flat, _) = scorer.score(svg, [gen.blank(svg, target), mean_rect])
    assert blank.status.value == "blank"
    # One colour over the whole canvas is nothing drawn (scoring.is_blank), whatever the colour ...
    assert flat.status.value == "blank" and "one colour fills 100" in (flat.detail or "")
    # ... and that colour is the target's mean.
    fill = re.search(r'fill="#([0-9a-f]{6})"', mean_rect)
    assert fill is not None
    bgr = np.array([int(fill.group(1)[i : i + 2], 16) for i in (4, 2, 0)])
    assert np.abs(bgr - target.reshape(-1, 3).mean(0)).max() <= 0.5 + 1e-9


def test_embedded_raster_is_the_target(case: tuple[str, str, np.ndarray], pipeline: object, settings: object) -> None:
    from services.reward_api.pipeline import Pipeline

    _, svg, target = case
    raster = gen.embedded_raster(svg, target)
    ((rejected, _),) = Scorer(pipeline).score(svg, [raster])  # type: ignore[arg-type]
    assert rejected.status.value == "rejected" and "embedded_raster" in rejected.flags
    with Pipeline.embedded(settings.model_copy(update={"embedded_raster": "allow", "workers": 1})) as allow:  # type: ignore[attr-defined]
        ((result, image),) = Scorer(allow).score(svg, [raster])
    assert image is not None and mean_squared_error(image, target) < 1e-4
    # Under allow, the guard: scored, flagged, its credit capped at no more than 0 per component.
    assert result.status.value == "ok" and "embedded_raster" in result.flags
    assert result.reward is not None and result.components["pixel_l2"] <= 0.0 and result.components["canny_l2"] <= 0.0


def test_glyph_outlines_render_the_prompt_text(scorer: Scorer) -> None:
    prompt = "a red gear icon"
    text, glyphs = gen.prompt_text(prompt), gen.prompt_glyphs(prompt)
    assert "<text" not in glyphs and glyphs.count("<path") == len(prompt.replace(" ", ""))
    (_, text_image), (_, glyph_image) = scorer.score(text, [text, glyphs], profile="pixel")
    assert text_image is not None and glyph_image is not None
    ink = (text_image < 128).any(axis=2)
    assert ink.mean() > 0.01
    # The outlines are the font's own glyphs: they render as the <text> does, to antialiasing.
    assert mean_squared_error(glyph_image, text_image) < 0.01
    # Text2SVG scoring cuts <text>: the written prompt is blank there; the outlines are not cut.
    (t2, _), (g2, _) = scorer.score(text, [text, glyphs], profile="pixel", task="text2svg")
    assert t2.status.value == "blank" and g2.status.value == "ok"
