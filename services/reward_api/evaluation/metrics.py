"""The metrics one ``rlrf eval`` run computes: the learned ones that are configured, loaded once.

LPIPS and DINO (``models/lpips.py``, ``models/dino.py``) and CLIP (``models/clip.py``) read local
weight files only; the judge is the service's own judge stage (``judging.JudgeStage``) pointed at
the judge proxy. A metric that is not configured is absent from the report, with the reason, never
a 0. A configured file that is missing fails here, before anything is rendered.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.reward_api.core.errors import InputError
from services.reward_api.core.settings import Settings
from services.reward_api.evaluation.config import EvalOptions, EvalSettings, Task
from services.reward_api.evaluation.inputs import Reference
from services.reward_api.evaluation.summary import IMAGE_METRICS, LENGTH_COLUMNS, TEXT_METRICS

if TYPE_CHECKING:
    from services.reward_api.judging import JudgeStage
    from services.reward_api.models.clip import Clip
    from services.reward_api.models.dino import Dino
    from services.reward_api.models.lpips import Lpips

__all__ = ["Metrics"]


@dataclass
class Metrics:
    """The columns of a run, why the others are absent, and the loaded models behind them."""

    task: Task
    count: Callable[[str], int]  # the length of a text, in ``length_unit``
    length_unit: str
    columns: list[str] = field(default_factory=list)
    absent: dict[str, str] = field(default_factory=dict)
    weights: dict[str, dict[str, Any]] = field(default_factory=dict)  # what each model was read from
    lpips: Lpips | None = None
    dino: Dino | None = None
    clip: Clip | None = None
    judge: JudgeStage | None = None

    @classmethod
    def load(
        cls, settings: Settings, config: EvalSettings, options: EvalOptions, references: dict[str, Reference]
    ) -> Metrics:
        """Load what is configured (a missing file fails here, before any rendering).

        Raises:
            MissingWeightsError: a configured weight file is missing.
            ConfigError: a weight file of the wrong kind.
            InputError: ``options.tokenizer`` is not a directory.
        """
        count, unit = _length_counter(options.tokenizer)
        metrics = cls(task=options.task, count=count, length_unit=unit)
        if options.tokenizer:
            metrics.weights["tokenizer"] = {"dir": options.tokenizer}
        has_images = options.task == "im2svg" or any(
            r.svg is not None or r.image_b64 is not None for r in references.values()
        )
        if has_images:
            metrics.columns += ["mse", "ssim"]
            metrics._load_lpips(settings, config)
            metrics._load_dino(settings, config)
        else:
            metrics.absent.update(dict.fromkeys(IMAGE_METRICS, "no reference has an image (svg or image_b64)"))
        if options.task == "text2svg":
            metrics._load_clip(settings)
            metrics._connect_judge(settings, enabled=options.judge)
        else:
            metrics.absent.update(dict.fromkeys(TEXT_METRICS, "Text2SVG metric (--task text2svg)"))
        metrics.columns += list(LENGTH_COLUMNS)
        return metrics

    def _load_lpips(self, settings: Settings, config: EvalSettings) -> None:
        if config.lpips_backbone is None:
            self.absent["lpips"] = "no LPIPS trunk configured (--lpips-backbone / RLRF_LPIPS_BACKBONE)"
            return
        from services.reward_api.models._device import resolve_device
        from services.reward_api.models.lpips import load_lpips

        self.lpips = load_lpips(
            config.lpips_backbone,
            config.lpips_net,
            inputs=config.lpips_inputs,
            device=resolve_device(settings.device),
            batch_size=config.eval_batch_size,
        )
        self.columns.append("lpips")
        self.weights["lpips"] = {
            "backbone": str(config.lpips_backbone),
            "net": config.lpips_net,
            "inputs": config.lpips_inputs,
            "linear_layers": "the lpips package's weights/v0.1",
        }

    def _load_dino(self, settings: Settings, config: EvalSettings) -> None:
        if config.dino_dir is None:
            self.absent["dino"] = "no DINO model configured (--dino-dir / RLRF_DINO_DIR)"
            return
        from services.reward_api.models._device import resolve_device
        from services.reward_api.models.dino import load_dino

        self.dino = load_dino(
            config.dino_dir, device=resolve_device(settings.device), batch_size=config.eval_batch_size
        )
        self.columns.append("dino")
        self.weights["dino"] = {"dir": str(config.dino_dir), "model_type": self.dino.model.config.model_type}

    def _load_clip(self, settings: Settings) -> None:
        if settings.clip_checkpoint is None:
            self.absent["clip_score"] = "no CLIP checkpoint configured (--clip-checkpoint / RLRF_CLIP_CHECKPOINT)"
            return
        from services.reward_api.models._device import resolve_device
        from services.reward_api.models.clip import load_clip

        self.clip = load_clip(
            settings.clip_checkpoint,
            settings.clip_model,
            settings.clip_model_config,
            device=resolve_device(settings.device),
        )
        self.columns.append("clip_score")
        self.weights["clip_score"] = {"checkpoint": str(settings.clip_checkpoint), "model": settings.clip_model}

    def _connect_judge(self, settings: Settings, *, enabled: bool) -> None:
        if not enabled:
            self.absent["judge"] = "judge turned off (--no-judge)"
            return
        if not settings.judge_url:
            self.absent["judge"] = "no judge proxy configured (RLRF_JUDGE_URL)"
            return
        from services.reward_api.judging import JudgeStage

        self.judge = JudgeStage(settings)
        self.columns.append("judge")
        self.weights["judge"] = {
            "url": settings.judge_url,
            "rubric": settings.judge_rubric_text2svg,
            "backend": settings.judge_backend or "the proxy's default",
        }

    def close(self) -> None:
        if self.judge is not None:
            self.judge.close()


def _length_counter(tokenizer: str | None) -> tuple[Callable[[str], int], str]:
    if tokenizer is None:
        return len, "characters"
    if not Path(tokenizer).is_dir():
        raise InputError(f"--tokenizer {tokenizer} is not a directory (a local tokenizer is needed)")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer, local_files_only=True)
    tok.model_max_length = sys.maxsize  # counting only: no "sequence too long" warnings

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    return count, f"tokens ({Path(tokenizer).name})"
