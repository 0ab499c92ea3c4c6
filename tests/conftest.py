"""Shared fixtures: the svg_dev corpus, fast settings, one embedded pipeline per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.reward_api.core.settings import Settings
from services.reward_api.pipeline import Pipeline
from services.reward_api.svg.policy import check_svg
from services.reward_api.svg.render import render

REPO = Path(__file__).resolve().parents[1]
SVG_DEV = REPO / "data" / "svg_dev"


def render_checked(svg: str, renderer: str, settings: Settings, size: int = 128, **check: Any) -> np.ndarray:
    """``svg`` through the policy (``check`` goes to ``check_svg``) and one renderer, as a worker does."""
    checked = check_svg(svg, width=size, height=size, font_family=settings.font_family, **check)
    assert checked.document is not None, checked
    return render(
        checked.document,
        width=size,
        height=size,
        renderer=renderer,  # type: ignore[arg-type]
        font_file=settings.font_file,
        font_family=settings.font_family,
    )


def svg_dev_files() -> list[Path]:
    files = sorted(SVG_DEV.glob("*.svg"))
    if not files:
        raise RuntimeError(f"svg_dev corpus not found at {SVG_DEV} (it ships in the repository: is the clone whole?)")
    return files


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(workers=2, render_timeout_s=2.0, worker_memory_mb=1536)


@pytest.fixture(scope="session")
def pipeline(settings: Settings) -> Iterator[Pipeline]:
    with Pipeline.embedded(settings) as p:
        yield p


@pytest.fixture(scope="session")
def model_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random DreamSim (ensemble) and CLIP weights in their real on-disk formats, built once."""
    from tests.models._weights import make_clip_checkpoint, make_dreamsim_dir

    root = tmp_path_factory.mktemp("weights")
    checkpoint, config = make_clip_checkpoint(root / "clip")
    return {
        "dreamsim_dir": make_dreamsim_dir(root / "dreamsim"),
        "clip_checkpoint": checkpoint,
        "clip_model_config": config,
    }


@pytest.fixture(scope="session")
def eval_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A random alexnet trunk for LPIPS and a tiny random DINOv2 directory (``rlrf eval``), built once."""
    from tests.models._weights import make_dino_dir, make_lpips_backbone

    root = tmp_path_factory.mktemp("eval-weights")
    return {
        "alex": make_lpips_backbone(root / "alexnet-owt-7be5be79.pth", "alex"),
        "dino": make_dino_dir(root / "dinov2"),
    }


@pytest.fixture(scope="session")
def model_settings(settings: Settings, model_weights: dict[str, Path]) -> Settings:
    """The session settings plus the tiny learned models."""
    return settings.model_copy(update=model_weights)
