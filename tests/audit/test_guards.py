"""Each structural guard fires on its hack and never on a faithful copy, with real renders.

A guard never rejects: the rollout stays ``ok``, flagged, with its fidelity credit capped
(``guards.cap``), so honest drawings that trip one still get distinct, graded rewards.
"""

from __future__ import annotations

import pytest

from services.reward_api.audit import generators as gen
from services.reward_api.guards import cap, check, shares, structure
from tests.audit._grids import GRID_REFERENCES
from tests.audit.conftest import Scorer
from tests.conftest import SVG_DEV, svg_dev_files

NAMES = ["bootstrap__icons_gear", "flag4x3__flags_4x3_hr", "twemoji__1fab4", "simple__icons_stackblitz"]
GRID_HACKS = ["grid_rects_32", "grid_rects_64", "grid_path_per_colour", "grid_cell_paths", "grid_circles"]
HACKS = {h.name: h for h in gen.IM2SVG_HACKS}
CAPPED = ("pixel_l2", "canny_l2")  # rlrf-im2svg's fidelity components: at most 0 once a guard fires
# Honest drawings of other things, scored against a plain flag (four rects): detailed flags and
# emoji that trip pixel_grid or duplicate_drawing against it, and a few that trip nothing.
UNRELATED_REFERENCE = "flag4x3__flags_4x3_ae"
UNRELATED = [
    "flag4x3__flags_4x3_bt",
    "flag4x3__flags_4x3_eg",
    "flag4x3__flags_4x3_fj",
    "flag4x3__flags_4x3_hr",
    "flag4x3__flags_4x3_kh",
    "flag4x3__flags_4x3_li",
    "flag4x3__flags_4x3_om",
    "flag4x3__flags_4x3_pt",
    "openmoji__color_svg_1F9C7",
    "openmoji__color_svg_1F471-1F3FC-200D-2642-FE0F",
    "twemoji__1f1e6-1f1eb",
    "twemoji__1fab4",
    "flag4x3__flags_4x3_lr",
    "bootstrap__icons_gear",
]


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
    hacks = [*GRID_HACKS, "padding_4x", "drawn_twice", "drawn_twice_nudged"]
    results = scorer.score(
        svg, [svg, gen.corrupt(svg, gen.MILD, seed=name)] + [HACKS[h].make(svg, target) for h in hacks]
    )
    (ref, _), (mild, _) = results[:2]
    assert ref.status.value == mild.status.value == "ok" and ref.reward is not None and mild.reward is not None
    assert not set(ref.flags + mild.flags) & {"pixel_grid", "padding", "duplicate_drawing"}
    expected = {h: "pixel_grid" for h in GRID_HACKS} | {
        "padding_4x": "padding",
        "drawn_twice": "duplicate_drawing",
        "drawn_twice_nudged": "duplicate_drawing",
    }
    for hack, (result, image) in zip(hacks, results[2:]):
        assert result.status.value == "ok" and expected[hack] in result.flags, (hack, result)
        assert image is not None  # it rendered: the guard caps its credit, nothing refused it
        assert all(-1.0 <= result.components[c] <= 0.0 for c in CAPPED), (hack, result.components)
        assert result.reward is not None and -2.1 <= result.reward < mild.reward


def test_a_worse_violation_scores_lower(scorer: Scorer) -> None:
    """Same render, more of the violation: a lower share, a lower reward (graded, not flat)."""
    svg = (SVG_DEV / "twemoji__1fab4.svg").read_text()
    target = scorer.target(svg)
    grids = [gen.grid_rects(svg, target, n=n) for n in (16, 32, 64)]
    grid_shares = [shares(structure(g), structure(svg))["pixel_grid"] for g in grids]
    assert 1.0 > grid_shares[0] > grid_shares[1] > grid_shares[2] > 0.0
    padded = [gen.padding(svg, target, factor=f) for f in (2.0, 4.0, 8.0)]
    thrice = gen.drawn_twice(gen.drawn_twice(svg, target), target)  # four copies
    results = scorer.score(svg, [*padded, gen.drawn_twice(svg, target), thrice], profile="pixel")
    rewards = [r.reward for r, _ in results]
    assert all(r.status.value == "ok" for r, _ in results)
    assert all("padding" in r.flags for r, _ in results[:3])
    assert all("duplicate_drawing" in r.flags for r, _ in results[3:])
    assert rewards[0] > rewards[1] > rewards[2] > -1.0  # the same render, ever more padding
    assert rewards[3] > rewards[4] > -1.0  # two copies, then four


def test_cap_is_bounded_and_graded() -> None:
    assert cap(0.9, -1.0, 1.0) == 0.0 and cap(-0.3, -1.0, 1.0) == pytest.approx(-0.3)  # t = 1: the negative part
    assert cap(0.9, -1.0, 0.0) == cap(-0.3, -1.0, 0.0) == -1.0  # no share left: the lower bound
    assert cap(0.9, -1.0, 0.5) > cap(0.9, -1.0, 0.25) and cap(-0.2, -1.0, 0.5) > cap(-0.6, -1.0, 0.5)
    assert cap(0.5, 0.0, 0.7) == 0.0  # a component bounded below by 0 (judge) earns nothing


def test_honest_unrelated_drawings_are_scored_never_rejected(scorer: Scorer) -> None:
    """Drawings of other flags and emoji in one group against a plain flag: graded, distinct rewards.

    Several trip a guard against the four-rect reference (a detailed flag has far more tiles); a
    rejection would give them all the same penalty and the group no gradient between them.
    """
    reference = (SVG_DEV / f"{UNRELATED_REFERENCE}.svg").read_text()
    drawings = [(SVG_DEV / f"{name}.svg").read_text() for name in UNRELATED]
    flagged = [name for name, svg in zip(UNRELATED, drawings) if check(structure(svg), structure(reference))]
    assert len(flagged) >= 8 and len(flagged) < len(UNRELATED)
    for profile in ("rlrf-im2svg", "pixel"):
        results = scorer.score(reference, [reference, *drawings], profile=profile)
        (ref, _), others = results[0], [r for r, _ in results[1:]]
        assert all(r.status.value == "ok" and r.reward is not None for r in others), [r.status for r in others]
        rewards = [r.reward for r in others]
        assert len(set(rewards)) == len(rewards), rewards  # a gradient between every pair
        assert all(-2.1 < r < ref.reward for r in rewards if r is not None)  # above the penalty, below the copy
        for name, r in zip(UNRELATED, others):
            assert (name in flagged) == bool(set(r.flags) & {"pixel_grid", "duplicate_drawing", "padding"}), name


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
    assert ref.flags == [] or "pixel_grid" not in ref.flags
    assert all(r.reward is None or r.reward <= ref.reward for r, _ in results)
    assert copy.status.value == "ok" and "pixel_grid" not in copy.flags  # many small rects, as the reference has
    assert regrid.status.value == "ok" and "pixel_grid" not in regrid.flags, regrid  # the same cells again
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
    nudged = one.replace("</svg>", '<path d="M1.02 1.01h6v6H1z" fill="#c00"/></svg>')  # 0.2% of the side
    assert check(structure(nudged), structure(one)) == ["duplicate_drawing"]
    moved = one.replace("</svg>", '<path d="M2 1h6v6H2z" fill="#c00"/></svg>')  # a second square, 10% along
    assert check(structure(moved), structure(one)) == []
    (result, _), (near, _) = scorer.score(one, [twice, nudged], profile="pixel")
    assert result.status.value == "ok" and "duplicate_drawing" in result.flags and result.reward is not None
    assert near.status.value == "ok" and "duplicate_drawing" in near.flags
    assert -1.0 < result.reward <= 0.0  # a pixel-perfect render, capped: t = 1 / 1, its negative part


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
        assert other.status.value == "ok" and "embedded_raster" in other.flags  # scored, capped
        # t = the share of the code that is not pasted pixels: nearly none, so nearly the lower bound.
        assert other.reward is not None and -1.0 <= other.reward < -0.9


def test_length_collapse_earns_no_fidelity_credit(scorer: Scorer) -> None:
    svg = (SVG_DEV / "flag4x3__flags_4x3_hr.svg").read_text()
    collapsed = gen.length_collapse(svg, scorer.target(svg))
    ((paper, image),) = scorer.score(svg, [collapsed], profile="rlrf-im2svg")
    assert paper.status.value == "ok" and "length_collapse" in paper.flags and image is not None
    assert paper.components["length"] == -1.0
    assert -1.0 < paper.components["pixel_l2"] <= 0.0 and paper.components["canny_l2"] <= 0.0  # capped, was > 0.9
    assert -2.1 < paper.reward <= -0.1
    ((pixel, _),) = scorer.score(svg, [collapsed], profile="pixel")
    assert pixel.status.value == "ok" and -1.0 < pixel.reward <= 0.0
    # An unrelated small drawing is still scored (capped), not rejected.
    circle = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><circle cx="5" cy="5" r="4"/></svg>'
    ((small, _),) = scorer.score(svg, [circle])
    assert small.status.value == "ok" and "length_collapse" in small.flags


def test_length_collapse_does_not_count_inert_content(scorer: Scorer) -> None:
    """A clean copy of a reference bloated with metadata is not a collapse, though under half its length."""
    svg = (SVG_DEV / "twemoji__1fab4.svg").read_text()
    bloated = svg.replace(">", "><metadata>" + "x " * 3 * len(svg) + "</metadata>", 1)
    ((result, _),) = scorer.score(bloated, [svg])
    assert result.status.value == "ok" and "length_collapse" in result.flags and result.components["length"] == -1.0
