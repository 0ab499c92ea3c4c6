"""The run view: per-step aggregates of real traffic, renders, alerts, ``/metrics``, in headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.reward_api.api import runs
from services.reward_api.api.main import create_app
from services.reward_api.core.results import GroupResult, RolloutResult, Status
from services.reward_api.core.schemas import ScoreRequest
from services.reward_api.core.settings import Settings
from services.reward_api.pipeline import Pipeline
from tests.api.conftest import running
from tests.api.test_dashboard import _chromium

REPO = Path(__file__).resolve().parents[2]
REFERENCE = (REPO / "examples/reference.svg").read_text()
CANDIDATES = {p.stem.split("_", 1)[1]: p.read_text() for p in sorted((REPO / "examples/candidates").glob("*.txt"))}


def _completions(step: int) -> list[str]:
    """What a policy drifting into a hack might draw: tiny viewboxes take over from step 3."""
    c = CANDIDATES
    if step < 3:
        return [c["exact"], c["recoloured"], c["shifted"], c["prose_only"], c["tiny_viewbox"], c["shifted"]]
    return [c["exact"], c["tiny_viewbox"], c["tiny_viewbox"], c["tiny_viewbox"], c["prose_only"], c["truncated"]]


def _metrics(base: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(httpx.get(f"{base}/metrics", timeout=10).text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_run_view_aggregates_real_traffic_per_step(settings: Settings, pipeline: Pipeline, tmp_path: Path) -> None:
    app = create_app(settings.model_copy(update={"dashboard_interval_s": 3600.0}), pipeline)
    answers: dict[int, list[dict]] = {}
    with running(app) as base:
        for step in range(6):
            groups = [
                {"reference": {"svg": REFERENCE}, "completions": _completions(step), "step": step, "run_id": "exp-1"}
                for _ in range(2)
            ]
            response = httpx.post(f"{base}/score/batch", json={"groups": groups}, timeout=120)
            assert response.status_code == 200, response.text
            answers[step] = [r for g in response.json()["groups"] for r in g["results"]]
            assert all(g["renders"] is None for g in response.json()["groups"])  # not asked for
        # Traffic of another run, and of no run (filed under "default"); no step: not training traffic.
        other = {"reference": {"svg": REFERENCE}, "completions": [CANDIDATES["exact"]], "step": 0, "run_id": "exp-2"}
        assert httpx.post(f"{base}/score", json=other, timeout=60).status_code == 200
        httpx.post(f"{base}/score", json={**other, "run_id": None}, timeout=60)
        httpx.post(f"{base}/score", json={**other, "step": None, "run_id": "eval"}, timeout=60)

        listing = httpx.get(f"{base}/dashboard/runs", timeout=10).json()
        assert [r["run_id"] for r in listing["runs"]] == ["default", "exp-2", "exp-1"]
        run = httpx.get(f"{base}/dashboard/run?run=exp-1", timeout=10).json()
        assert [s["step"] for s in run["steps"]] == list(range(6))
        for s in run["steps"]:
            results = answers[s["step"]]
            rewards = np.array([r["reward"] for r in results])
            assert s["groups"] == 2 and s["rollouts"] == 12
            assert s["reward"]["mean"] == pytest.approx(rewards.mean()) and s["reward"]["std"] == pytest.approx(
                rewards.std()
            )
            assert s["reward"]["min"] == pytest.approx(rewards.min()) and s["reward"]["max"] == pytest.approx(
                rewards.max()
            )
            for name in ("pixel_l2", "canny_l2"):
                values = np.array([r["components"][name] for r in results])
                assert s["components"][name]["mean"] == pytest.approx(values.mean())
                assert s["components"][name]["std"] == pytest.approx(values.std())
            statuses = [r["status"] for r in results]
            assert s["statuses"] == {k: pytest.approx(statuses.count(k) / 12) for k in set(statuses)}
            tiny = sum("tiny_viewbox" in r["flags"] for r in results) / 12
            assert s["flags"]["tiny_viewbox"] == pytest.approx(tiny)
            assert "no_svg" not in s["flags"]  # a failure's status is counted as a status, not again as a flag
            assert s["latency_ms"]["n"] == 2 and s["latency_ms"]["mean"] > 0
            assert s["renders"]  # the first groups of each step were captured for the run view
        assert run["steps"][2]["flags"]["tiny_viewbox"] == pytest.approx(2 / 12)
        assert run["steps"][5]["statuses"]["truncated"] == pytest.approx(2 / 12)

        # Alerts: over the last 5 steps (1..5), tiny_viewbox marks (2*2 + 6*3) / 60 = 0.37 > 0.25.
        (alert,) = run["alerts"]
        assert alert["kind"] == "flag" and alert["name"] == "tiny_viewbox"
        assert alert["share"] == pytest.approx((2 * 2 + 6 * 3) / 60) and alert["steps"] == 5
        assert listing["runs"][2]["alerts"] == run["alerts"]

        # The chosen step's best and worst rollouts, rendered, beside the reference.
        step = httpx.get(f"{base}/dashboard/step?run=exp-1&step=4", timeout=10).json()
        assert len(step["best"]) == 3 and len(step["worst"]) == 3
        best_rewards = [r["reward"] for r in step["best"]]
        assert best_rewards == sorted(best_rewards, reverse=True)
        assert best_rewards[0] == pytest.approx(max(r["reward"] for r in answers[4]))
        assert min(r["reward"] for r in step["worst"]) == pytest.approx(min(r["reward"] for r in answers[4]))
        assert step["best"][0]["status"] == "ok" and step["best"][0]["image"].startswith("data:image/png;base64,")
        assert all(r["reference"].startswith("data:image/png;base64,") for r in step["best"] + step["worst"])
        assert any(r["image"] is None and r["status"] in ("no_svg", "truncated") for r in step["worst"])
        assert httpx.get(f"{base}/dashboard/step?run=exp-1&step=99", timeout=10).status_code == 404
        assert httpx.get(f"{base}/dashboard/run?run=nope", timeout=10).status_code == 404

        # The same aggregates in /metrics: bounded labels, no step label.
        metrics = _metrics(base)
        labels = {k for samples in metrics.values() for labels, _ in samples for k in labels}
        assert "step" not in labels
        assert {
            s
            for name, samples in metrics.items()
            if name.startswith("rlrf_run_")
            for s in [lab["run"] for lab, _ in samples]
        } == {"exp-1", "exp-2", "default"}
        newest = run["steps"][5]
        assert dict((lab["run"], v) for lab, v in metrics["rlrf_run_step"]) == {"exp-1": 5, "exp-2": 0, "default": 0}
        assert dict((lab["run"], v) for lab, v in metrics["rlrf_run_reward_mean"])["exp-1"] == pytest.approx(
            newest["reward"]["mean"]
        )
        recent = {(lab["run"], lab["flag"]): v for lab, v in metrics["rlrf_run_recent_flag_share"]}
        assert recent[("exp-1", "tiny_viewbox")] == pytest.approx(alert["share"])
        errors = {(lab["run"], lab["status"]): v for lab, v in metrics["rlrf_run_recent_status_share"]}
        assert errors[("exp-1", "error")] == 0.0
        assert dict((lab["run"], v) for lab, v in metrics["rlrf_run_rollouts_total"])["exp-1"] == 72

        # Headless Chromium: the run view is built from that data, with the alert and the renders.
        assert '<option value="default" selected' in _chromium("--dump-dom", f"{base}/dashboard").stdout  # newest
        dom = _chromium("--dump-dom", f"{base}/dashboard#run=exp-1").stdout
        assert 'data-alert="flag:tiny_viewbox"' in dom
        assert len(re.findall(r'data-chart="', dom)) >= 6  # total, components, statuses, flags, latency
        assert 'data-chart="flag tiny_viewbox (share)"' in dom and 'data-chart="total reward (mean ± std)"' in dom
        assert len(re.findall(r'data-step="\d+"', dom)) == 6
        assert len(re.findall(r'alt="best rollout"', dom)) == 3
        assert len(re.findall(r'data-rank="worst"', dom)) == 3 and len(re.findall(r'alt="reference"', dom)) >= 2
        shot = tmp_path / "run.png"
        _chromium(f"--screenshot={shot}", "--window-size=1400,1400", f"{base}/dashboard#run=exp-1")
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (1400, 1400)
    b, g, r = (image[:, :, c].astype(int) for c in range(3))
    alert_red = np.count_nonzero((abs(r - 253) < 4) & (abs(g - 232) < 4) & (abs(b - 232) < 4))
    assert alert_red > 2000, "the alert banner (or failure tiles) is not on the page"
    assert np.count_nonzero((r > 150) & (g < 90) & (b < 90)) > 200, "the rendered red drawings are not on the page"


def test_renders_come_back_only_when_asked(settings: Settings, pipeline: Pipeline) -> None:
    app = create_app(settings.model_copy(update={"dashboard_interval_s": 3600.0}), pipeline)
    body = {"reference": {"svg": REFERENCE}, "completions": [CANDIDATES["exact"], CANDIDATES["prose_only"]]}
    with running(app) as base:
        plain = httpx.post(f"{base}/score", json=body, timeout=60).json()
        asked = httpx.post(f"{base}/score", json={**body, "renders": True}, timeout=60).json()
        batch = httpx.post(f"{base}/score/batch", json={"groups": [body, {**body, "renders": True}]}, timeout=60).json()
    assert plain["renders"] is None and batch["groups"][0]["renders"] is None
    assert asked["rewards"] == plain["rewards"]
    for renders in (asked["renders"], batch["groups"][1]["renders"]):
        assert renders["reference"].startswith("data:image/png;base64,")
        assert renders["rollouts"][0].startswith("data:image/png;base64,") and renders["rollouts"][1] is None
        png = np.frombuffer(__import__("base64").b64decode(renders["rollouts"][0].split(",", 1)[1]), np.uint8)
        assert max(cv2.imdecode(png, cv2.IMREAD_COLOR).shape[:2]) <= 128  # bounded: thumbnails


def test_runs_steps_and_labels_stay_bounded(
    settings: Settings, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs, "RENDER_STEPS", 2)
    app = create_app(settings.model_copy(update={"dashboard_runs": 2, "dashboard_steps": 3}), pipeline)
    with running(app) as base:
        for run_id in ("a", "b", "c"):
            for step in range(5):
                body = {
                    "reference": {"svg": REFERENCE},
                    "completions": [CANDIDATES["shifted"]],
                    "step": step,
                    "run_id": run_id,
                }
                assert httpx.post(f"{base}/score", json=body, timeout=60).status_code == 200
        listing = httpx.get(f"{base}/dashboard/runs", timeout=10).json()
        assert [r["run_id"] for r in listing["runs"]] == ["c", "b"]  # "a" dropped: the least recently updated
        steps = httpx.get(f"{base}/dashboard/run?run=c", timeout=10).json()["steps"]
        assert [s["step"] for s in steps] == [2, 3, 4]  # a ring of 3
        assert [s["renders"] for s in steps] == [False, True, True]  # thumbnails for the newest 2 only
        assert httpx.get(f"{base}/dashboard/run?run=a", timeout=10).status_code == 404
        runs_labelled = {lab["run"] for lab, _ in _metrics(base)["rlrf_run_step"]}
        assert runs_labelled == {"b", "c"}


def test_any_run_name_works_and_the_run_view_needs_the_token(settings: Settings, pipeline: Pipeline) -> None:
    from pydantic import SecretStr

    app = create_app(settings.model_copy(update={"api_token": SecretStr("s3cret")}), pipeline)
    auth = {"Authorization": "Bearer s3cret"}
    name = "out/grpo run #1?&"  # TRL's default run name is the output directory
    body = {"reference": {"svg": REFERENCE}, "completions": [CANDIDATES["exact"]], "step": 7, "run_id": name}
    with running(app) as base:
        assert httpx.post(f"{base}/score", json=body, headers=auth, timeout=60).status_code == 200
        for path in ("/dashboard/runs", "/dashboard/run", "/dashboard/step"):
            assert httpx.get(f"{base}{path}", params={"run": name, "step": 7}, timeout=10).status_code == 401
        run = httpx.get(f"{base}/dashboard/run", params={"run": name}, headers=auth, timeout=10).json()
        assert run["run_id"] == name and [s["step"] for s in run["steps"]] == [7]
        step = httpx.get(f"{base}/dashboard/step", params={"run": name, "step": 7}, headers=auth, timeout=10).json()
        assert step["best"][0]["reward"] == pytest.approx(step["reward"]["max"])
        assert httpx.post(f"{base}/score", json={**body, "run_id": "x" * 129}, headers=auth).status_code == 422
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        assert 'rlrf_run_step{run="out/grpo run #1?&"} 7.0' in metrics


def test_invented_flags_are_capped_per_run_and_errors_alert() -> None:
    """A judge that invents a new flag per rollout cannot grow the label set; an error share alerts."""
    stats = runs.RunStats(Settings(alert_error_share=0.1))
    request = ScoreRequest(reference={"svg": REFERENCE}, completions=["x"] * 4, step=0, run_id="r")
    for k in range(10):
        results = [RolloutResult(reward=0.5, status=Status.ok, flags=[f"judge:made-up-{k}-{i}"]) for i in range(9)]
        results.append(RolloutResult(reward=None, status=Status.error, detail="judge down"))
        stats.add(request.model_copy(update={"step": k}), GroupResult(results=results))
    flags = {f for s in stats.run("r")["steps"] for f in s["flags"]}
    assert len(flags) == runs.MAX_FLAGS + 1 and "other" in flags
    alerts = stats.run("r")["alerts"]
    assert [a for a in alerts if a["kind"] == "status"] == []  # 10 % is not over 10 %
    stats.add(
        request.model_copy(update={"step": 10}),
        GroupResult(results=[RolloutResult(reward=None, status=Status.error)] * 5),
    )
    (error,) = [a for a in stats.run("r")["alerts"] if a["kind"] == "status"]
    assert error["name"] == "error" and error["share"] == pytest.approx((4 + 5) / 45)
