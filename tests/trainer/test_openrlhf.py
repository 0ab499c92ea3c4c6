"""OpenRLHF 0.11.2's own code (its own venv, .venv-openrlhf) against the real service over HTTP.

The README's flags go through OpenRLHF's argument parser; rollouts go through its
``SingleTurnAgentExecutor`` (one sample per request, its retries), as in a training run.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.reward_api.api.main import create_app
from services.reward_api.core.schemas import ScoreRequest
from services.reward_api.core.settings import Settings
from services.reward_api.pipeline import Pipeline
from tests.api.conftest import running
from tests.conftest import svg_dev_files
from tests.trainer._venvs import run_json

pytestmark = pytest.mark.slow
DRIVER = Path(__file__).with_name("_openrlhf_driver.py")
A = svg_dev_files()[72].read_text()
B = svg_dev_files()[73].read_text()
PROMPT = "Write SVG code for the image.\n"
RESPONSES = [A, "no idea", f"```svg\n{A}\n```", B]


def _rollouts(tmp_path: Path, url: str, cases: list[dict[str, str]]) -> list[dict[str, Any]]:
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    got = run_json("openrlhf", DRIVER, "rollouts", f"{url}/openrlhf/reward", str(tmp_path / "tok"), str(path))
    assert got["openrlhf"] == "0.11.2"
    return list(got["rollouts"])


@pytest.fixture
def live(settings: Settings) -> Iterator[Pipeline]:
    live = Pipeline.embedded(settings.model_copy(update={"workers": 2}))
    yield live
    live.close()


def test_readme_flags_parse_with_openrlhf_and_legacy_flags_are_rejected() -> None:
    got = run_json("openrlhf", DRIVER, "args")
    assert got["remote_url"] == ["http://reward-api:8000/openrlhf/reward"]
    assert got["label_key"] == "svg"
    assert got["legacy_flags"].startswith("rejected")


def test_one_sample_per_request_shares_the_reference_render(
    tmp_path: Path, settings: Settings, live: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    renders: list[object] = []
    render = live.references._render
    monkeypatch.setattr(live.references, "_render", lambda *a, **k: renders.append(a) or render(*a, **k))
    with running(create_app(settings, pipeline=live)) as url:
        got = _rollouts(tmp_path, url, [{"prompt": PROMPT, "label": A, "response": r} for r in RESPONSES])
        together = httpx.post(
            f"{url}/openrlhf/reward",
            json={"query": [PROMPT + r for r in RESPONSES], "prompts": [PROMPT] * 4, "labels": [A] * 4},
            timeout=60,
        ).json()
    assert len(renders) == 1  # 4 concurrent one-sample requests: the reference was rendered once
    assert [r["reward"] for r in got] == [[x] for x in together["rewards"]]
    assert got[0]["reward"] == [pytest.approx(2.075)] and got[1]["reward"] == [pytest.approx(-2.1)]
    assert got[0]["extra_logs"]["ok"] == [1.0] and got[1]["extra_logs"]["ok"] == [0.0]


def test_a_transient_backend_outage_costs_latency_not_the_run(
    tmp_path: Path, settings: Settings, live: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """8 s without render workers: longer than OpenRLHF's 5 retries 1 s apart, shorter than the hold."""
    dead = Pipeline.embedded(settings.model_copy(update={"workers": 1}))
    dead.score_group(ScoreRequest(reference={"svg": A}, completions=[A]))  # cached: rollouts get 'error'
    dead.close()
    first_try = threading.Event()
    score_group = dead.score_group
    monkeypatch.setattr(dead, "score_group", lambda *a, **k: first_try.set() or score_group(*a, **k))
    cases = [{"prompt": PROMPT, "label": label, "response": A} for label in (A, B)]
    app = create_app(settings.model_copy(update={"openrlhf_hold_s": 60.0}), pipeline=dead)

    def recover() -> None:  # the workers come back 8 s after the first request met the outage
        first_try.wait(120)
        time.sleep(8.0)
        app.state.service.pipeline = live

    with running(app) as url:
        thread = threading.Thread(target=recover)
        thread.start()
        got = _rollouts(tmp_path, url, cases)
        thread.join()
    assert got[0]["reward"] == [pytest.approx(2.075)] and got[1]["reward"][0] < 2.0
    assert all(r["seconds"] >= 7.5 for r in got)
    # The same outage without the hold: OpenRLHF's client gives up and the reward is None.
    with running(create_app(settings.model_copy(update={"openrlhf_hold_s": 0.0}), pipeline=dead)) as url:
        got = _rollouts(tmp_path, url, cases[:1])
    assert got[0]["reward"] is None and got[0]["seconds"] >= 4.0
