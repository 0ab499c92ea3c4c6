"""``RenderLogCallback`` against the real service, read back by TensorBoard itself (and W&B offline)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from services.reward_api.api.main import create_app
from services.reward_api.core.settings import Settings
from services.reward_api.pipeline import Pipeline
from tests.api.conftest import running
from tests.conftest import svg_dev_files
from tests.trainer.test_grpo_e2e import _tiny_model

pytest.importorskip("transformers", reason="the trainer extra (trl, transformers) is not installed")

REPO = Path(__file__).resolve().parents[2]
REFERENCE = (REPO / "examples/reference.svg").read_text()
CANDIDATES = [(REPO / "examples/candidates" / n).read_text() for n in ("01_exact.txt", "03_shifted.txt")]
CANDIDATES += [(REPO / "examples/candidates" / n).read_text() for n in ("05_tiny_viewbox.txt", "08_prose_only.txt")]


def _tensorboard_events(log_dir: Path) -> Any:
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator", reason="tensorboard is not installed"
    )
    accumulator = event_accumulator.EventAccumulator(str(log_dir), size_guidance={"images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def _drive(callback: Any, funcs: list[Any], args: Any, steps: range) -> list[list[float | None]]:
    """What the trainer does: a reward call per step, then the step-end hook."""
    from transformers import TrainerControl, TrainerState

    state, control = TrainerState(), TrainerControl()
    callback.on_train_begin(args, state, control)
    rewards = []
    for step in steps:
        state.global_step = step
        kwargs = {
            "completions": CANDIDATES * 2,
            "svg": [REFERENCE] * 4 + [svg_dev_files()[200].read_text()] * 4,
            "trainer_state": state,
        }
        rewards.append(asyncio.run(funcs[0](**kwargs)))
        for func in funcs[1:]:
            asyncio.run(func(**kwargs))
        state.global_step = step + 1
        callback.on_step_end(args, state, control)
    callback.on_train_end(args, state, control)
    return rewards


def test_renders_rewards_statuses_and_flags_land_in_tensorboard(
    settings: Settings, pipeline: Pipeline, tmp_path: Path
) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    from PIL import Image
    from tensorboard.util import tensor_util
    from transformers import TrainingArguments

    import trainer
    from trainer.callbacks import RenderLogCallback

    with running(create_app(settings, pipeline)) as url:
        funcs = trainer.get_component_rewards(url, ["pixel_l2", "canny_l2"], retries=1, run_id="tb-run")
        callback = RenderLogCallback(funcs, every_n_steps=3, max_groups=1, max_rollouts=3, log_dir=tmp_path / "tb")
        args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to=["tensorboard"])
        rewards = _drive(callback, funcs, args, range(5))
        steps = {s["step"] for s in httpx.get(f"{url}/dashboard/run?run=tb-run").json()["steps"]}
    assert steps == set(range(5))  # the run id reached the service's run view

    events = _tensorboard_events(tmp_path / "tb")
    images = events.Images("rlrf/renders")
    assert [e.step for e in images] == [0, 3]  # every 3 steps, from the first
    grid = np.asarray(Image.open(io.BytesIO(images[0].encoded_image_string)).convert("RGB"))
    # One group (max_groups=1): the reference, then 3 rollouts (2 best, 1 worst) of 128 px tiles.
    assert grid.shape == (128 + 30 + 4, 4 * (128 + 4), 3)
    reference_tile = grid[:128, :128].astype(int)
    assert np.count_nonzero((reference_tile[..., 0] > 180) & (reference_tile[..., 1] < 80)) > 200  # the red hat
    texts = events.Tensors("rlrf/rollouts/text_summary")
    assert [e.step for e in texts] == [0, 3]
    table = tensor_util.make_ndarray(texts[0].tensor_proto).item().decode()
    lines = table.splitlines()[2:]
    assert len(lines) == 3  # best 2 and worst 1 of the first group
    assert lines[0].startswith("| 0 | 0 | ") and "| ok |" in lines[0]  # the exact copy wins
    assert "pixel_l2=1.000" in lines[0] and "canny_l2=1.000" in lines[0]
    assert lines[1].startswith("| 0 | 2 | ") and "| tiny_viewbox |" in lines[1]  # the hack, flagged, a close second
    assert lines[2].startswith("| 0 | 3 | ") and "| no_svg |" in lines[2]  # the prose-only rollout is the worst
    assert rewards[0][0] == 1.0 and rewards[0][3] is not None  # what TRL got: pixel_l2 of each rollout


def test_nothing_is_asked_or_logged_without_the_callback(settings: Settings, pipeline: Pipeline) -> None:
    import trainer

    with running(create_app(settings, pipeline)) as url:
        (func,) = trainer.get_component_rewards(url, ["pixel_l2"], retries=1)
        asyncio.run(func(completions=CANDIDATES, svg=[REFERENCE] * 4))
        assert func._service.rendered is None
        # The client's run id: RLRF_RUN_ID, else one per process.
        assert httpx.get(f"{url}/dashboard/runs").json()["runs"] == []  # no step: not training traffic
        from trainer._client import default_run_id

        assert default_run_id().startswith("run-")


def test_renders_land_in_wandb_offline(
    settings: Settings, pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wandb = pytest.importorskip("wandb", reason="wandb is not installed")
    from transformers import TrainingArguments

    import trainer
    from trainer.callbacks import RenderLogCallback

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = wandb.init(project="rlrf-test", dir=str(tmp_path), mode="offline")
    try:
        with running(create_app(settings, pipeline)) as url:
            funcs = trainer.get_component_rewards(url, ["pixel_l2"], retries=1)
            callback = RenderLogCallback(funcs, every_n_steps=10, max_groups=2, max_rollouts=4)
            args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to=["wandb"])
            _drive(callback, funcs, args, range(2))
    finally:
        run.finish()
    (table_file,) = list(tmp_path.glob("wandb/offline-run-*/files/media/table/rlrf/renders_*.table.json"))
    table = json.loads(table_file.read_text())
    assert table["columns"][:7] == ["step", "group", "rollout", "reference", "render", "reward", "status"]
    assert len(table["data"]) == 8  # 2 groups x 4 rollouts, step 0 only
    assert {row[6] for row in table["data"]} >= {"ok", "no_svg"}
    assert list(tmp_path.glob("wandb/offline-run-*/files/media/images/rlrf/render_grid_*.png"))


@pytest.mark.slow
def test_grpo_trainer_logs_renders_to_tensorboard(tmp_path: Path) -> None:
    """TRL's real GRPOTrainer with the callback: image and table events every 2 steps, read by TensorBoard."""
    pytest.importorskip("trl", reason="the trainer extra (trl) is not installed")
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    import trainer
    from trainer.callbacks import RenderLogCallback

    model_dir = _tiny_model(tmp_path / "tiny-qwen2")
    dataset = Dataset.from_list([{"prompt": "<svg", "svg": REFERENCE}] * 4)
    with running(create_app(Settings(workers=2))) as url:
        funcs = trainer.get_component_rewards(url, ["pixel_l2", "canny_l2", "length"], retries=1, run_id="grpo-tb")
        config = GRPOConfig(
            output_dir=str(tmp_path / "run"),
            per_device_train_batch_size=4,
            num_generations=4,
            max_completion_length=16,
            max_steps=3,
            logging_steps=1,
            report_to=["tensorboard"],
            save_strategy="no",
            use_cpu=True,
            seed=0,
        )
        callback = RenderLogCallback(funcs, every_n_steps=2, log_dir=tmp_path / "renders")
        GRPOTrainer(
            model=str(model_dir), reward_funcs=funcs, args=config, train_dataset=dataset, callbacks=[callback]
        ).train()
    events = _tensorboard_events(tmp_path / "renders")
    assert [e.step for e in events.Images("rlrf/renders")] == [0, 2]
    assert [e.step for e in events.Tensors("rlrf/rollouts/text_summary")] == [0, 2]


def test_renders_are_asked_for_only_where_they_are_logged(tmp_path: Path) -> None:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    import trainer
    from trainer.callbacks import RenderLogCallback

    for report_to, main, asked in ((["none"], True, 0), (["tensorboard"], False, 0), (["wandb"], True, 7)):
        funcs = trainer.get_component_rewards("http://127.0.0.1:9", ["pixel_l2"])
        callback = RenderLogCallback(funcs, every_n_steps=7, report_to=report_to)
        args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
        callback.on_train_begin(args, TrainerState(is_world_process_zero=main), TrainerControl())
        assert funcs[0]._service.render_every == asked
    with pytest.raises(ValueError, match="no reward function of the RLRF service"):
        RenderLogCallback([lambda completions, **kw: [0.0] * len(completions)])
