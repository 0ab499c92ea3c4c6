"""The DINO score for ``rlrf eval``: a DINOv2 transformers directory, never the hub.

StarVector loads ``facebook/dinov2-base`` from the hub; here it is a local directory read with
``AutoModel`` and ``AutoImageProcessor`` (``local_files_only``). Convention (StarVector's
``starvector/metrics``): the directory's image processor (DINOv2: resize the short side to 256,
centre crop 224, ImageNet normalisation), the mean of ``last_hidden_state`` over all tokens (CLS
and patches), then ``(cos + 1) / 2`` of the two embeddings. Higher is better; 1 for identical
images. Runs in float32 on every device (no autocast).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from services.reward_api.models.weights import EVAL_FIX, WeightFile, require

__all__ = ["DINO_SOURCE", "Dino", "load_dino"]

DINO_SOURCE = "a DINOv2 checkpoint directory, e.g. `huggingface-cli download facebook/dinov2-base`"


class Dino:
    """DINO-score features: mean-pooled ``last_hidden_state`` of a DINOv2 model.

    Args:
        model: a transformers vision model (``Dinov2Model``).
        processor: the directory's image processor.
        device: where ``model`` lives.
        batch_size: images per forward pass.
    """

    def __init__(self, model: Any, processor: Any, *, device: torch.device, batch_size: int = 16) -> None:
        # a transformers Dinov2Model (its forward returns an output object, which nn.Module's type hides)
        self.model = model
        self.processor = processor
        self.device = device
        self.batch_size = batch_size

    @torch.inference_mode()
    def embed(self, images: np.ndarray) -> torch.Tensor:
        """``(N, D)`` float32 features of RGB uint8 ``(N, H, W, 3)`` images (on the CPU)."""
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = [np.ascontiguousarray(image) for image in images[start : start + self.batch_size]]
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"].to(self.device)
            hidden = self.model(pixel_values=pixels).last_hidden_state
            out.append(hidden.mean(dim=1).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, 0)

    def score(self, prediction: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """``(N,)`` DINO score ``(cos + 1) / 2`` of RGB uint8 pairs (higher: more alike)."""
        if prediction.shape != reference.shape:
            raise ValueError(f"shapes differ: {prediction.shape} vs {reference.shape}")
        features = self.embed(np.concatenate([prediction, reference]))
        a, b = features[: len(prediction)], features[len(prediction) :]
        return ((F.cosine_similarity(a, b, dim=1) + 1.0) / 2.0).numpy()


def load_dino(directory: Path, *, device: torch.device | str = "cpu", batch_size: int = 16) -> Dino:
    """A DINOv2 model and its image processor from a transformers directory (never the hub).

    Raises:
        MissingWeightsError: the directory or one of its files is missing.
    """
    from transformers import AutoImageProcessor, AutoModel

    files = [
        WeightFile("config.json", DINO_SOURCE),
        WeightFile("model.safetensors", DINO_SOURCE, alternatives=("pytorch_model.bin",)),
        WeightFile("preprocessor_config.json", DINO_SOURCE),
    ]
    require(directory, files, model="DINO", setting="RLRF_DINO_DIR", fix=EVAL_FIX)
    model = AutoModel.from_pretrained(str(directory), local_files_only=True)
    processor = AutoImageProcessor.from_pretrained(str(directory), local_files_only=True)
    device = torch.device(device)
    model = model.to(device).float().eval().requires_grad_(False)
    return Dino(model, processor, device=device, batch_size=batch_size)
