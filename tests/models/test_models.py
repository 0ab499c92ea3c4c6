"""The learned models: loaders read the real on-disk formats, embeddings behave, batching merges."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from services.reward_api.components import COMPONENTS, Canvas, Sample
from services.reward_api.core.errors import ConfigError, MissingWeightsError, UnavailableComponentError
from services.reward_api.core.settings import Settings
from services.reward_api.models.batcher import Batcher
from services.reward_api.models.clip import load_clip
from services.reward_api.models.dreamsim import load_dreamsim
from services.reward_api.models.scorer import ModelScorer
from services.reward_api.scoring import render_job, render_reference
from services.reward_api.svg.policy import PolicyLimits
from tests.conftest import svg_dev_files
from tests.models._weights import make_dreamsim_dir


def _renders(settings: Settings, count: int) -> list[np.ndarray]:
    """Real renders of svg_dev files (BGR uint8, as Canvas holds them)."""
    job = render_job(settings, limits=PolicyLimits(reject_embedded_raster=False))
    images = []
    for path in svg_dev_files()[:: 300 // count][:count]:
        rendered = render_reference(None, path.read_text(), job=job)
        assert rendered.image is not None, path.name
        images.append(rendered.image)
    return images


@pytest.fixture(scope="module")
def renders(settings: Settings) -> list[np.ndarray]:
    return _renders(settings, 6)


def _rgb(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.ascontiguousarray(i[:, :, ::-1]) for i in images]))


def test_dreamsim_loader_reads_the_cache_layout_and_applies_the_lora_adapter(model_weights: dict[str, Path]) -> None:
    root = model_weights["dreamsim_dir"]
    model = load_dreamsim(root, "ensemble")
    # Three backbones (DINO CLS 64 + two projected CLIP embeddings of 32): DreamSim's concatenation.
    assert [type(e.model).__name__ for e in model.model.extractor_list] == ["VisionTransformer"] * 3
    dino = torch.load(root / "checkpoints/dino_vitbase16_pretrain.pth", weights_only=True)
    merged = model.model.extractor_list[0].model.blocks[0].attn.qkv.weight
    assert merged.shape == dino["blocks.0.attn.qkv.weight"].shape
    assert not torch.equal(merged, dino["blocks.0.attn.qkv.weight"])  # the LoRA delta was merged in
    assert torch.equal(model.model.extractor_list[0].model.pos_embed, dino["pos_embed"])  # untouched by LoRA


def test_dreamsim_matches_dreamsims_own_distance_and_is_deterministic(
    model_weights: dict[str, Path], renders: list[np.ndarray]
) -> None:
    model = load_dreamsim(model_weights["dreamsim_dir"])
    x = _rgb(renders)
    first, second = model.embed(x), model.embed(x)
    assert torch.equal(first, second)
    assert torch.allclose(first.norm(dim=1), torch.ones(len(x)), atol=1e-5)
    # PerceptualModel.forward is DreamSim's distance: 1 - cos of the two embeddings.
    images = x.permute(0, 3, 1, 2).float() / 255
    distance = model.model(images[:1], images[1:2])
    assert float(distance) == pytest.approx(1 - float(first[0] @ first[1]), abs=1e-5)


def test_dreamsim_batched_equals_one_by_one(model_weights: dict[str, Path], renders: list[np.ndarray]) -> None:
    model = load_dreamsim(model_weights["dreamsim_dir"])
    x = _rgb(renders)
    batched = model.embed(x)
    single = torch.cat([model.embed(x[i : i + 1]) for i in range(len(x))])
    assert torch.allclose(batched, single, atol=1e-5)


def test_dreamsim_rewards_identical_max_and_different_lower(
    model_weights: dict[str, Path], renders: list[np.ndarray]
) -> None:
    model = load_dreamsim(model_weights["dreamsim_dir"])
    e = model.embed(_rgb(renders)).numpy()
    dreamsim = COMPONENTS["dreamsim"]
    same = dreamsim.compute(Sample(features={"dreamsim": e[0]}), Sample(features={"dreamsim": e[0]}))
    assert same == pytest.approx(1.0)
    others = [
        dreamsim.compute(Sample(features={"dreamsim": e[i]}), Sample(features={"dreamsim": e[0]}))
        for i in range(1, len(e))
    ]
    assert all(-1.0 <= r < 1.0 - 1e-4 for r in others), others


@pytest.mark.parametrize("missing", ["checkpoints/dino_vitbase16_pretrain.pth", "ensemble_lora/adapter_config.json"])
def test_missing_dreamsim_file_is_a_clear_error_naming_it(
    model_weights: dict[str, Path], tmp_path: Path, missing: str
) -> None:
    root = tmp_path / "dreamsim"
    shutil.copytree(model_weights["dreamsim_dir"], root)
    (root / missing).unlink()
    with pytest.raises(MissingWeightsError, match=rf"missing weight file .*{missing}.*rlrf models fetch"):
        load_dreamsim(root)
    with pytest.raises(MissingWeightsError, match="is not a directory"):
        load_dreamsim(tmp_path / "nowhere")


def test_single_backbone_variant_loads(tmp_path: Path, renders: list[np.ndarray]) -> None:
    root = make_dreamsim_dir(tmp_path / "dino", "dino_vitb16", seed=3)
    assert load_dreamsim(root, "dino_vitb16").embed(_rgb(renders[:2])).shape == (2, 64)


def test_clip_loader_reads_an_open_clip_checkpoint(model_weights: dict[str, Path], renders: list[np.ndarray]) -> None:
    clip = load_clip(model_weights["clip_checkpoint"], config=model_weights["clip_model_config"])
    x = _rgb(renders)
    images = clip.embed_images(x)
    assert images.shape == (len(renders), 32)
    assert torch.equal(images, clip.embed_images(x))
    assert torch.allclose(images, torch.cat([clip.embed_images(x[i : i + 1]) for i in range(len(x))]), atol=1e-5)
    texts = clip.embed_texts(["a red circle", "a flag with three stripes", "a red circle"])
    assert torch.allclose(texts[0], texts[2]) and not torch.allclose(texts[0], texts[1])
    # The checkpoint's weights, not a fresh initialisation, are what runs.
    state = torch.load(model_weights["clip_checkpoint"], weights_only=True)
    assert torch.equal(clip.model.visual.conv1.weight, state["visual.conv1.weight"])


def test_clip_errors_name_the_problem(model_weights: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError, match=r"nope\.bin"):
        load_clip(tmp_path / "nope.bin")
    with pytest.raises(ConfigError, match="unknown open_clip architecture"):
        load_clip(model_weights["clip_checkpoint"], model_name="no-such-model")


def test_batcher_merges_concurrent_requests_and_keeps_order() -> None:
    calls: list[int] = []

    def double(items: list[int]) -> list[int]:
        calls.append(len(items))
        return [2 * i for i in items]

    batcher: Batcher[int, int] = Batcher(double, max_batch=64, max_wait_s=0.2, name="test")
    results: dict[int, list[int]] = {}

    def client(k: int) -> None:
        results[k] = batcher.run(list(range(10 * k, 10 * k + 4)))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {k: [2 * i for i in range(10 * k, 10 * k + 4)] for k in range(8)}
    assert sum(calls) == 32 and len(calls) < 8  # merged: fewer forward passes than requests
    # A request larger than max_batch is split; an error reaches the caller and the loop survives.
    assert batcher.run(list(range(150))) == [2 * i for i in range(150)] and calls[-1] == 150 - 128
    failing: Batcher[int, int] = Batcher(lambda items: 1 / 0, max_batch=4, max_wait_s=0.0, name="fail")  # type: ignore[arg-type,return-value]
    with pytest.raises(ZeroDivisionError):
        failing.run([1])
    with pytest.raises(ZeroDivisionError):
        failing.run([2])
    batcher.close()
    failing.close()


def test_batcher_runs_a_lone_request_after_max_wait() -> None:
    batcher: Batcher[int, int] = Batcher(lambda items: items, max_batch=1000, max_wait_s=0.05, name="wait")
    started = time.monotonic()
    assert batcher.run([1]) == [1]
    assert 0.04 <= time.monotonic() - started < 1.0
    batcher.close()


def test_model_scorer_embeds_canvas_arrays_and_reports_unconfigured(
    model_settings: Settings, settings: Settings, renders: list[np.ndarray]
) -> None:
    scorer = ModelScorer(model_settings)
    edges = [Canvas(image).edges for image in renders[:3]]
    out = scorer.embed(
        {"dreamsim": renders[:3], "dreamsim_edges": edges, "clip_image": renders[:3], "clip_text": ["x"]}
    )
    assert {k: v.shape for k, v in out.items()} == {
        "dreamsim": (3, 128),
        "dreamsim_edges": (3, 128),
        "clip_image": (3, 32),
        "clip_text": (1, 32),
    }
    # Same DreamSim model, different inputs: rgb and edges embed differently.
    assert not np.allclose(out["dreamsim"], out["dreamsim_edges"])
    scorer.close()
    with pytest.raises(UnavailableComponentError, match="RLRF_DREAMSIM_DIR"):
        ModelScorer(settings).embed({"dreamsim": renders[:1]})


def test_rlrf_models_check_and_fetch_dry_run(
    model_weights: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.reward_api.cli import main

    monkeypatch.setenv("RLRF_CLIP_MODEL_CONFIG", str(model_weights["clip_model_config"]))
    args = [
        "--dreamsim-dir",
        str(model_weights["dreamsim_dir"]),
        "--clip-checkpoint",
        str(model_weights["clip_checkpoint"]),
    ]
    assert main(["models", "check", *args]) == 0
    out = capsys.readouterr().out
    assert "dreamsim: ok, embedding dim 128" in out and "clip_text: ok, embedding dim 32" in out
    assert main(["models", "fetch", "--dry-run", "--dreamsim-dir", "/tmp/ds", "--clip-checkpoint", "/tmp/c.bin"]) == 0
    out = capsys.readouterr().out
    assert "dreamsim_ensemble_checkpoint.zip -> unzip into /tmp/ds" in out
    assert "dino_vitbase16_pretrain.pth -> /tmp/ds/checkpoints/dino_vitbase16_pretrain.pth" in out
    monkeypatch.delenv("RLRF_CLIP_MODEL_CONFIG")
    assert main(["models", "check", "--dreamsim-dir", "/nonexistent"]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_closed_scorer_refuses_work_and_a_short_batch_fails_every_caller(model_settings: Settings) -> None:
    scorer = ModelScorer(model_settings)
    scorer.close()
    with pytest.raises(RuntimeError, match="closed"):
        scorer.embed({"clip_text": ["a cat"]})
    short: Batcher[int, int] = Batcher(lambda items: items[:-1], max_batch=8, max_wait_s=0.0, name="short")
    with pytest.raises(RuntimeError, match="returned 1 results for 2 items"):
        short.run([1, 2])
    short.close()
