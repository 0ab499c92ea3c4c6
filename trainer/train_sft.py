"""SVG-SFT, RLRF's first stage: TRL's SFTTrainer on a dataset made by ``rlrf data prepare``.

    python trainer/train_sft.py --config trainer/configs/sft/qwen25vl_3b_im2svg.yaml \\
        --model_name_or_path /models/Qwen2.5-VL-3B-Instruct --dataset_path data/svg-stack-sft

The RL stage (``train_grpo.py``) starts from the checkpoint this writes, so both see the same
prompts: Im2SVG puts the reference image and the dataset's ``prompt`` in one user message and
trains on the SVG as the assistant's answer; Text2SVG trains on ``prompt`` → ``svg`` as plain
prompt-completion text, exactly the string prompt the GRPO launcher sends. The loss is on the
completion only (the SVG), the negative log-likelihood of the paper's equation for SVG-SFT.
Every SFTConfig and ModelConfig option is a flag or a YAML key; ours are in ``SFTDataArguments``.
Models load from local directories only.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass
class SFTDataArguments:
    """Data options of the SFT launcher."""

    dataset_path: str = field(metadata={"help": "dataset saved by `rlrf data prepare` (save_to_disk)"})
    task: str = field(default="im2svg", metadata={"help": "im2svg (image in the prompt) or text2svg"})
    max_samples: int | None = field(default=None, metadata={"help": "use only the first N rows"})


def sft_rows(dataset: Any, task: str) -> Any:
    """The prepared dataset as SFTTrainer's prompt-completion rows for ``task``.

    Im2SVG: a conversational row with the image (one ``image`` column, which SFTTrainer hands to the
    model's processor). Text2SVG: ``prompt``/``completion`` strings; the image column is dropped so
    the trainer does not take the data for a vision dataset.
    """
    keep = {"prompt", "svg", "image"} if task == "im2svg" else {"prompt", "svg"}
    dataset = dataset.remove_columns([c for c in dataset.column_names if c not in keep])
    if task == "im2svg":
        return dataset.map(
            lambda row: {
                "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": row["prompt"]}]}],
                "completion": [{"role": "assistant", "content": [{"type": "text", "text": row["svg"]}]}],
            },
            remove_columns=["svg"],
        )
    if task == "text2svg":
        return dataset.rename_column("svg", "completion")
    raise SystemExit(f"--task must be im2svg or text2svg, not {task!r}")


def build_dataset(args: SFTDataArguments) -> Any:
    """Load ``args.dataset_path`` and format it for the task."""
    from datasets import load_from_disk

    dataset = load_from_disk(args.dataset_path)
    if args.max_samples:
        dataset = dataset.select(range(min(args.max_samples, len(dataset))))
    return sft_rows(dataset, args.task)


def main(argv: list[str] | None = None) -> None:
    from trl import ModelConfig, SFTConfig, SFTTrainer, TrlParser, get_peft_config

    parser = TrlParser((SFTDataArguments, SFTConfig, ModelConfig))  # type: ignore[arg-type]  # a NewType no class matches
    data_args, config, model_args = parser.parse_args_and_config(args=argv)
    model_path = model_args.model_name_or_path
    if not model_path or not Path(model_path).is_dir():
        raise SystemExit(f"--model_name_or_path must be a local model directory, not {model_path!r}")
    if config.completion_only_loss is None:
        config.completion_only_loss = True
    sft = SFTTrainer(
        model=model_path,
        args=config,
        train_dataset=build_dataset(data_args),
        peft_config=get_peft_config(model_args),
    )
    sft.train()
    sft.save_model(config.output_dir)
    sft.save_state()  # trainer_state.json: the logged history (loss per step)
    if sft.processing_class is not None:
        sft.processing_class.save_pretrained(config.output_dir)


if __name__ == "__main__":
    main()
