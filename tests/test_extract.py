"""Extraction of the SVG from chat text: examples, then properties."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.reward_api.core.results import Status
from services.reward_api.svg.extract import extract_svg

SVG = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><rect width="5" height="5"/></svg>'


@pytest.mark.parametrize(
    "text",
    [
        SVG,
        f"Sure! Here it is:\n```svg\n{SVG}\n```\nHope that helps.",
        f"<think>I should use a <svg> element with a rect.</think>\n{SVG}",
        f"<think>draft: <svg><circle/></svg></think><answer>{SVG}</answer>",
        f'<?xml version="1.0"?>\n{SVG}\n',
        f"Use the <svg> tag like this:\n```xml\n{SVG}\n```",
    ],
)
def test_finds_the_answer_svg(text: str) -> None:
    assert extract_svg(text) == (Status.ok, SVG) or extract_svg(text).svg == SVG


def test_last_top_level_block_wins_and_nested_svg_stays_inside() -> None:
    nested = '<svg xmlns="http://www.w3.org/2000/svg"><svg x="1"><rect/></svg><circle/></svg>'
    assert extract_svg(f"first {SVG} then {nested}").svg == nested


def test_truncated_final_block_is_truncated_even_after_a_complete_draft() -> None:
    assert extract_svg(f"{SVG}\nrevised: <svg><rect").status is Status.truncated
    assert extract_svg("<svg width='1").status is Status.truncated
    assert extract_svg(SVG[:-3]).status is Status.truncated


def test_no_svg() -> None:
    assert extract_svg("I cannot draw that.").status is Status.no_svg
    assert extract_svg("<think>unfinished reasoning <svg><rect/></svg>").status is Status.no_svg
    assert extract_svg("").status is Status.no_svg


def test_self_closing_root() -> None:
    assert extract_svg("ok: <svg/>").svg == "<svg/>"


def test_linear_time_on_adversarial_input() -> None:
    started = time.perf_counter()
    for text in ("<svg" * 200_000, "<think>" * 200_000, "```\n" * 200_000, "<answer>" * 200_000):
        extract_svg(text)
    assert time.perf_counter() - started < 5


prose = st.text(alphabet=st.characters(blacklist_characters="<>`"), max_size=200)
attrs = st.lists(st.sampled_from(['width="10"', 'viewBox="0 0 1 1"', 'fill="red"', 'x="1"']), max_size=3)
children = st.lists(st.sampled_from(["<rect/>", "<g><circle r='1'/></g>", "<path d='M0 0L1 1'/>", "text"]), max_size=4)


@st.composite
def svgs(draw: st.DrawFn) -> str:
    return f"<svg {' '.join(draw(attrs))}>{''.join(draw(children))}</svg>"


@settings(max_examples=200, deadline=None)
@given(before=prose, after=prose, svg=svgs(), fence=st.booleans(), think=st.booleans())
def test_property_wrapped_svg_is_extracted_exactly(before: str, after: str, svg: str, fence: bool, think: bool) -> None:
    body = f"```svg\n{svg}\n```" if fence else svg
    text = ("<think>" + before + "</think>" if think else before) + body + after
    assert extract_svg(text) == extract_svg(svg)
    assert extract_svg(text).svg == svg


@settings(max_examples=200, deadline=None)
@given(svg=svgs(), cut=st.integers(min_value=1))
def test_property_every_proper_prefix_is_never_ok(svg: str, cut: int) -> None:
    prefix = svg[: cut % len(svg)]
    assert extract_svg(prefix).status in (Status.truncated, Status.no_svg)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=500))
def test_property_never_raises_and_ok_means_a_whole_block(text: str) -> None:
    result = extract_svg(text)
    assert result.status in (Status.ok, Status.no_svg, Status.truncated)
    if result.status is Status.ok:
        assert result.svg is not None and result.svg.startswith("<svg") and result.svg.endswith(">")
        assert result.svg in text
