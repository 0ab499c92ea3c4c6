"""The miniature, shortened: data, SFT, GRPO on `rlrf serve` over HTTP, `rlrf eval`, figures (one seed)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="the trainer extra (trl, torch) is not installed")
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_shortened_miniature_produces_every_artefact(tmp_path: Path) -> None:
    out = tmp_path / "mini"
    cmd = [sys.executable, str(REPO / "examples/miniature/run.py"), "--out", str(out), "--seeds", "0"]
    cmd += ["--train", "48", "--heldout", "8", "--sft-epochs", "1", "--grpo-steps", "3", "--port", str(_free_port())]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    seed = out / "seed0"
    for path in ("sft/config.json", "grpo/config.json", "eval_sft.json", "eval_grpo.json"):
        assert (seed / path).exists(), path
    for name in ("reward_curve.png", "heldout_metrics.png", "heldout_renders.png"):
        assert (out / "figures" / name).stat().st_size > 1000, name
    for stage in ("sft", "grpo"):
        report = json.loads((seed / f"eval_{stage}.json").read_text())
        assert report["counts"]["samples"] == 8 and report["counts"]["errors"] == 0
    history = [h for h in json.loads((seed / "grpo/trainer_state.json").read_text())["log_history"] if "reward" in h]
    assert len(history) == 3
    for step in history:  # every rollout got a reward from the service, and its parts were logged
        assert step["rlrf/unscored"] == 0.0
        assert {"rewards/pixel_l2/mean", "rewards/canny_l2/mean", "rewards/length/mean"} <= set(step)
        assert step["completions/max_length_cap"] <= 96
    summary = json.loads((out / "summary.json").read_text())
    assert [s["seed"] for s in summary["seeds"]] == [0]
    row = summary["seeds"][0]
    for stage in ("sft", "grpo"):  # held-out prompts sampled as rollouts and scored by the service
        assert row[f"heldout_reward_{stage}"] is not None
        assert 0.0 <= row[f"heldout_non_ok_{stage}"] <= 1.0 and 0.0 <= row[f"heldout_flagged_{stage}"] <= 1.0
