"""Fixtures of the eval tests: tiny weights in real formats (built once), a corpus of real SVGs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.eval._weights import make_dino_dir, make_lpips_backbone


@pytest.fixture(scope="session")
def eval_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A random alexnet trunk for LPIPS and a tiny random DINOv2 directory."""
    root = tmp_path_factory.mktemp("eval-weights")
    return {
        "alex": make_lpips_backbone(root / "alexnet-owt-7be5be79.pth", "alex"),
        "dino": make_dino_dir(root / "dinov2"),
    }


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The eval reads RLRF_* variables: a judge or weights configured on this machine must not leak in."""
    for name in ("JUDGE_URL", "LPIPS_BACKBONE", "LPIPS_NET", "LPIPS_INPUTS", "DINO_DIR", "CLIP_CHECKPOINT", "DEVICE"):
        monkeypatch.delenv(f"RLRF_{name}", raising=False)
