"""CLIP (open_clip) from a local checkpoint file: image and text embeddings for ``clip_text``.

The architecture comes from open_clip's registry by name (``ViT-B-32``), or from a JSON config
file for one it does not ship (registered with ``open_clip.add_model_config``; its file stem is the
model name). Weights come only from ``checkpoint``, passed to open_clip as a file path (strict
``load_checkpoint``), never as a pretrained tag, so nothing is ever fetched from a hub.
Architectures whose tokenizer lives on the Hugging Face hub (SigLIP and similar) are refused, for
the same reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from services.reward_api.core.errors import ConfigError
from services.reward_api.models._device import autocast
from services.reward_api.models.weights import require_file


class Clip:
    """A loaded CLIP model: unit-length image and text embeddings in the same space."""

    def __init__(self, model: Any, tokenizer: Any, device: torch.device) -> None:
        # open_clip's CLIP and tokenizer: untyped (open_clip ships no type information)
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        cfg = model.visual.preprocess_cfg
        size = cfg["size"]
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        self.mean = torch.tensor(cfg["mean"], device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg["std"], device=device).view(1, 3, 1, 1)

    @torch.inference_mode()
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """RGB images (N, H, W, 3) uint8 to unit embeddings (N, D).

        The canvases are square, so open_clip's resize-shorter-side-then-centre-crop is a plain
        bicubic resize here, done on the whole batch at once.
        """
        x = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bicubic", antialias=True).clamp_(0.0, 1.0)
        x = (x - self.mean) / self.std
        with autocast(self.device):
            features = self.model.encode_image(x)
        return F.normalize(features.float(), dim=-1)

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """Texts to unit embeddings (N, D); the tokenizer truncates to the model's context length."""
        tokens = self.tokenizer(texts).to(self.device)
        with autocast(self.device):
            features = self.model.encode_text(tokens)
        return F.normalize(features.float(), dim=-1)


def load_clip(
    checkpoint: Path, model_name: str = "ViT-B-32", config: Path | None = None, device: torch.device | str = "cpu"
) -> Clip:
    """Build ``model_name`` (or the architecture in ``config``) and load ``checkpoint`` into it.

    Raises:
        MissingWeightsError: the checkpoint or config file does not exist.
        ConfigError: unknown architecture, or one that needs a hub tokenizer.
    """
    import open_clip

    require_file(checkpoint, model="CLIP", setting="RLRF_CLIP_CHECKPOINT", source="open_clip's pretrained weights")
    if config is not None:
        require_file(config, model="CLIP", setting="RLRF_CLIP_MODEL_CONFIG", source="an open_clip model config")
        open_clip.add_model_config(config)
        model_name = config.stem
    model_config = open_clip.get_model_config(model_name)
    if model_config is None:
        raise ConfigError(f"CLIP: unknown open_clip architecture {model_name!r} (RLRF_CLIP_MODEL)")
    if model_config.get("text_cfg", {}).get("hf_tokenizer_name"):
        raise ConfigError(f"CLIP: {model_name} needs a Hugging Face hub tokenizer; choose an OpenAI-style model")
    # A file path (never a tag): open_clip loads it strictly with load_checkpoint, nothing is fetched.
    model = open_clip.create_model(model_name, pretrained=str(checkpoint.resolve()), device="cpu")
    device = torch.device(device)
    model = model.to(device).eval().requires_grad_(False)
    return Clip(model, open_clip.get_tokenizer(model_name), device)
