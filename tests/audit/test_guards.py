"""Each structural guard fires on its hack and never on a faithful copy, with real renders."""

from __future__ import annotations

import pytest

from services.reward_api.audit import generators as gen
from services.reward_api.guards import check, structure
from tests.audit._grids import GRID_REFERENCES
from tests.audit.conftest import Scorer
from tests.conftest import SVG_DEV, svg_dev_files

NAMES = ["bootstrap__icons_gear", "flag4x3__flags_4x3_hr", "twemoji__1fab4", "simple__icons_stackblitz"]
GRID_HACKS = ["grid_rects_32", "grid_rects_64", "grid_path_per_colour", "grid_cell_paths", "grid_circles"]
HACKS = {h.name: h for h in gen.IM2SVG_HACKS}


def test_no_svg_dev_reference_trips_a_guard_against_itself() -> None:
    for path in svg_dev_files():
        svg = path.read_text()
        assert check(structure(svg), structure(svg)) == [], path.name
        for strength in (0.1, 0.2):  # faithful drawings with a few shapes missing or moved
            drawn = gen.corrupt(svg, strength, seed=path.stem)
            assert check(structure(drawn), structure(svg)) == [], (path.name, strength)


@pytest.mark.parametrize("name", NAMES)
def test_guards_fire_on_their_hacks(name: str, scorer: Scorer) -> None:
    svg = (SVG_DEV / f"{name}.svg").read_text()
    target = scorer.target(svg)
    hacks = [*GRID_HACKS, "padding_4x", "drawn_twice"]
    results = scorer.score(
        svg, [svg, gen.corrupt(svg, gen.MILD, seed=name)] + [HACKS[h].make(svg, target) for h in hacks]
    )
    (ref, _), (mild, _) = results[:2]
    assert ref.status.value == mild.status.value == "ok" and ref.reward is not None and mild.reward is not None
    expected = {h: "pixel_grid" for h in GRID_HACKS} | {"padding_4x": "padding", "drawn_twice": "duplicate_drawing"}
    for hack, (result, image) in zip(hacks, results[2:]):
        assert result.status.value == "rejected" and expected[hack] in result.flags, (hack, result)
        assert image is not None  # it rendered: the guard, not the renderer, turned it down
        assert result.reward is not None and result.reward < mild.reward


@pytest.mark.parametrize("kind", sorted(GRID_REFERENCES))
def test_grid_references_score_their_own_copy_at_the_maximum(kind: str, scorer: Scorer) -> None:
    """Pixel art, QR-like, chequered: the reference's copy is maximal; faithful rect-heavy copies pass."""
    svg = GRID_REFERENCES[kind]
    target = scorer.target(svg)
    mild = gen.corrupt(svg, gen.MILD, seed=kind)
    same_grid = gen.grid_rects(svg, target, n=int(gen.viewbox(gen._parse(svg))[2]))  # redrawn at its own cells
    results = scorer.score(svg, [svg, mild, same_grid, HACKS["grid_rects_64"].make(svg, target)])
    (ref, _), (copy, _), (regrid, _), (fine, _) = results
    assert ref.status.value == "ok" and ref.components["pixel_l2"] == 1.0 and ref.components["canny_l2"] == 1.0
    assert all(r.reward is None or r.reward <= ref.reward for r, _ in results)
    assert copy.status.value == "ok" and "pixel_grid" not in copy.flags  # many small rects, as the reference has
    assert regrid.status.value == "ok", regrid  # the same cells, written out again: a faithful drawing
    if kind == "chequered_flag":  # 32 cells: a 64x64 grid is 128x the reference's structure
        assert "pixel_grid" in fine.flags


def test_svg_dev_grid_like_flags_pass() -> None:
    """Chequered and striped flags of svg_dev (Croatia, Bahrain, ...) against themselves, mildly corrupted."""
    for path in sorted(SVG_DEV.glob("flag4x3__*.svg")):
        svg = path.read_text()
        drawn = gen.corrupt(svg, 0.2, seed=path.stem)
        assert check(structure(drawn), structure(svg)) == [], path.name


def test_duplicate_guard_is_reference_relative(scorer: Scorer) -> None:
    one = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><path d="M1 1h6v6H1z" fill="#c00"/></svg>'
    twice = one.replace("</svg>", '<path d="M1 1h6v6H1z" fill="#c00"/></svg>')
    assert check(structure(twice), structure(one)) == ["duplicate_drawing"]
    # A reference that repeats a shape itself: its copy is not flagged.
    assert check(structure(twice), structure(twice)) == []
    ((result, _),) = scorer.score(one, [twice], profile="pixel")
    assert result.status.value == "rejected" and "duplicate_drawing" in result.flags


def test_padding_guard_is_reference_relative() -> None:
    svg = (SVG_DEV / "twemoji__1fab4.svg").read_text()
    inkscape = svg.replace(">", "><metadata>" + "x" * 2000 + "</metadata><!-- generator: Inkscape -->", 1)
    assert check(structure(inkscape), structure(inkscape)) == []  # the reference's own metadata
    assert check(structure(svg), structure(inkscape)) == []  # a clean faithful copy of a padded reference
    padded = gen.padding(svg, None)  # type: ignore[arg-type]
    assert check(structure(padded), structure(svg)) == ["padding"]


def test_raster_guard_is_reference_relative(pipeline: object, settings: object) -> None:
    from services.reward_api.pipeline import Pipeline

    png = gen.embedded_raster("", scorer_target := Scorer(pipeline).target(GRID_REFERENCES["qr_like"]))  # type: ignore[arg-type]
    del scorer_target
    with Pipeline.embedded(settings.model_copy(update={"embedded_raster": "allow", "workers": 1})) as allow:  # type: ignore[attr-defined]
        ((result, _),) = Scorer(allow).score(png, [png], profile="pixel")  # the reference embeds a raster too
        assert result.status.value == "ok" and "embedded_raster" in result.flags  # flagged, scored: allowed
        ((other, _),) = Scorer(allow).score(GRID_REFERENCES["qr_like"], [png], profile="pixel")
        assert other.status.value == "rejected" and "embedded_raster" in other.flags


def test_length_collapse_earns_no_fidelity_credit(scorer: Scorer) -> None:
    svg = (SVG_DEV / "flag4x3__flags_4x3_hr.svg").read_text()
    collapsed = gen.length_collapse(svg, scorer.target(svg))
    (paper, image), = scorer.score(svg, [collapsed], profile="rlrf-im2svg")
    assert paper.status.value == "ok" and "length_collapse" in paper.flags and image is not None
    assert paper.components["length"] == -1.0
    assert -1.0 < paper.components["pixel_l2"] <= 0.0 and paper.components["canny_l2"] <= 0.0  # capped, was > 0.9
    assert -2.1 < paper.reward <= -0.1
    (pixel, _), = scorer.score(svg, [collapsed], profile="pixel")
    assert pixel.status.value == "ok" and -1.0 < pixel.reward <= 0.0
    # An unrelated small drawing is still scored (capped), not rejected.
    circle = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><circle cx="5" cy="5" r="4"/></svg>'
    (small, _), = scorer.score(svg, [circle])
    assert small.status.value == "ok" and "length_collapse" in small.flags


def test_length_collapse_does_not_count_inert_content(scorer: Scorer) -> None:
    """A clean copy of a reference bloated with metadata is not a collapse, though under half its length."""
    svg = (SVG_DEV / "twemoji__1fab4.svg").read_text()
    bloated = svg.replace(">", "><metadata>" + "x " * 3 * len(svg) + "</metadata>", 1)
    ((result, _),) = scorer.score(bloated, [svg])
    assert result.status.value == "ok" and "length_collapse" in result.flags and result.components["length"] == -1.0
