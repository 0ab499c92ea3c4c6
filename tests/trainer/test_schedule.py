"""The launcher's default reward: the service's total at the trainer's step, its parts logged."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from services.reward_api.api.main import create_app
from services.reward_api.core.settings import Settings
from tests.api.conftest import running
from tests.conftest import svg_dev_files
from trainer.train_grpo import RLRFArguments, build_rewards


def _call(func, completions, reference, step, logged):  # type: ignore[no-untyped-def]
    return asyncio.run(
        func(
            completions=completions,
            svg=[reference] * len(completions),
            trainer_state=SimpleNamespace(global_step=step),
            log_metric=lambda name, value: logged.setdefault(name, []).append(value),
        )
    )


def test_warmup_schedule_applies_in_the_default_path() -> None:
    reference = svg_dev_files()[200].read_text()
    # Twice the reference's code: the length component is negative, so its weight shows in the total.
    longer = reference.replace("</svg>", reference.split(">", 1)[1].rsplit("</svg>", 1)[0] + "</svg>")
    with running(create_app(Settings(workers=2))) as url:
        args = RLRFArguments(dataset_path="-", reward_url=url, profile="rlrf-im2svg-length-warmup")
        (total,) = build_rewards(args, None)  # no --reward_weights: one function, the service's total
        logged: dict[str, list[float]] = {}
        early = _call(total, [longer, reference], reference, 0, logged)
        late = _call(total, [longer, reference], reference, 500, logged)
        fixed = build_rewards(args, [1.0, 1.0, 0.1])
        lengths = _call(fixed[2], [longer, reference], reference, 0, {})
    assert total.__name__ == "svg_reward"
    assert lengths[0] < 0  # the doubled code is penalised
    # The length weight grew from 0.1 to 1.0 between steps 0 and 500: each total moved by 0.9 x its length.
    for i in range(2):
        assert late[i] - early[i] == pytest.approx(0.9 * lengths[i], abs=1e-6)
    assert logged["rewards/length/mean"][0] == pytest.approx(sum(lengths) / 2, abs=1e-6)
    for name in ("rewards/pixel_l2/mean", "rewards/canny_l2/mean", "rlrf/non_ok", "rlrf/flagged", "rlrf/unscored"):
        assert len(logged[name]) == 2
    assert logged["rlrf/unscored"] == [0.0, 0.0]
    assert [f.__name__ for f in fixed] == ["pixel_l2", "canny_l2", "length"]  # --reward_weights: TRL's fixed sum


def test_total_without_service_is_unscored_not_a_score() -> None:
    args = RLRFArguments(dataset_path="-", reward_url="http://127.0.0.1:9")
    (total,) = build_rewards(args, None)
    total._service.retries = 0
    logged: dict[str, list[float]] = {}
    assert _call(total, ["<svg/>"], "<svg/>", 0, logged) == [None]
    assert logged == {"rlrf/unscored": [1.0]}
