"""verl 0.9.1's own reward code (its own venv, .venv-verl) against the real service over HTTP.

trainer/README.md's snippets are loaded into verl's hydra config; verl's RewardLoopWorker (the
reward loop's ``naive`` manager), its BatchRewardManager and its RewardLoopManager on a local Ray
cluster score a real ``DataProto``; the README's ``StepAgentLoopManager`` runs verl's agent-loop
workers and streaming reward loop on Ray (a stand-in LLM server only: vLLM/SGLang need a GPU).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.reward_api.api.main import create_app
from services.reward_api.core.settings import Settings
from tests.api.conftest import running
from tests.conftest import svg_dev_files
from tests.trainer._venvs import run_json

pytestmark = pytest.mark.slow
DRIVER = Path(__file__).with_name("_verl_driver.py")
A = svg_dev_files()[70].read_text()
B = svg_dev_files()[71].read_text()
CASES = [
    {"response": A, "ground_truth": A},
    {"response": "no idea", "ground_truth": A},
    {"response": "no idea", "ground_truth": A, "extra_info": {"global_step": 500}},
    {"response": B, "ground_truth": json.dumps({"svg": B})},
    {"response": A, "ground_truth": B},
]
KEYS = {"score", "pixel_l2", "canny_l2", "length", "status"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The service with a length warm-up profile (so the step shows in the score), and a case file."""
    cases = tmp_path_factory.mktemp("verl") / "cases.json"
    cases.write_text(json.dumps(CASES))
    with running(create_app(Settings(workers=2, profile="rlrf-im2svg-length-warmup"))) as url:
        yield {"url": url, "cases": str(cases), "tokenizer": str(cases.parent / "tokenizer")}


def _drive(service: dict[str, Any], mode: str) -> Any:
    return run_json("verl", DRIVER, mode, service["tokenizer"], service["cases"], env={"RLRF_URL": service["url"]})


def _batch_calls(url: str) -> float:
    match = re.search(
        r'rlrf_requests_total\{code="200",route="/score/batch"\} ([\d.]+)', httpx.get(f"{url}/metrics").text
    )
    return float(match.group(1)) if match else 0.0


def _check_scores(scores: list[float], statuses: list[str]) -> None:
    assert statuses == ["ok", "no_svg", "no_svg", "ok", "ok"]
    assert scores[1] == pytest.approx(-2.1) and scores[2] == pytest.approx(-3.0)  # step 0 vs 500: length 0.1 -> 1
    assert scores[0] > 1.9 and scores[3] > 1.9 and scores[4] < scores[0]


def test_readme_snippets_load_into_verl_config(service: dict[str, Any]) -> None:
    got = _drive(service, "config")
    assert got["verl"] == "0.9.1"
    for form in ("yaml", "cli"):
        assert got[form]["fn"] == "trainer.verl.compute_score"
        assert got[form]["custom_reward_function"]["path"] == "pkg://trainer.verl"
        assert got[form]["manager"] == "NaiveRewardManager"
        assert got[form]["agent_loop_manager_class"] == "trainer.verl_agent_loop.StepAgentLoopManager"


def test_reward_loop_worker_scores_a_data_proto_in_one_call(service: dict[str, Any]) -> None:
    before = _batch_calls(service["url"])
    got = _drive(service, "loop")
    assert got["manager"] == "NaiveRewardManager"
    outputs = got["outputs"]
    assert all(set(o["extra"]) >= KEYS for o in outputs)
    _check_scores([o["reward_score"] for o in outputs], [o["extra"]["status"] for o in outputs])
    assert _batch_calls(service["url"]) == before + 1  # 5 samples, 3 groups: one POST /score/batch


def test_batch_reward_manager_uses_compute_score_batch(service: dict[str, Any]) -> None:
    before = _batch_calls(service["url"])
    got = _drive(service, "batch")
    assert got["last_token_holds_reward"]
    _check_scores(got["rewards"], got["extra"]["status"])
    assert _batch_calls(service["url"]) == before + 1


def test_reward_loop_manager_on_ray_and_errors_cross_the_actor_boundary(service: dict[str, Any]) -> None:
    got = _drive(service, "ray")
    _check_scores(got["rm_scores"], got["status"])
    assert set(got["extra_keys"]) >= KEYS
    assert got["error"]["is_request_rejected"] and got["error"]["status_code"] == 422, got["error"]


def test_agent_loop_manager_carries_the_training_step_to_the_reward(service: dict[str, Any]) -> None:
    """verl's own agent-loop workers and reward loop on Ray: the step comes from the trainer's meta_info."""
    got = _drive(service, "agent")
    assert got["manager"] == "trainer.verl_agent_loop.StepAgentLoopManager"  # the README's class, loaded as verl does
    at_0, at_500, no_step = got["0"], got["500"], got["None"]
    assert at_0["global_step"] == [0] * 5 and at_500["global_step"] == [500] * 5 and no_step["global_step"] is None
    for run in (at_0, at_500, no_step):
        assert run["status"] == ["ok", "no_svg", "no_svg", "ok", "ok"]
    assert at_0["rm_scores"][1] == pytest.approx(-2.1) and at_500["rm_scores"][1] == pytest.approx(-3.0)
    assert at_500["rm_scores"][0] > at_0["rm_scores"][0]  # the same rollout, a later point of the warm-up
    assert at_0["rm_scores"][2] == pytest.approx(-2.1)  # verl's step overrides a dataset's own global_step
    assert no_step["rm_scores"][1] == pytest.approx(-2.1) and no_step["rm_scores"][2] == pytest.approx(-3.0)
