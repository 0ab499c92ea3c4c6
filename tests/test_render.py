"""Both renderers on real files, text with the configured font, and no fetching."""

from __future__ import annotations

import cv2
import numpy as np
import pyspng
import pytest

from services.reward_api.core.settings import Settings
from services.reward_api.svg.policy import check_svg
from services.reward_api.svg.render import RenderError, content_extent, render
from tests.conftest import render_checked as _render
from tests.conftest import svg_dev_files


def test_font_file_exists(settings: Settings) -> None:
    assert settings.font_file.is_file(), f"{settings.font_file} missing: run scripts/system-deps.sh"


@pytest.mark.parametrize("index", [0, 20, 80, 150, 220, 299])
def test_renderers_agree_on_svg_dev(index: int, settings: Settings) -> None:
    svg = svg_dev_files()[index].read_text()
    a, b = _render(svg, "resvg", settings), _render(svg, "cairosvg", settings)
    assert a.shape == b.shape == (128, 128, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 3.0


@pytest.mark.parametrize("renderer", ["resvg", "cairosvg"])
def test_text_renders_with_the_configured_font_whatever_family_is_asked(renderer: str, settings: Settings) -> None:
    template = '<svg viewBox="0 0 60 20"><text x="2" y="15" font-size="14" font-family="{}">Hello</text></svg>'
    images = [_render(template.format(family), renderer, settings) for family in ("No Such Font", "serif", "monospace")]
    assert (images[0] < 128).mean() > 0.01  # text is drawn
    assert all(np.array_equal(images[0], other) for other in images[1:])  # one font, whatever the request


def test_renderer_errors_are_render_errors(settings: Settings) -> None:
    for invalid in ("<svg>", "<html/>", '<svg xmlns="http://www.w3.org/2000/svg" width="0" height="0"/>'):
        with pytest.raises(RenderError):  # the binding panics; we report it as the document's fault
            render(invalid, width=8, height=8, renderer="resvg", font_file=settings.font_file, font_family="x")
    svg = '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><image href="http://127.0.0.1:9/a.png"/></svg>'
    with pytest.raises(RenderError, match="fetching is disabled"):  # defence in depth behind the policy
        render(svg, width=8, height=8, renderer="cairosvg", font_file=settings.font_file, font_family="x")


def test_a_missing_font_is_a_configuration_error_never_a_score(settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Fail fast at start-up; and inside a worker, the error is ours (status error), not the SVG's."""
    from services.reward_api.core.errors import ConfigError
    from services.reward_api.core.results import Status
    from services.reward_api.core.schemas import ScoreRequest
    from services.reward_api.pipeline import LocalBackend, Pipeline
    from services.reward_api.sandbox import WorkerPool

    missing = settings.model_copy(update={"font_file": tmp_path / "nope.ttf"})
    with pytest.raises(ConfigError, match=r"nope\.ttf"):
        Pipeline.embedded(missing)
    svg = '<svg viewBox="0 0 10 10"><circle cx="5" cy="5" r="4"/></svg>'
    with WorkerPool(workers=1) as pool:
        pipeline = Pipeline(settings, LocalBackend(pool))  # a good reference first ...
        pipeline.score_group(ScoreRequest(reference={"svg": svg}, completions=[svg]))
        pipeline.settings = missing  # ... then workers told to use a font that is gone
        result = pipeline.score_group(ScoreRequest(reference={"svg": svg}, completions=[svg]))
    assert result.results[0].status is Status.error and result.results[0].reward is None
    assert "nope.ttf" in (result.results[0].detail or "")


@pytest.mark.parametrize("renderer", ["resvg", "cairosvg"])
def test_a_root_without_size_or_viewbox_is_drawn_as_resvg_draws_it_alone(renderer: str, settings: Settings) -> None:
    """No width, height or viewBox: usvg sizes the root to the content's extent from the origin (cairosvg
    refuses such a document by itself: 'The SVG size is undefined'). We fit that viewport to the canvas,
    so nothing is cropped: the circle at (150, 150) shows, where a fixed 100 x 100 default cut it off."""
    import resvg

    svg = '<svg xmlns="http://www.w3.org/2000/svg"><rect x="10" y="20" width="50" height="30" fill="#c00"/>'
    svg += '<circle cx="150" cy="150" r="20"/></svg>'
    tree = resvg.usvg.Tree.from_str(svg, resvg.usvg.Options.default())
    assert tree.int_size() == (170, 170)
    png = resvg.render(tree, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), bg_color=(255, 255, 255, 255))
    alone = cv2.cvtColor(pyspng.load(png), cv2.COLOR_RGBA2BGR)
    checked = check_svg(svg, width=170, height=170, measure=content_extent)
    assert checked.intrinsic_size == (170.0, 170.0)
    ours = _render(svg, renderer, settings, size=170, measure=content_extent)
    assert np.abs(ours.astype(int) - alone.astype(int)).mean() < 2.0
    assert (ours[150, 150] < 64).all()  # the circle's centre is drawn
    assert check_svg(svg, width=170, height=170).intrinsic_size == (100.0, 100.0)  # usvg's fallback without it
