"""End to end on CPU: TRL's real GRPOTrainer, a tiny random Qwen2 built here, rewards from the real service."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from services.reward_api.api.main import create_app
from services.reward_api.core.settings import Settings
from tests.api.conftest import running
from tests.conftest import svg_dev_files

trl = pytest.importorskip("trl", reason="the trainer extra (trl, torch) is not installed")
pytestmark = pytest.mark.slow


class _CPUConfig(trl.GRPOConfig):
    """TRL's GRPOConfig with what a CPU box needs (module level: TRL pickles its config)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        cpu = {"use_cpu": True, "bf16": False, "max_steps": 1, "max_completion_length": 16, "report_to": "none"}
        super().__init__(*args, **{**cpu, **kwargs})  # type: ignore[arg-type]


def _tiny_model(directory: Path) -> Path:
    """A 2-layer Qwen2 with a BPE tokenizer trained here on SVG text; saved as a local checkpoint."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    corpus = [path.read_text() for path in svg_dev_files()[:120]]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<pad>", "<eos>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    Qwen2ForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _train(model_dir: Path, url: str, output: Path) -> list[dict[str, float]]:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    import trainer

    references = [path.read_text() for path in svg_dev_files()[200:204]]
    dataset = Dataset.from_list([{"prompt": "<svg", "svg": svg} for svg in references])
    funcs = trainer.get_component_rewards(url, ["pixel_l2", "canny_l2", "length"], retries=1)
    config = GRPOConfig(
        output_dir=str(output),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=16,
        max_steps=2,
        logging_steps=1,
        learning_rate=1e-5,
        reward_weights=[1.0, 1.0, 0.1],
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        seed=0,
    )
    grpo = GRPOTrainer(model=str(model_dir), reward_funcs=funcs, args=config, train_dataset=dataset)
    grpo.train()
    return grpo.state.log_history


def test_grpo_trains_two_steps_on_service_rewards(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model_dir = _tiny_model(tmp_path / "tiny-qwen2")
    with running(create_app(Settings(workers=2))) as url:
        history = _train(model_dir, url, tmp_path / "run")
    steps = [entry for entry in history if "rewards/pixel_l2/mean" in entry]
    assert len(steps) == 2
    for entry in steps:  # every rollout got a reward from the service (a random model: mostly penalties)
        for name in ("pixel_l2", "canny_l2", "length"):
            assert -1.0 <= entry[f"rewards/{name}/mean"] <= 1.0
    # The service goes away: rewards become None (NaN in TRL), a warning says why, training goes on.
    with caplog.at_level(logging.WARNING, logger="trainer.rewards"):
        history = _train(model_dir, "http://127.0.0.1:9", tmp_path / "outage")
    assert "reward service unavailable" in caplog.text
    assert len([entry for entry in history if "loss" in entry]) == 2


@pytest.mark.parametrize("config", sorted((Path(__file__).resolve().parents[2] / "trainer/configs").glob("*.yaml")))
def test_shipped_configs_parse(config: Path) -> None:
    from trl import GRPOConfig, ModelConfig, TrlParser

    from trainer.train_grpo import RLRFArguments

    parser = TrlParser((RLRFArguments, GRPOConfig, ModelConfig))
    argv = [
        "--config",
        str(config),
        "--dataset_path",
        "data",
        "--model_name_or_path",
        "/models/x",
        "--use_cpu",
        "true",
        "--bf16",
        "false",
        "--report_to",
        "none",
    ]
    rlrf_args, grpo, _ = parser.parse_args_and_config(args=argv)
    assert grpo.num_generations == 64 and grpo.temperature == 1.1 and grpo.beta == 0.0 and grpo.learning_rate == 1e-5
    # The service's scheduled total is the reward (no fixed TRL weights); rollouts follow the batch's references.
    assert grpo.reward_weights is None and rlrf_args.profile == "rlrf-im2svg"
    assert rlrf_args.dynamic_max_length and rlrf_args.dynamic_length_floor < grpo.max_completion_length


def test_launcher_runs_one_step_on_a_prepared_dataset(tmp_path: Path) -> None:
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    model_dir = _tiny_model(tmp_path / "tiny-qwen2")
    source = tmp_path / "svgs"
    source.mkdir()
    for path in svg_dev_files()[200:208]:
        (source / path.name).write_text(path.read_text())
    prepared = tmp_path / "prepared"
    cli = [sys.executable, "-m", "services.reward_api.cli", "data", "prepare", str(source), str(prepared)]
    assert subprocess.run(cli, cwd=repo, capture_output=True, timeout=300).returncode == 0
    with running(create_app(Settings(workers=2))) as url:
        cmd = [
            sys.executable,
            str(repo / "trainer/train_grpo.py"),
            "--config",
            str(repo / "trainer/configs/qwen3_8b_text2svg.yaml"),
            "--model_name_or_path",
            str(model_dir),
            "--dataset_path",
            str(prepared),
            "--reward_url",
            url,
            "--output_dir",
            str(tmp_path / "run"),
            "--use_vllm",
            "false",
            "--use_cpu",
            "true",
            "--bf16",
            "false",
            "--gradient_checkpointing",
            "false",
            "--report_to",
            "none",
            "--max_steps",
            "1",
            "--num_generations",
            "4",
            "--per_device_train_batch_size",
            "4",
            "--gradient_accumulation_steps",
            "1",
            "--max_completion_length",
            "16",
            "--save_strategy",
            "no",
        ]
        proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rewards/pixel_l2/mean" in proc.stdout + proc.stderr
    assert (tmp_path / "run" / "config.json").exists()  # the trained model was saved


def test_readme_snippet_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """trainer/README.md's TRL block, executed; ours are the URL, model and data, and a CPU box's config.

    TRL's defaults want a GPU (bf16) and a long run, so every GRPOConfig made here (by the snippet,
    or by GRPOTrainer when given none) gets ``use_cpu``, no bf16, one step and short completions.
    """
    import re

    import trl.trainer.grpo_trainer
    from datasets import Dataset

    monkeypatch.setattr(trl, "GRPOConfig", _CPUConfig)
    monkeypatch.setattr(trl.trainer.grpo_trainer, "GRPOConfig", _CPUConfig)

    section = (Path(__file__).resolve().parents[2] / "trainer/README.md").read_text().split("## TRL", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    model_dir = _tiny_model(tmp_path / "tiny-qwen2")
    dataset = Dataset.from_list([{"prompt": "<svg", "svg": svg_dev_files()[210].read_text()}])
    monkeypatch.chdir(tmp_path)
    with running(create_app(Settings(workers=2))) as url:
        namespace = {"model": str(model_dir), "dataset": dataset}
        exec(compile(snippet.replace("http://reward-api:8000", url), "trainer/README.md", "exec"), namespace)
    grpo = namespace["grpo"]
    assert [f.__name__ for f in grpo.reward_funcs] == ["pixel_l2", "canny_l2", "length"]
    logged = [entry for entry in grpo.state.log_history if "rewards/pixel_l2/mean" in entry]
    assert logged and all(-1.0 <= entry["rewards/length/mean"] <= 1.0 for entry in logged)
