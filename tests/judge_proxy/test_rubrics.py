"""Rubrics: verdict parsing (plain, fenced, prose, clamped, malformed), combination, schema, prompts."""

from __future__ import annotations

import pytest

from services.judge_proxy.errors import MalformedVerdictError
from services.judge_proxy.rubrics import RLRF_TEXT2SVG, RUBRICS, VFIG_IM2SVG

FULL = '{"presence": 1, "layout": 0.5, "connectivity": 0.25, "details": 0}'


def test_registry() -> None:
    assert {(r.name, r.version) for r in RUBRICS.values()} == {("vfig-im2svg", "v1"), ("rlrf-text2svg", "v1")}
    assert [a.name for a in VFIG_IM2SVG.axes] == ["presence", "layout", "connectivity", "details"]
    assert {a.weight for a in VFIG_IM2SVG.axes} == {0.25} and VFIG_IM2SVG.inputs == ["reference_image_b64"]
    assert [a.name for a in RLRF_TEXT2SVG.axes] == ["aesthetics", "resemblance", "semantic_accuracy"]
    assert {(a.low, a.high) for a in RLRF_TEXT2SVG.axes} == {(0, 10)} and RLRF_TEXT2SVG.inputs == ["prompt"]


@pytest.mark.parametrize(
    "text",
    [
        FULL,
        f"```json\n{FULL}\n```",
        f"Sure! Here is the verdict:\n```json\n{FULL}\n```\nLet me know.",
        f"```\n{FULL}\n```",
        f"My ratings are {FULL}. The layout is off.",
        f"[{FULL}]",
        f'Notes {{"looked": true}} then {FULL}',
        f"```json\n{FULL}",  # a fence that never closes
        '{"presence": "1", "layout": 0.5, "connectivity": 0.25, "details": 0, "reasoning": "ok"}',
    ],
)
def test_parse_finds_the_verdict(text: str) -> None:
    verdict = VFIG_IM2SVG.parse(text)
    assert verdict.axes == {"presence": 1.0, "layout": 0.5, "connectivity": 0.25, "details": 0.0}
    assert verdict.score == pytest.approx(0.4375) and verdict.flags == ()


def test_out_of_range_is_clamped_and_flagged() -> None:
    verdict = VFIG_IM2SVG.parse('{"presence": 7, "layout": -0.5, "connectivity": 1, "details": 1.0}')
    assert verdict.axes == {"presence": 1.0, "layout": 0.0, "connectivity": 1.0, "details": 1.0}
    assert verdict.flags == ("clamped:presence", "clamped:layout")
    assert verdict.score == 0.75


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("The candidate looks good, 8/10.", "no JSON object"),
        ("", "no JSON object"),
        ('{"presence": 1, "layout": 1, "connectivity": 1}', "no JSON object"),
        ('{"presence": 1, "layout": "good", "connectivity": 1, "details": 1}', "'layout' is not a finite number"),
        ('{"presence": NaN, "layout": 1, "connectivity": 1, "details": 1}', "'presence' is not a finite number"),
        ('{"presence": true, "layout": 1, "connectivity": 1, "details": 1}', "'presence' is not a finite number"),
        ('{"presence": 1, "layout": 1, "connectivity": 1, "details": null}', "'details' is not a finite number"),
        ('{"presence": 1, "layout": 1, "connectivity": 1, "details": 1', "no JSON object"),
    ],
)
def test_malformed_is_an_error_not_a_score(text: str, needle: str) -> None:
    with pytest.raises(MalformedVerdictError, match="malformed") as info:
        VFIG_IM2SVG.parse(text)
    assert needle in str(info.value)
    assert not info.value.retryable


def test_combine_rescales_each_axis_range() -> None:
    assert RLRF_TEXT2SVG.combine({"aesthetics": 10, "resemblance": 5, "semantic_accuracy": 0}) == 0.5
    assert RLRF_TEXT2SVG.parse('{"aesthetics": 12, "resemblance": 10, "semantic_accuracy": 10}').flags == (
        "clamped:aesthetics",
    )


def test_schema_is_strict_json_schema() -> None:
    schema = RLRF_TEXT2SVG.schema
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert schema["required"] == ["aesthetics", "resemblance", "semantic_accuracy"]
    assert schema["properties"]["resemblance"] == {
        "type": "number",
        "minimum": 0,
        "maximum": 10,
        "description": RLRF_TEXT2SVG.axes[1].description,
    }


def test_instructions_and_parts() -> None:
    text = VFIG_IM2SVG.instructions
    for axis in VFIG_IM2SVG.axes:
        assert f"- {axis.name} (0 to 1): {axis.description}" in text
    assert "(0 to 10)" in RLRF_TEXT2SVG.instructions
    parts = VFIG_IM2SVG.parts(candidate_png=b"C", reference_png=b"R", prompt="ignored")
    assert [p for p in parts if isinstance(p, bytes)] == [b"R", b"C"]
    assert not any("ignored" in p for p in parts if isinstance(p, str))
    parts = RLRF_TEXT2SVG.parts(candidate_png=b"C", prompt="a red fox")
    assert parts[0] == "Prompt: a red fox" and [p for p in parts if isinstance(p, bytes)] == [b"C"]
