"""What ``rlrf eval`` is configured with besides the service's ``Settings``.

``EvalSettings`` holds the eval-only weight paths (``RLRF_LPIPS_*``, ``RLRF_DINO_DIR``,
``RLRF_EVAL_BATCH_SIZE``), kept out of the server's ``Settings`` because no server reads them.
``EvalOptions`` holds what one run computes (task, tokenizer, judge, report), never from the environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["EvalOptions", "EvalSettings", "Task"]

Task = Literal["im2svg", "text2svg"]
# As models/lpips.py names them; spelled out here so that reading the settings never imports torch.
LpipsNet = Literal["vgg", "alex"]
LpipsInputs = Literal["standard", "starvector"]


class EvalSettings(BaseSettings):
    """The learned eval metrics' local weight files; an unset path leaves its metric out (said so), never a 0."""

    model_config = SettingsConfigDict(env_prefix="RLRF_", env_file=".env", extra="ignore")

    lpips_backbone: Path | None = Field(
        None,
        description="torchvision ImageNet state dict of the LPIPS trunk (vgg16-397923af.pth or "
        "alexnet-owt-7be5be79.pth; only its features.* keys are read). Unset: no LPIPS column.",
    )
    lpips_net: LpipsNet = Field(
        "vgg", description="LPIPS trunk; vgg as StarVector reports it. Its linear layers ship inside `lpips`."
    )
    lpips_inputs: LpipsInputs = Field(
        "standard",
        description="standard: images in [-1, 1] as lpips expects; starvector: ImageNet-normalised, "
        "as StarVector's metric code feeds them (for comparing with its published numbers).",
    )
    dino_dir: Path | None = Field(
        None,
        description="DINOv2 directory in transformers' layout (config.json, model.safetensors, "
        "preprocessor_config.json; StarVector uses facebook/dinov2-base). Unset: no DINO column.",
    )
    eval_batch_size: int = Field(16, ge=1, le=4096, description="Images per forward pass of the eval models.")

    @field_validator("lpips_backbone", "dino_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``RLRF_DINO_DIR=`` (empty, as templates leave it) means unset."""
        return None if isinstance(value, str) and not value.strip() else value


@dataclass
class EvalOptions:
    """What ``evaluate`` computes besides the settings (canvas, workers, weight paths)."""

    task: Task = "im2svg"
    tokenizer: str | None = None  # local Hugging Face tokenizer directory; None: characters
    judge: bool = True  # Text2SVG: call the judge proxy when RLRF_JUDGE_URL is set
    sort_by: str | None = None  # the HTML's primary metric; None: summary.PRIMARY[task]
    keep_renders: bool = False  # PNGs for the HTML report
    progress: bool = True
