"""``/dashboard``: the last scored groups with their renders, checked in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from services.reward_api.api.main import create_app
from services.reward_api.core.settings import Settings
from services.reward_api.pipeline import Pipeline
from tests.api.conftest import running

RED = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><circle cx="32" cy="32" r="24" fill="#e00"/></svg>'
SHIFTED = RED.replace('cx="32"', 'cx="40"')
HOSTILE = '<svg xmlns="http://www.w3.org/2000/svg"><image href="file:///etc/passwd" width="9" height="9"/></svg>'


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=4000"]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=120, check=True)


def test_dashboard_shows_each_rollout_render_with_its_reward(
    settings: Settings, pipeline: Pipeline, tmp_path: Path
) -> None:
    app = create_app(settings.model_copy(update={"dashboard_interval_s": 0.0, "dashboard_groups": 3}), pipeline)
    with running(app) as base:
        body = {"reference": {"svg": RED}, "completions": [RED, SHIFTED, "just prose", HOSTILE], "request_id": "g-1"}
        assert httpx.post(f"{base}/score", json=body, timeout=60).status_code == 200
        data = httpx.get(f"{base}/dashboard/data", timeout=10).json()
        (group,) = data["groups"]
        assert group["request_id"] == "g-1" and group["reference"].startswith("data:image/png;base64,")
        statuses = [r["status"] for r in group["rollouts"]]
        assert statuses == ["ok", "ok", "no_svg", "rejected"]
        assert [r["image"] is not None for r in group["rollouts"]] == [True, True, False, False]
        assert group["rollouts"][0]["reward"] > group["rollouts"][1]["reward"] > group["rollouts"][2]["reward"]

        # Only the last `dashboard_groups` are kept, newest first.
        for k in range(4):
            httpx.post(f"{base}/score", json={**body, "request_id": f"g-{k + 2}"}, timeout=60)
        ids = [g["request_id"] for g in httpx.get(f"{base}/dashboard/data", timeout=10).json()["groups"]]
        assert ids == ["g-5", "g-4", "g-3"]

        dom = _chromium("--dump-dom", f"{base}/dashboard").stdout
        # Elements the script built (the script's own template text has "${...}" where these have values).
        assert len(re.findall(r'data-seq="\d+"', dom)) == 3
        assert len(re.findall(r'alt="rollout \d+"', dom)) == 6  # the 2 renders of each group
        assert "no_svg" in dom and "rejected" in dom and "g-5" in dom
        shot = tmp_path / "dashboard.png"
        _chromium(f"--screenshot={shot}", "--window-size=1200,900", f"{base}/dashboard")
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (900, 1200)
    b, g, r = (image[:, :, c].astype(int) for c in range(3))
    red = np.count_nonzero((r > 180) & (g < 80) & (b < 80))
    assert red > 5000, f"the rendered red circles are not on the page ({red} red pixels)"


def test_dashboard_token_travels_in_the_fragment_and_a_header_never_the_url(
    settings: Settings, pipeline: Pipeline
) -> None:
    app = create_app(
        settings.model_copy(update={"api_token": SecretStr("s3cret"), "dashboard_interval_s": 0.0}), pipeline
    )
    with running(app) as base:
        auth = {"Authorization": "Bearer s3cret"}
        body = {"reference": {"svg": RED}, "completions": [RED], "request_id": "secret-group"}
        assert httpx.post(f"{base}/score", json=body, headers=auth, timeout=60).status_code == 200
        assert httpx.get(f"{base}/dashboard/data").status_code == 401
        assert httpx.get(f"{base}/dashboard/data?token=s3cret").status_code == 401  # a token in a URL is refused
        assert httpx.get(f"{base}/dashboard/data", headers=auth).status_code == 200
        assert httpx.get(f"{base}/dashboard").status_code == 200  # the page holds no data
        assert "secret-group" in _chromium("--dump-dom", f"{base}/dashboard#token=s3cret").stdout
        assert "secret-group" not in _chromium("--dump-dom", f"{base}/dashboard").stdout


def test_dashboard_off_captures_nothing(settings: Settings, pipeline: Pipeline) -> None:
    app = create_app(settings.model_copy(update={"dashboard_groups": 0}), pipeline)
    with running(app) as base:
        httpx.post(f"{base}/score", json={"reference": {"svg": RED}, "completions": [RED]}, timeout=60)
        assert httpx.get(f"{base}/dashboard/data").json()["groups"] == []
