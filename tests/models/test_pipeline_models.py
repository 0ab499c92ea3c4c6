"""Learned components through the one pipeline: Im2SVG DreamSim, Text2SVG CLIP, and their failures."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.reward_api.core.errors import BadReferenceError, MissingWeightsError, UnavailableComponentError
from services.reward_api.core.results import Status
from services.reward_api.core.schemas import ScoreRequest
from services.reward_api.core.settings import Settings
from services.reward_api.pipeline import Pipeline
from tests.conftest import svg_dev_files

CIRCLE = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><circle cx="32" cy="32" r="20" fill="red"/></svg>'
WORDS = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><circle cx="32" cy="32" r="20" fill="red"/>'
    '<text x="4" y="60" font-size="12">a red circle</text></svg>'
)


@pytest.fixture(scope="module")
def model_pipeline(model_settings: Settings) -> Iterator[Pipeline]:
    with Pipeline.embedded(model_settings) as p:
        yield p


def test_im2svg_full_profile_scores_dreamsim_on_renders_and_edges(model_pipeline: Pipeline) -> None:
    files = svg_dev_files()
    reference, other = files[10].read_text(), files[200].read_text()
    result = model_pipeline.score_group(
        ScoreRequest(
            reference={"svg": reference},
            completions=[reference, other, "no svg here", f"```svg\n{reference}\n```"],
            profile="rlrf-im2svg-full",
        )
    )
    itself, different, missing, fenced = result.results
    assert itself.status is Status.ok and set(itself.components) == {
        "pixel_l2",
        "canny_l2",
        "dreamsim",
        "dreamsim_canny",
        "length",
    }
    assert itself.components["dreamsim"] == pytest.approx(1.0, abs=1e-5)
    assert itself.components["dreamsim_canny"] == pytest.approx(1.0, abs=1e-5)
    assert different.components["dreamsim"] < 1.0 - 1e-4 and different.components["dreamsim_canny"] < 1.0 - 1e-4
    assert fenced.components == pytest.approx(itself.components)
    # A failure scores every weighted component at its lower bound: -1 x (1+1+1+1+0.1).
    assert missing.status is Status.no_svg and missing.reward == pytest.approx(-4.1)
    assert "models_judge" in result.timings_ms


def test_reference_embeddings_are_cached_by_content(model_pipeline: Pipeline) -> None:
    reference = svg_dev_files()[20].read_text()
    request = ScoreRequest(reference={"svg": reference}, completions=[reference], profile="dreamsim")
    model_pipeline.score_group(request)
    cached = len(model_pipeline.references._features)
    again = model_pipeline.score_group(request)
    assert len(model_pipeline.references._features) == cached
    assert again.results[0].components["dreamsim"] == pytest.approx(1.0)


def test_text2svg_scores_clip_text_with_text_removed(model_pipeline: Pipeline) -> None:
    result = model_pipeline.score_group(
        ScoreRequest(
            task="text2svg",
            reference={"text": "a red circle"},
            completions=[CIRCLE, WORDS, "<svg"],
            profile="rlrf-text2svg",
        )
    )
    plain, with_words, broken = result.results
    assert plain.status is Status.ok and -1.0 <= plain.components["clip_text"] <= 1.0
    # The prompt written as <text> is cut before rendering: the same drawing, the same score.
    assert "text_removed" in with_words.flags
    assert with_words.components["clip_text"] == pytest.approx(plain.components["clip_text"], abs=1e-6)
    assert broken.status is Status.truncated and broken.reward == pytest.approx(-1.0)


def test_text_only_reference_rejects_components_that_need_an_image(model_pipeline: Pipeline) -> None:
    with pytest.raises(BadReferenceError, match="pixel_l2"):
        model_pipeline.score_group(ScoreRequest(task="text2svg", reference={"text": "a cat"}, completions=[CIRCLE]))


def test_unconfigured_model_is_a_request_error_not_a_score(pipeline: Pipeline) -> None:
    with pytest.raises(UnavailableComponentError, match="RLRF_DREAMSIM_DIR"):
        pipeline.score_group(ScoreRequest(reference={"svg": CIRCLE}, completions=[CIRCLE], profile="dreamsim"))


def test_model_failure_is_status_error_with_null_reward(model_settings: Settings, monkeypatch) -> None:
    with Pipeline.embedded(model_settings.model_copy(update={"workers": 1})) as pipeline:
        pipeline.score_group(ScoreRequest(reference={"svg": CIRCLE}, completions=[CIRCLE], profile="dreamsim"))

        def broken(batch):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

        monkeypatch.setattr(pipeline.backend.models, "_forward_fn", lambda spec: broken)
        monkeypatch.setattr(pipeline.backend.models, "_batchers", {})  # rebuilt with the broken forward
        result = pipeline.score_group(
            ScoreRequest(reference={"svg": CIRCLE}, completions=[CIRCLE, "nothing"], profile="dreamsim")
        )
    failed, no_svg = result.results
    assert failed.status is Status.error and failed.reward is None and "illegal memory access" in failed.detail
    assert no_svg.status is Status.no_svg and no_svg.reward == -1.0  # the model's failure is not the rollout's


def test_missing_weight_file_fails_at_startup(model_settings: Settings, tmp_path: Path) -> None:
    root = tmp_path / "dreamsim"
    shutil.copytree(model_settings.dreamsim_dir, root)
    (root / "clip_vitb16_pretrain.pth.tar").unlink()
    with pytest.raises(MissingWeightsError, match=r"clip_vitb16_pretrain\.pth\.tar"):
        Pipeline.embedded(model_settings.model_copy(update={"dreamsim_dir": root}))


def test_http_service_loads_the_models_at_startup_and_scores_them(model_settings: Settings) -> None:
    import httpx

    from services.reward_api.api.main import create_app
    from tests.api.conftest import running

    app = create_app(model_settings.model_copy(update={"workers": 1}))
    with running(app) as base:
        assert app.state.service.pipeline.backend.models._models.keys() == {"dreamsim", "clip"}  # before any request
        body = {"reference": {"svg": CIRCLE}, "completions": [CIRCLE, WORDS], "profile": "rlrf-im2svg-full"}
        response = httpx.post(f"{base}/score", json=body, timeout=120)
    assert response.status_code == 200, response.text
    first, second = response.json()["results"]
    assert first["components"]["dreamsim"] == pytest.approx(1.0, abs=1e-5)
    assert "text_elements" in second["flags"] and second["components"]["dreamsim"] < 1.0


def test_text_is_cut_whenever_a_text_reward_is_in_play(model_pipeline: Pipeline) -> None:
    # No task given (the default is im2svg), as the OpenRLHF route sends it: a text-only reference
    # still means Text2SVG, and the prompt written as <text> still earns nothing.
    result = model_pipeline.score_group(
        ScoreRequest(reference={"text": "a red circle"}, completions=[CIRCLE, WORDS], profile="rlrf-text2svg")
    )
    plain, with_words = result.results
    assert "text_removed" in with_words.flags
    assert with_words.components["clip_text"] == pytest.approx(plain.components["clip_text"], abs=1e-6)
