"""Untrusted model output: every hostile SVG gets its status in bounded time, good ones still score,
and no SVG opens a file or a socket."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.reward_api.core.results import Status
from services.reward_api.core.schemas import ScoreRequest
from services.reward_api.core.settings import Settings
from services.reward_api.pipeline import Pipeline
from services.reward_api.svg.policy import PolicyLimits, check_svg
from services.reward_api.svg.render import render
from tests import _hostile as h


@pytest.fixture()
def canary(tmp_path: Path) -> Iterator[tuple[Path, h.OpenWatch]]:
    import cv2
    import numpy as np

    path = tmp_path / "canary.png"
    cv2.imwrite(str(path), np.full((8, 8, 3), (0, 0, 255), np.uint8))
    watch = h.OpenWatch(path)
    yield path, watch
    watch.close()


@pytest.fixture()
def listener() -> Iterator[h.LoopbackListener]:
    server = h.LoopbackListener()
    yield server
    server.close()


def test_probes_can_fail(canary: tuple[Path, h.OpenWatch], listener: h.LoopbackListener, settings: Settings) -> None:
    """Positive controls: without our guards, resvg reads the canary and cairosvg (unsafe) connects out."""
    import cairosvg

    path, watch = canary
    document = f'<svg {h.NS} width="10" height="10"><image href="{path}" width="10" height="10"/></svg>'
    image = render(document, width=10, height=10, renderer="resvg", font_file=settings.font_file, font_family="x")
    assert image[5, 5].tolist() == [0, 0, 255]  # the canary's red pixels: the file was read
    assert watch.touched()
    url = f"http://127.0.0.1:{listener.port}/x.png"
    try:
        cairosvg.svg2png(bytestring=h.image_href(url).encode(), unsafe=True)
    except Exception:
        pass
    time.sleep(0.3)
    assert listener.connections >= 1


@pytest.mark.parametrize("renderer", ["resvg", "cairosvg"])
def test_hostile_group(renderer: str, canary: tuple[Path, h.OpenWatch], listener: h.LoopbackListener) -> None:
    path, watch = canary
    url = f"http://127.0.0.1:{listener.port}"
    cases: dict[str, tuple[str, set[Status], str | None]] = {
        # Extraction keeps only the <svg> element, so a DOCTYPE never reaches a parser and its
        # entities stay undefined (policy.check_svg rejects a DOCTYPE itself: test_policy.py).
        "billion_laughs": (h.billion_laughs(), {Status.parse_error}, "xml"),
        "xxe_file": (h.xxe(f"file://{path}"), {Status.parse_error}, "xml"),
        "xxe_http": (h.xxe(f"{url}/x"), {Status.parse_error}, "xml"),
        "abs_path_image": (h.image_href(str(path)), {Status.rejected}, "external_href"),
        "file_url_image": (h.image_href(f"file://{path}"), {Status.rejected}, "external_href"),
        "relative_image": (h.image_href("canary.png"), {Status.rejected}, "external_href"),
        "http_image": (h.image_href(f"{url}/x.png"), {Status.rejected}, "external_href"),
        "http_use": (f'<svg {h.NS}><use xlink:href="{url}/a.svg#x"/></svg>', {Status.rejected}, "external_href"),
        "css_import": (f"<svg {h.NS}><style>@import url({url}/a.css);</style></svg>", {Status.rejected}, "css_import"),
        "css_url": (f'<svg {h.NS}><rect style="fill:url({url}/p.svg#g)"/></svg>', {Status.rejected}, "external_url"),
        "attr_url": (f'<svg {h.NS}><rect filter="url(file://{path})"/></svg>', {Status.rejected}, "external_url"),
        "stylesheet_pi": (
            f'<svg {h.NS}><?xml-stylesheet href="{url}/s.css"?><rect/></svg>',
            {Status.rejected},
            "processing_instruction",
        ),
        "xinclude": (
            f'<svg {h.NS} xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="{path}"/></svg>',
            {Status.rejected},
            "xinclude",
        ),
        "script": (f"<svg {h.NS}><script>fetch('{url}')</script></svg>", {Status.rejected}, "script"),
        "foreign_object": (
            f"<svg {h.NS}><foreignObject><p>hi</p></foreignObject></svg>",
            {Status.rejected},
            "foreign_object",
        ),
        "svg_data_uri": (  # a vector image is checked like the document: its file read is refused
            h.image_href(
                "data:image/svg+xml;base64," + base64.b64encode(h.image_href("/etc/passwd").encode()).decode()
            ),
            {Status.rejected},
            "external_href",
        ),
        "png_bomb": (h.image_href(h.png_bomb_data_uri()), {Status.rejected}, "raster_too_large"),
        "use_bomb": (h.use_bomb(), {Status.render_crash, Status.render_timeout}, None),
        "deep_nesting": (h.deep_nesting(), {Status.rejected}, "too_large"),  # 700 kB; too_deep: test_policy
        "deep_nesting_small": (h.deep_nesting(1000), {Status.rejected}, "too_deep"),
        "width_1e8": (
            f'<svg {h.NS} width="1e8" height="1e8" viewBox="0 0 10 10"><circle cx="5" cy="5" r="4"/></svg>',
            {Status.ok},
            None,
        ),
        "five_mb_path": (h.huge_path(5), {Status.rejected}, "too_large"),
        "huge_filter": (h.huge_filter_region(), {Status.ok, Status.render_timeout, Status.render_crash}, None),
        "truncated": (h.GOOD[:-10], {Status.truncated}, None),
        "invalid_utf8": (
            b"<svg><text>\xff\xfe</text></svg>".decode("utf-8", "surrogateescape"),
            {Status.parse_error},
            "encoding",
        ),
    }
    names = list(cases)
    completions = [x for name in names for x in (cases[name][0], h.GOOD)]  # a good SVG after each hostile one
    settings = Settings(renderer=renderer, workers=2, render_timeout_s=2.0, worker_memory_mb=1536)
    with Pipeline.embedded(settings) as pipeline:
        started = time.monotonic()
        result = pipeline.score_group(ScoreRequest(reference={"svg": h.GOOD}, completions=completions))
        elapsed = time.monotonic() - started
    for i, name in enumerate(names):
        hostile, good = result.results[2 * i], result.results[2 * i + 1]
        _, expected, flag = cases[name]
        assert hostile.status in expected, (name, hostile)
        if flag:
            assert flag in hostile.flags, (name, hostile.flags)
        assert hostile.reward is not None and hostile.reward >= -2.1 - 1e-9, name
        assert good.status is Status.ok and good.components["pixel_l2"] == pytest.approx(1.0), (name, good)
    # Each timeout costs at most the limit (plus a worker restart): the group stays bounded.
    assert elapsed < 30
    assert not watch.touched(), "an SVG opened the canary file"
    time.sleep(0.2)
    assert listener.connections == 0, "an SVG opened a connection"


def test_renderer_crash_and_timeout_are_isolated_when_the_policy_lets_them_through() -> None:
    """With the nesting cap lifted, resvg segfaults on 100k nested groups: only that rollout fails."""
    settings = Settings(
        workers=2, render_timeout_s=2.0, max_depth=200_000, max_elements=300_000, max_svg_bytes=2_000_000
    )
    with Pipeline.embedded(settings) as pipeline:
        completions = [h.GOOD, h.deep_nesting(), h.GOOD, h.huge_filter_region(), h.GOOD]
        result = pipeline.score_group(ScoreRequest(reference={"svg": h.GOOD}, completions=completions))
        statuses = [r.status for r in result.results]
        assert statuses[1] is Status.render_crash
        assert statuses[3] in (Status.render_timeout, Status.ok)
        assert [statuses[i] for i in (0, 2, 4)] == [Status.ok] * 3
        assert pipeline.backend.pool.restarts >= 1  # type: ignore[attr-defined]


def test_embedded_raster_can_be_allowed_and_is_flagged() -> None:
    import base64

    import cv2
    import numpy as np

    png = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    svg = h.image_href("data:image/png;base64," + base64.b64encode(png).decode())
    rejected = check_svg(svg, width=64, height=64)
    assert rejected.status is Status.rejected and rejected.flags == ["embedded_raster"]
    allowed = check_svg(svg, width=64, height=64, limits=PolicyLimits(reject_embedded_raster=False))
    assert allowed.status is Status.ok and "embedded_raster" in allowed.flags
