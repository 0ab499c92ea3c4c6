"""trainer/train_sft.py: the prepared dataset as SFTTrainer rows, the shipped configs, one real run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="the trainer extra (trl, torch) is not installed")

REPO = Path(__file__).resolve().parents[2]


def _prepared():  # type: ignore[no-untyped-def]
    from datasets import Dataset

    rows = [
        {"prompt": "draw it", "svg": "<svg/>", "image": None, "svg_tokens": 2, "source": "a.svg"},
        {"prompt": "draw that", "svg": "<svg></svg>", "image": None, "svg_tokens": 3, "source": "b.svg"},
    ]
    return Dataset.from_list(rows)


def test_text2svg_rows_are_prompt_completion_strings() -> None:
    from trainer.train_sft import sft_rows

    rows = sft_rows(_prepared(), "text2svg")
    assert rows.column_names == ["prompt", "completion"]
    assert rows[1] == {"prompt": "draw that", "completion": "<svg></svg>"}


def test_im2svg_rows_put_the_image_in_the_user_turn() -> None:
    from trainer.train_sft import sft_rows

    row = sft_rows(_prepared(), "im2svg")[0]
    assert set(row) == {"prompt", "completion", "image"}
    assert [part["type"] for part in row["prompt"][0]["content"]] == ["image", "text"]
    assert row["completion"][0]["role"] == "assistant"
    assert row["completion"][0]["content"][0]["text"] == "<svg/>"


def test_unknown_task_is_refused() -> None:
    from trainer.train_sft import sft_rows

    with pytest.raises(SystemExit):
        sft_rows(_prepared(), "video2svg")


@pytest.mark.parametrize("config", sorted((REPO / "trainer/configs/sft").glob("*.yaml")))
def test_paper_sft_configs_parse(config: Path) -> None:
    from trl import ModelConfig, SFTConfig, TrlParser

    from trainer.train_sft import SFTDataArguments

    argv = ["--config", str(config), "--dataset_path", "d", "--model_name_or_path", "/m", "--use_cpu", "true"]
    argv += ["--bf16", "false", "--report_to", "none"]
    data, sft, _ = TrlParser((SFTDataArguments, SFTConfig, ModelConfig)).parse_args_and_config(args=argv)
    assert data.task == "im2svg" and sft.learning_rate == 1e-5 and sft.num_train_epochs == 3
    assert sft.max_length >= 8192 and sft.completion_only_loss


def test_a_hub_name_is_refused() -> None:
    cmd = [sys.executable, str(REPO / "trainer/train_sft.py"), "--dataset_path", "d"]
    cmd += ["--model_name_or_path", "Qwen/Qwen2.5-VL-3B-Instruct", "--output_dir", "/tmp/x", "--use_cpu", "true"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "local model directory" in proc.stderr
