"""The trainer client against the real service over real HTTP, called the way TRL and verl call it."""

from __future__ import annotations

import asyncio
import logging
import pickle
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

import trainer
from services.reward_api.api.main import create_app
from services.reward_api.core.schemas import ScoreRequest
from services.reward_api.core.settings import Settings
from services.reward_api.pipeline import Pipeline
from tests.api.conftest import running
from tests.conftest import svg_dev_files
from trainer import verl

A = svg_dev_files()[70].read_text()
B = svg_dev_files()[71].read_text()


@dataclass
class State:
    global_step: int


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with running(create_app(Settings(workers=2))) as base:
        yield base


def _requests_to_score(url: str) -> float:
    match = re.search(r'rlrf_requests_total\{code="200",route="/score"\} ([\d.]+)', httpx.get(f"{url}/metrics").text)
    return float(match.group(1)) if match else 0.0


def test_all_is_sorted_and_exported() -> None:
    assert trainer.__all__ == sorted(trainer.__all__)
    assert all(getattr(trainer, name).__module__ == "trainer" for name in trainer.__all__)


def test_total_reward_called_like_trl(url: str, pipeline: Pipeline) -> None:
    reward = trainer.get_svg_reward(url)
    assert reward.__name__ == "svg_reward"
    completions = [A, "no svg", B, f"```svg\n{B}\n```"]
    svg = [A, A, B, B]  # parts of two groups on this rank
    got = asyncio.run(reward(prompts=["p"] * 4, completions=completions, svg=svg, trainer_state=State(7)))
    first = pipeline.score_group(ScoreRequest(reference={"svg": A}, completions=completions[:2], step=7)).rewards
    second = pipeline.score_group(ScoreRequest(reference={"svg": B}, completions=completions[2:], step=7)).rewards
    assert got == first + second
    assert got[0] == pytest.approx(2.075) and got[1] == pytest.approx(-2.1)


def test_conversational_completions_and_image_in_a_multimodal_prompt(url: str, pipeline: Pipeline) -> None:
    from PIL import Image

    canvas = pipeline.prepare_reference(ScoreRequest(reference={"svg": A}, completions=["x"]).reference).canvas
    image = Image.fromarray(canvas.image[:, :, ::-1])  # BGR canvas -> RGB picture
    prompt = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "SVG?"}]}]
    completions = [
        [{"role": "assistant", "content": f"Here:\n```svg\n{A}\n```"}],
        [{"role": "assistant", "content": "no"}],
    ]
    reward = trainer.get_svg_reward(url)
    got = asyncio.run(reward(prompts=[prompt, prompt], completions=completions, completion_ids=[[1] * 50, [1] * 3]))
    assert got[0] == pytest.approx(2.0)  # pixel + canny, no length without reference code
    assert got[1] == pytest.approx(-2.0)


def test_component_rewards_share_one_call_and_pickle(url: str) -> None:
    funcs = trainer.get_component_rewards(url, ["pixel_l2", "canny_l2", "length", "format"])
    assert [f.__name__ for f in funcs] == ["pixel_l2", "canny_l2", "length", "format"]
    funcs = pickle.loads(pickle.dumps(funcs))  # TRL may pickle reward functions
    before = _requests_to_score(url)

    async def step() -> list[list[float | None]]:
        kwargs = {"prompts": ["p"] * 2, "completions": [A, "x"], "svg": [A, A], "trainer_state": State(1)}
        return list(await asyncio.gather(*(f(**kwargs) for f in funcs)))

    pixel, canny, length, fmt = asyncio.run(step())
    assert _requests_to_score(url) - before == 1  # one service call for four reward functions
    assert (pixel, canny, length, fmt) == ([1.0, -1.0], [1.0, -1.0], [0.75, -1.0], [1.0, -1.0])


def test_outage_gives_none_and_a_clear_log_line(caplog: pytest.LogCaptureFixture) -> None:
    reward = trainer.get_svg_reward("http://127.0.0.1:9", retries=1)  # nothing listens on port 9
    with caplog.at_level(logging.WARNING, logger="trainer.rewards"):
        got = asyncio.run(reward(completions=[A, B], svg=[A, A]))
    assert got == [None, None]
    assert "reward service unavailable" in caplog.text and "no reward for 2 completions" in caplog.text


def test_infrastructure_error_rollouts_get_none(settings: Settings) -> None:
    pipeline = Pipeline.embedded(settings.model_copy(update={"workers": 1}))
    pipeline.score_group(ScoreRequest(reference={"svg": A}, completions=[A]))
    pipeline.close()
    with running(create_app(settings, pipeline=pipeline)) as base:
        got = asyncio.run(trainer.get_svg_reward(base)(completions=[A, "x"], svg=[A, A]))
    assert got == [None, -2.1]


def test_verl_compute_score(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLRF_URL", url)
    monkeypatch.setattr(verl, "_async_client", None)
    monkeypatch.setattr(verl, "_sync_client", None)
    ok = asyncio.run(verl.compute_score("svg", f"```svg\n{A}\n```", A, extra_info={"global_step": 3}))
    bad = verl.compute_score_sync("svg", "no svg", '{"svg": ' + __import__("json").dumps(A) + "}")
    assert set(ok) == set(bad) == {"score", "pixel_l2", "canny_l2", "length", "status"}
    assert ok["score"] == pytest.approx(2.075) and ok["status"] == "ok"
    assert bad == {"score": -2.1, "pixel_l2": -1.0, "canny_l2": -1.0, "length": -1.0, "status": "no_svg"}


def test_client_retries_honour_retry_after_and_never_retry_4xx() -> None:
    calls: list[int] = []
    script = [
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.Response(503),
        httpx.Response(200, json={"ok": 1}),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return script[len(calls) - 1]

    client = trainer.RewardClient("http://service", transport=httpx.MockTransport(handler), backoff_s=0.01)
    assert client.score({"reference": {"svg": A}, "completions": [A]}) == {"ok": 1} and len(calls) == 3

    rejected = trainer.RewardClient("http://service", transport=httpx.MockTransport(lambda r: httpx.Response(422)))
    with pytest.raises(trainer.RequestRejected) as info:
        rejected.score({"completions": []})
    assert info.value.status_code == 422

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    down = trainer.AsyncRewardClient("http://service", transport=httpx.MockTransport(refuse), retries=2, backoff_s=0.01)
    with pytest.raises(trainer.ServiceUnavailable, match="after 3 attempts"):
        asyncio.run(down.score({}))


def test_back_pressure_is_waited_out_without_using_up_retries() -> None:
    """Ten 429s in a row, then an answer: a client with 1 retry still gets it; past overload_wait_s it gives up."""
    answers = iter([httpx.Response(429, headers={"Retry-After": "0"})] * 10 + [httpx.Response(200, json={"ok": 1})])
    patient = trainer.RewardClient("http://service", transport=httpx.MockTransport(lambda r: next(answers)), retries=1)
    assert patient.score({"reference": {"svg": A}, "completions": [A]}) == {"ok": 1}

    busy = trainer.AsyncRewardClient(
        "http://service",
        transport=httpx.MockTransport(lambda r: httpx.Response(429, headers={"Retry-After": "1"})),
        overload_wait_s=1.5,
    )
    with pytest.raises(trainer.ServiceUnavailable, match="after 2 attempts: 429"):
        asyncio.run(busy.score({}))


def test_token_counts_are_used_only_with_reference_tokens(url: str) -> None:
    (length,) = trainer.get_component_rewards(url, ["length"])
    with_tokens = asyncio.run(
        length(completions=[A, A], svg=[A, A], completion_ids=[[1] * 100, [1] * 40], reference_tokens=[100, 100])
    )
    assert with_tokens == [0.75, -1.0]  # 100 and 40 tokens against 100
    without = asyncio.run(length(completions=[A, A], svg=[A, A], completion_ids=[[1] * 100, [1] * 40]))
    assert without == [0.75, 0.75]  # no reference count: both sides by the character proxy


def test_text_only_rows_are_sent_as_text2svg_and_a_task_column_wins() -> None:
    from trainer._rewards import _groups

    bodies, _ = _groups({"completions": ["<svg/>", "<svg/>"], "text": ["a cat", "a dog"]}, "rlrf-text2svg", None)
    assert [b["task"] for b in bodies] == ["text2svg", "text2svg"] and bodies[0]["reference"] == {"text": "a cat"}
    bodies, _ = _groups({"completions": ["<svg/>"], "svg": [A], "text": ["a face"], "task": ["text2svg"]}, None, None)
    assert bodies[0]["task"] == "text2svg" and "svg" in bodies[0]["reference"]
    bodies, _ = _groups({"completions": ["<svg/>"], "svg": [A]}, None, None)
    assert "task" not in bodies[0]  # the service's default, im2svg


def _requests_to(url: str, route: str) -> float:
    pattern = rf'rlrf_requests_total\{{code="200",route="{re.escape(route)}"\}} ([\d.]+)'
    match = re.search(pattern, httpx.get(f"{url}/metrics").text)
    return float(match.group(1)) if match else 0.0


def test_verl_batch_entry_point_sends_one_call_per_batch(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLRF_URL", url)
    monkeypatch.setattr(verl, "_sync_client", None)
    before = _requests_to(url, "/score/batch"), _requests_to(url, "/score")
    scores = verl.compute_score_batch(
        ["svg"] * 4, [A, "no svg", B, A], [A, A, B, B], [{"global_step": 2}, {"global_step": 2}, {}, {}]
    )
    assert [s["status"] for s in scores] == ["ok", "no_svg", "ok", "ok"]
    assert scores[0]["score"] == pytest.approx(2.075) and scores[2]["score"] == pytest.approx(2.075)
    assert scores[3]["score"] < 2.0
    assert (_requests_to(url, "/score/batch"), _requests_to(url, "/score")) == (before[0] + 1, before[1])


def test_verl_concurrent_compute_score_calls_share_one_request(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """verl's reward loop awaits compute_score per sample, all at once: one HTTP call for them all."""
    monkeypatch.setenv("RLRF_URL", url)
    monkeypatch.setattr(verl, "_async_client", None)

    async def share() -> list[dict[str, object]]:
        calls = [verl.compute_score("svg", s, t) for s, t in [(A, A), ("x", A), (B, B), (A, B)]]
        return list(await asyncio.gather(*calls))

    before = _requests_to(url, "/score/batch")
    scores = asyncio.run(share())
    assert [s["status"] for s in scores] == ["ok", "no_svg", "ok", "ok"]
    assert _requests_to(url, "/score/batch") == before + 1
    monkeypatch.setenv("RLRF_VERL_BATCH_MS", "0")  # batching off: one POST /score per sample
    before = _requests_to(url, "/score")
    assert asyncio.run(share()) == scores
    assert _requests_to(url, "/score") == before + 4


def test_verl_infrastructure_error_raises_for_every_waiting_sample(settings: Settings, monkeypatch) -> None:
    pipeline = Pipeline.embedded(settings.model_copy(update={"workers": 1}))
    pipeline.score_group(ScoreRequest(reference={"svg": A}, completions=[A]))
    pipeline.close()
    with running(create_app(settings, pipeline=pipeline)) as base:
        monkeypatch.setenv("RLRF_URL", base)
        monkeypatch.setattr(verl, "_async_client", None)

        async def both() -> list[object]:
            return list(
                await asyncio.gather(*(verl.compute_score("svg", s, A) for s in (A, "x")), return_exceptions=True)
            )

        got = asyncio.run(both())
    assert isinstance(got[0], trainer.RewardServiceError) and "closed" in str(got[0])
    assert isinstance(got[1], dict) and got[1]["status"] == "no_svg"


@pytest.mark.parametrize(
    "error",
    [
        trainer.RewardServiceError("down"),
        trainer.ServiceUnavailable("after 6 attempts"),
        trainer.RequestRejected("422: bad label", status_code=422),
    ],
)
def test_errors_pickle(error: Exception) -> None:
    """verl runs rewards in Ray actors: an error must cross the actor boundary as itself."""
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)
    assert getattr(copy, "status_code", None) == getattr(error, "status_code", None)
