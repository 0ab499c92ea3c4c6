"""GRPO with rendering rewards: TRL's GRPOTrainer (optionally vLLM, LoRA) on the reward service.

    python trainer/train_grpo.py --config trainer/configs/qwen25vl_3b_im2svg.yaml \\
        --model_name_or_path /models/Qwen2.5-VL-3B-Instruct --dataset_path data/svg-stack-rl \\
        --reward_url http://reward-api:8000

Every GRPOConfig and ModelConfig option is a flag or a YAML key (``--help`` lists them); ours are
in ``RLRFArguments``. The dataset is one made by ``rlrf data prepare`` (columns ``prompt``, ``svg``,
``image``, ``svg_tokens``). Im2SVG puts the reference image in a multimodal prompt; Text2SVG uses
the text prompt and scores the render against the ground-truth SVG (CLIP text rewards arrive with
the perceptual-rewards issue). Models load from local paths only.

The reward TRL optimises is, by default, the service's total under ``--profile``: the service
weighs the components at the trainer's step, so a schedule such as ``rlrf-im2svg-length-warmup``
takes effect, and each component's mean is still logged (``rewards/<component>/mean``). Giving
``--reward_weights`` instead makes one TRL reward function per ``--components`` entry with those
fixed weights (TRL sums them; a profile's schedule then cannot apply). ``--dynamic_max_length``
caps each step's rollouts at the batch's longest reference SVG (``trainer/_length.py``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass
class RLRFArguments:
    """Reward-service and data options of the launcher."""

    dataset_path: str = field(metadata={"help": "dataset saved by `rlrf data prepare` (save_to_disk)"})
    reward_url: str = field(default="http://127.0.0.1:8000", metadata={"help": "the reward service"})
    reward_token: str | None = field(default=None, metadata={"help": "bearer token (RLRF_API_TOKEN of the service)"})
    task: str = field(default="im2svg", metadata={"help": "im2svg (image in the prompt) or text2svg"})
    components: list[str] = field(
        default_factory=lambda: ["pixel_l2", "canny_l2", "length"],
        metadata={"help": "with --reward_weights: one TRL reward function per component, fixed weights"},
    )
    profile: str = field(
        default="rlrf-im2svg",
        metadata={"help": "service weight profile (its step schedule applies unless --reward_weights is given)"},
    )
    dynamic_max_length: bool = field(
        default=False,
        metadata={"help": "cap each step's rollouts at the batch's longest reference SVG (paper, appendix C.3)"},
    )
    dynamic_length_floor: int = field(default=64, metadata={"help": "smallest per-step cap, in tokens"})
    dynamic_length_margin: int = field(default=32, metadata={"help": "tokens allowed beyond the longest reference"})
    length_in_tokens: bool = field(
        default=False,
        metadata={"help": "the dataset's svg_tokens were counted with this model's tokenizer: use token lengths"},
    )
    max_samples: int | None = field(default=None, metadata={"help": "use only the first N rows"})


def build_dataset(args: RLRFArguments):  # type: ignore[no-untyped-def]
    """The prepared dataset in the shape GRPOTrainer expects for the task."""
    from datasets import load_from_disk

    dataset = load_from_disk(args.dataset_path)
    if args.max_samples:
        dataset = dataset.select(range(min(args.max_samples, len(dataset))))
    if args.length_in_tokens:
        dataset = dataset.rename_column("svg_tokens", "reference_tokens")
    if args.task == "im2svg":
        dataset = dataset.map(
            lambda row: {
                "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": row["prompt"]}]}]
            }
        )
    elif args.task == "text2svg":
        dataset = dataset.remove_columns("image")  # an image column would make TRL treat the model as a VLM
    else:
        raise SystemExit(f"--task must be im2svg or text2svg, not {args.task!r}")
    return dataset


def main(argv: list[str] | None = None) -> None:
    from trl import GRPOConfig, GRPOTrainer, ModelConfig, TrlParser, get_peft_config

    parser = TrlParser((RLRFArguments, GRPOConfig, ModelConfig))  # type: ignore[arg-type]  # a NewType no class matches
    rlrf_args, config, model_args = parser.parse_args_and_config(args=argv)
    dataset = build_dataset(rlrf_args)
    rewards = build_rewards(rlrf_args, config.reward_weights)
    kwargs: dict[str, Any] = {}
    trainer_class: type = GRPOTrainer
    if rlrf_args.dynamic_max_length:
        from trainer._length import DynamicLengthGRPOTrainer

        trainer_class = DynamicLengthGRPOTrainer
        kwargs = {"length_floor": rlrf_args.dynamic_length_floor, "length_margin": rlrf_args.dynamic_length_margin}
    grpo = trainer_class(
        model=model_args.model_name_or_path,
        reward_funcs=rewards,
        args=config,
        train_dataset=dataset,
        peft_config=get_peft_config(model_args),
        **kwargs,
    )
    grpo.train()
    grpo.save_model(config.output_dir)
    grpo.save_state()  # trainer_state.json: the logged history (rewards per step)


def build_rewards(args: RLRFArguments, reward_weights: list[float] | None) -> list[Any]:
    """The service's scheduled total (default), or fixed-weight per-component functions."""
    import trainer

    if reward_weights is None:
        return [trainer.get_svg_reward(args.reward_url, profile=args.profile, token=args.reward_token)]
    if len(reward_weights) != len(args.components):
        raise SystemExit(f"--reward_weights needs {len(args.components)} values, one per component {args.components}")
    return trainer.get_component_rewards(
        args.reward_url, args.components, profile=args.profile, token=args.reward_token
    )


if __name__ == "__main__":
    main()
