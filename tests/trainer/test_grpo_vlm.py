"""Im2SVG end to end on CPU: TRL's GRPOTrainer on a tiny random Qwen2.5-VL built here, offline.

The launcher runs the shipped Qwen2.5-VL config (vLLM, bf16 and the GPU batch sizes turned off) on
a dataset made by ``rlrf data prepare``: the reference image goes into the multimodal prompt and,
as a PIL image in the ``image`` column, to the reward functions, which TRL awaits concurrently.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from services.reward_api.api.main import create_app
from services.reward_api.core.settings import Settings
from tests.api.conftest import running
from tests.conftest import svg_dev_files

pytest.importorskip("trl", reason="the trainer extra (trl, torch) is not installed")
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SPECIAL = [
    "<unk>",
    "<pad>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_qwen25_vl(directory: Path) -> Path:
    """Qwen2.5-VL's architecture at toy size (one vision block, two text layers), random weights.

    The processor is Qwen2.5-VL's own (image processor capped at 56x56 px: 4 image tokens), with a
    BPE tokenizer trained here on SVG text plus Qwen's chat and vision special tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    bpe.train_from_iterator(
        [path.read_text() for path in svg_dev_files()[:120]],
        trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL, initial_alphabet=alphabet),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, unk_token="<unk>", pad_token="<pad>", eos_token="<|im_end|>"
    )
    tokenizer.chat_template = TEMPLATE
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=56 * 56),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=TEMPLATE,
    )
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 2048,
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        "bos_token_id": ids["<|im_start|>"],
        "pad_token_id": ids["<pad>"],
        "eos_token_id": ids["<|im_end|>"],
    }
    vision = {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 32}
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config={**vision, "fullatt_block_indexes": [0], "window_size": 56},
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|im_start|>"],
        pad_token_id=ids["<pad>"],
        eos_token_id=ids["<|im_end|>"],
    )
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def _score_calls(url: str) -> float:
    match = re.search(r'rlrf_requests_total\{code="200",route="/score"\} ([\d.]+)', httpx.get(f"{url}/metrics").text)
    return float(match.group(1)) if match else 0.0


def test_launcher_trains_a_vision_language_model_on_the_im2svg_config(tmp_path: Path) -> None:
    model_dir = tiny_qwen25_vl(tmp_path / "tiny-qwen25-vl")
    source = tmp_path / "svgs"
    source.mkdir()
    for path in svg_dev_files()[200:208]:
        (source / path.name).write_text(path.read_text())
    prepared = tmp_path / "prepared"
    cli = [
        sys.executable,
        "-m",
        "services.reward_api.cli",
        "data",
        "prepare",
        str(source),
        str(prepared),
        "--size",
        "64",
    ]
    assert subprocess.run(cli, cwd=REPO, capture_output=True, timeout=300).returncode == 0
    overrides = {
        "model_name_or_path": model_dir,
        "dataset_path": prepared,
        "output_dir": tmp_path / "run",
        "use_vllm": "false",
        "use_cpu": "true",
        "bf16": "false",
        "gradient_checkpointing": "false",
        "report_to": "none",
        "max_steps": "2",
        "num_generations": "4",
        "per_device_train_batch_size": "4",
        "gradient_accumulation_steps": "1",
        "max_completion_length": "16",
        "save_strategy": "no",
        "logging_steps": "1",
    }
    argv = [str(REPO / "trainer/train_grpo.py"), "--config", str(REPO / "trainer/configs/qwen25vl_3b_im2svg.yaml")]
    for key, value in overrides.items():
        argv += [f"--{key}", str(value)]
    with running(create_app(Settings(workers=2))) as url:
        proc = subprocess.run(
            [sys.executable, *argv, "--reward_url", url], cwd=REPO, capture_output=True, text=True, timeout=900
        )
        calls = _score_calls(url)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "reward service" not in log  # no rollout went unscored
    assert log.count("'rewards/pixel_l2/mean'") == 2 and "'rewards/length/mean'" in log  # both steps logged
    # The service's total (the components come back in the same answer and are logged): one POST /score per step.
    assert calls == 2
    assert (tmp_path / "run" / "config.json").exists()
