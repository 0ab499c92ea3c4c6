"""Legitimate real-world SVG constructs (issue 12), on both real renderers and through the pipeline.

Expected pixels are computed by hand from the SVG specification (viewport, ``preserveAspectRatio``,
compositing), and the two renderers must agree with them and with each other.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest

from services.reward_api.core.results import Status
from services.reward_api.core.schemas import ScoreRequest
from services.reward_api.core.settings import Settings
from services.reward_api.pipeline import Pipeline
from services.reward_api.scoring import render_job, render_reference
from services.reward_api.svg.policy import PolicyLimits
from services.reward_api.svg.render import RenderCrash, RenderError, _classify, render
from tests.conftest import render_checked as _render

NS = 'xmlns="http://www.w3.org/2000/svg"'
RENDERERS = ["resvg", "cairosvg"]
FIXTURES = Path(__file__).parent / "fixtures" / "real_svg"
BLUE, RED, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)  # BGR


def _px(image: np.ndarray, y: int, x: int) -> tuple[int, ...]:
    return tuple(int(v) for v in image[y, x])


def _png() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (255, 0, 0)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("renderer", RENDERERS)
def test_blend_modes_mix_with_transparency_not_white(renderer: str, settings: Settings) -> None:
    """``difference`` over nothing is the colour itself; over a painted white canvas it was yellow."""
    svg = (
        f'<svg {NS} viewBox="0 0 10 10"><rect width="10" height="10" fill="blue" style="mix-blend-mode:difference"/>'
        "</svg>"
    )
    assert _px(_render(svg, renderer, settings), 64, 64) == BLUE
    half = f'<svg {NS} viewBox="0 0 10 10"><rect width="10" height="10" fill="black" fill-opacity="0.5"/></svg>'
    assert all(abs(v - 128) <= 1 for v in _px(_render(half, renderer, settings), 64, 64))  # composited on white


@pytest.mark.parametrize("renderer", RENDERERS)
def test_preserve_aspect_ratio_slice_and_the_viewport_clip(renderer: str, settings: Settings) -> None:
    """A 2:1 viewport of a square viewBox, ``slice``: the viewport is 128x64 centred (rows 32-96); the
    viewBox is scaled 1.28x so y 25..75 shows: blue (y < 50) on top, red below; nothing outside."""
    svg = (
        f'<svg {NS} width="200" height="100" viewBox="0 0 100 100" preserveAspectRatio="xMidYMid slice">'
        '<rect x="-1000" y="-1000" width="3000" height="3000" fill="red"/>'
        '<rect width="100" height="50" fill="blue"/></svg>'
    )
    image = _render(svg, renderer, settings)
    assert [_px(image, y, 64) for y in (10, 40, 88, 120)] == [WHITE, BLUE, RED, WHITE]
    assert _px(image, 40, 2) == BLUE and _px(image, 88, 125) == RED  # slice fills the viewport's width


@pytest.mark.parametrize("renderer", RENDERERS)
def test_content_outside_the_viewport_does_not_show_in_the_letterbox(renderer: str, settings: Settings) -> None:
    svg = f'<svg {NS} viewBox="0 0 20 10"><rect x="-50" y="-50" width="200" height="200" fill="red"/></svg>'
    image = _render(svg, renderer, settings)
    assert [_px(image, y, 64) for y in (5, 33, 64, 94, 122)] == [WHITE, RED, RED, RED, WHITE]
    none = (
        f'<svg {NS} width="20" height="10" viewBox="0 0 10 10" preserveAspectRatio="none">'
        '<rect width="10" height="5" fill="blue"/></svg>'
    )
    image = _render(none, renderer, settings)  # stretched over its own 2:1 viewport, not the square canvas
    assert [_px(image, y, 64) for y in (20, 40, 80, 110)] == [WHITE, BLUE, WHITE, WHITE]


def test_the_renderers_agree_on_these_documents(settings: Settings) -> None:
    inner = base64.b64encode(
        f'<svg {NS} viewBox="0 0 4 4"><circle cx="2" cy="2" r="2" fill="teal"/></svg>'.encode()
    ).decode()
    documents = [
        f'<svg {NS} width="300" height="120" viewBox="0 0 50 50" preserveAspectRatio="xMinYMax slice">'
        '<circle cx="25" cy="25" r="25" fill="#c33"/></svg>',
        f'<svg {NS} viewBox="0 0 30 10" preserveAspectRatio="xMaxYMin meet">'
        '<path d="M-5 -5 L35 15" stroke="navy" stroke-width="3"/></svg>',
        f'<svg {NS} viewBox="0 0 10 10"><a href="https://example.com">'
        '<rect x="1" y="1" width="8" height="8" fill="green"/></a></svg>',
        f'<svg {NS} viewBox="0 0 10 10"><image width="10" height="10" href="data:image/svg+xml;base64,{inner}"/></svg>',
    ]
    for svg in documents:
        a, b = _render(svg, "resvg", settings), _render(svg, "cairosvg", settings)
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 4.0, svg


@pytest.mark.parametrize("renderer", RENDERERS)
def test_links_vector_images_and_untyped_rasters_render(renderer: str, settings: Settings) -> None:
    link = (
        f'<svg {NS} viewBox="0 0 10 10"><a href="https://example.com/">'
        '<rect width="10" height="10" fill="blue"/></a></svg>'
    )
    assert _px(_render(link, renderer, settings), 64, 64) == BLUE
    inner = f'<svg {NS} viewBox="0 0 4 4"><rect width="4" height="4" fill="blue"/></svg>'
    for uri in (
        "data:image/svg+xml;base64," + base64.b64encode(inner.encode()).decode(),
        "data:image/svg+xml;utf8," + inner.replace('"', "'").replace("<", "%3C").replace(">", "%3E"),
    ):
        svg = f'<svg {NS} viewBox="0 0 10 10"><image width="10" height="10" href="{uri}"/></svg>'
        assert _px(_render(svg, renderer, settings), 64, 64) == BLUE, uri[:40]
    untyped = f'<svg {NS} viewBox="0 0 10 10"><image width="10" height="10" href="data:;base64,{_png()}"/></svg>'
    assert _px(_render(untyped, renderer, settings, limits=PolicyLimits(reject_embedded_raster=False)), 64, 64) == RED
    prefixed = (
        '<svg:svg xmlns:svg="http://www.w3.org/2000/svg" viewBox="0 0 10 10">'
        '<svg:rect width="10" height="10" fill="blue"/></svg:svg>'
    )
    assert _px(_render(prefixed, renderer, settings), 64, 64) == BLUE


def test_resvg_panics_are_told_apart(settings: Settings) -> None:
    """usvg's parse errors are the document's fault; any other panic is the renderer's."""
    for invalid in (f"<svg {NS}><a:b/></svg>", f'<svg {NS} width="0" height="0"/>'):  # real resvg panics
        with pytest.raises(RenderError):
            render(invalid, width=8, height=8, renderer="resvg", font_file=settings.font_file, font_family="x")
    assert isinstance(_classify("called `Result::unwrap()` on an `Err` value: ParsingFailed(NoRootNode)"), RenderError)
    # The real panic of a wrong xmlns (a miniature rollout's), in words a model author can act on.
    wrong_ns = '<svg xmlns="http://www.org/2000/svg" viewBox="0 0 64 64"><rect width="9" height="9"/></svg>'
    with pytest.raises(RenderError) as no_root:
        render(wrong_ns, width=8, height=8, renderer="resvg", font_file=settings.font_file, font_family="x")
    assert str(no_root.value).startswith("resvg: no <svg> root in the SVG namespace"), no_root.value
    assert "unwrap" not in str(no_root.value)
    assert isinstance(_classify("called `Result::unwrap()` on an `Err` value: InvalidSize"), RenderError)
    crash = _classify("index out of bounds: the len is 3 but the index is 7")  # a font or layout bug
    assert isinstance(crash, RenderCrash) and not isinstance(crash, RenderError)


PROLOG = (
    '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
    '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n'
    "<!-- Generator: a drawing program -->\n"
)
DRAWING = (
    f'<svg {NS} viewBox="0 0 20 20"><rect x="2" y="2" width="16" height="9" fill="#2a6"/>'
    '<circle cx="10" cy="14" r="5" fill="#c33"/></svg>'
)
PREFIXED = (
    '<svg:svg xmlns:svg="http://www.w3.org/2000/svg" viewBox="0 0 20 20"><svg:rect x="2" y="2" width="16" '
    'height="9" fill="#2a6"/><svg:circle cx="10" cy="14" r="5" fill="#c33"/></svg:svg>'
)


@pytest.mark.parametrize("renderer", RENDERERS)
def test_references_take_the_candidates_path(renderer: str, settings: Settings) -> None:
    """A prolog + DOCTYPE reference, and a prefixed root, render like the bare document either way."""
    job = render_job(settings.model_copy(update={"renderer": renderer}))
    bare = render_reference(None, DRAWING, job=job)
    assert bare.status is Status.ok and bare.image is not None
    for variant in (PROLOG + DRAWING, PREFIXED, PROLOG + PREFIXED):
        rendered = render_reference(None, variant, job=job)
        assert rendered.status is Status.ok, (variant[:60], rendered.detail)
        assert np.array_equal(rendered.image, bare.image)
    assert render_reference(None, "no drawing here", job=job).status is Status.no_svg


def test_pipeline_scores_prolog_and_prefixed_svg_both_ways(pipeline: Pipeline) -> None:
    for reference in (PROLOG + DRAWING, PREFIXED):
        result = pipeline.score_group(
            ScoreRequest(reference={"svg": reference}, completions=[DRAWING, PREFIXED, PROLOG + DRAWING])
        )
        assert [r.status for r in result.results] == [Status.ok] * 3, reference[:40]
        assert all(r.components["pixel_l2"] == pytest.approx(1.0) for r in result.results)


def test_cairosvg_references_with_raster_data_uris_render(settings: Settings) -> None:
    cairo = Pipeline.embedded(
        settings.model_copy(update={"renderer": "cairosvg", "workers": 1, "render_timeout_s": 20.0})
    )
    with cairo:
        svg = (
            f'<svg {NS} viewBox="0 0 10 10"><image width="10" height="10" href="data:image/png;base64,{_png()}"/></svg>'
        )
        prepared = cairo.prepare_reference(ScoreRequest(reference={"svg": svg}, completions=["x"]).reference)
        assert prepared.canvas is not None and _px(prepared.canvas.image, 100, 100) == RED


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.svg")), ids=lambda p: p.name)
@pytest.mark.parametrize("renderer", RENDERERS)
def test_real_files_once_refused_now_render(path: Path, renderer: str, settings: Settings) -> None:
    """Real files from npm packages that the policy used to refuse (attribution: fixtures/real_svg/README.md)."""
    job = render_job(settings.model_copy(update={"renderer": renderer}))
    rendered = render_reference(None, path.read_text(), job=job)
    assert rendered.status is Status.ok, rendered.detail
    assert rendered.image is not None and (rendered.image < 250).any()
