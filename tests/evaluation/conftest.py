"""The eval tests read no RLRF_* variable of this machine (the weights fixture: tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The eval reads RLRF_* variables: a judge or weights configured on this machine must not leak in."""
    for name in ("JUDGE_URL", "LPIPS_BACKBONE", "LPIPS_NET", "LPIPS_INPUTS", "DINO_DIR", "CLIP_CHECKPOINT", "DEVICE"):
        monkeypatch.delenv(f"RLRF_{name}", raising=False)
