"""Device choice and mixed precision, shared by the learned models."""

from __future__ import annotations

import contextlib

import torch


def resolve_device(setting: str) -> torch.device:
    """``auto`` is CUDA when a GPU is visible, else the CPU (slow, but what the tests run on)."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on CUDA; full precision on the CPU.

    Embeddings are only ever compared by cosine similarity, where bf16's ~3 significant digits are
    far below the differences between drawings that a reward has to tell apart.
    """
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
