"""Dynamic max length: TRL's real GRPOTrainer generates up to the batch's longest reference, per step."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.reward_api.api.main import create_app
from services.reward_api.core.settings import Settings
from tests.api.conftest import running
from tests.trainer.test_grpo_e2e import _tiny_model

pytest.importorskip("trl", reason="the trainer extra (trl, torch) is not installed")
pytestmark = pytest.mark.slow


def test_generation_cap_follows_each_batch(tmp_path: Path) -> None:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig

    import trainer
    from trainer._length import DynamicLengthGRPOTrainer

    model_dir = _tiny_model(tmp_path / "tiny-qwen2")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    head = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">'
    short = head + '<rect width="20" height="20" fill="red"/></svg>'
    long = head + "".join(f'<circle cx="{9 * i}" cy="30" r="8" fill="blue"/>' for i in range(1, 5)) + "</svg>"
    tokens = [len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in (short, long)]
    floor, margin, cap = 8, 4, 256
    expected = {max(floor, min(cap, t + margin)) for t in tokens}
    assert len(expected) == 2, "pick references whose caps differ"
    # One prompt (4 rollouts) a step, each reference once: step caps must be exactly the two expected.
    dataset = Dataset.from_list([{"prompt": "<svg", "svg": short}, {"prompt": "<svg", "svg": long}])
    config = GRPOConfig(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=cap,
        max_steps=2,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        seed=0,
    )
    with running(create_app(Settings(workers=2))) as url:
        grpo = DynamicLengthGRPOTrainer(
            model=str(model_dir),
            reward_funcs=[trainer.get_svg_reward(url, retries=1)],
            args=config,
            train_dataset=dataset,
            length_floor=floor,
            length_margin=margin,
        )
        grpo.train()
    assert set(grpo.generation_caps) == expected
    steps = [h for h in grpo.state.log_history if "completions/max_length" in h]
    assert len(steps) == 2
    for entry in steps:  # what TRL generated stayed under that step's cap; a random model rarely stops early
        assert entry["completions/max_length"] <= entry["completions/max_length_cap"]
    assert {e["completions/max_length_cap"] for e in steps} == {float(c) for c in expected}
    assert max(e["completions/max_length"] for e in steps) > min(expected)  # the longer cap was used
