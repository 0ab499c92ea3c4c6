"""DreamSim from local files: DreamSim's own model code, its cache layout, no torch.hub, no download.

``dreamsim.dreamsim()`` downloads its archive and pulls the DINO backbone through ``torch.hub``
(which needs the facebookresearch/dino repository code from GitHub). Here the same
``PerceptualModel`` and LoRA adapter are built, with one difference: the backbones are read
straight from the files of that cache layout (``weights.DREAMSIM_BACKBONE_FILES``) into DreamSim's
own ``VisionTransformer``, their sizes taken from the checkpoint. For the released weights that is
exactly ViT-B, as ``vit_base`` builds it; tests save tiny random checkpoints in the same formats.

Features are DreamSim's: the CLS token of block 11 for DINO, the projected CLS embedding for the
CLIP backbones, concatenated and normalised (centred, unit length), so the DreamSim distance of two
images is ``1 - cos(e_a, e_b)``. The LoRA adapter is merged into the weights after loading: the
same function, one matmul per layer fewer.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from services.reward_api.models._device import autocast
from services.reward_api.models.weights import DREAMSIM_BACKBONE_FILES, DREAMSIM_LAYOUTS, dreamsim_files, require

IMAGE_SIZE = 224  # DreamSim's input size (dreamsim_args["img_size"])
_PATCH_LOCK = threading.Lock()


class DreamSim:
    """A loaded DreamSim model: ``embed`` maps RGB images to normalised embeddings."""

    def __init__(self, model: Any, device: torch.device) -> None:  # dreamsim's PerceptualModel (untyped)
        self.model = model
        self.device = device

    @torch.inference_mode()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """RGB images (N, H, W, 3) uint8 to float32 embeddings (N, D), each of unit length.

        Inputs are scaled to [0, 1] and resized to 224 px (bicubic, antialiased) as DreamSim's
        ``preprocess`` does; the model normalises per backbone itself.
        """
        x = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bicubic", antialias=True).clamp_(0.0, 1.0)
        with autocast(self.device):
            embedding = self.model.embed(x)
        return embedding.float().reshape(len(images), -1)


def load_dreamsim(root: Path, kind: str = "ensemble", device: torch.device | str = "cpu") -> DreamSim:
    """Build DreamSim variant ``kind`` from the cache directory ``root``.

    Raises:
        MissingWeightsError: a file of the layout is missing (named, with where it comes from).
    """
    from dreamsim.config import dreamsim_args
    from dreamsim.feature_extraction.extractor import ViTExtractor
    from dreamsim.model import PerceptualModel
    from peft import PeftModel

    require(root, dreamsim_files(kind), model=f"DreamSim ({kind})", setting="RLRF_DREAMSIM_DIR")
    config = dreamsim_args["model_config"][kind]
    with _PATCH_LOCK, _backbones_from(ViTExtractor, root):
        model = PerceptualModel(**config, device="cpu", load_dir=str(root), normalize_embeds=True)
    model = PeftModel.from_pretrained(model, str(root / DREAMSIM_LAYOUTS[kind].lora_dir)).merge_and_unload()
    device = torch.device(device)
    model = model.to(device).eval().requires_grad_(False)
    model.device = str(device)  # PerceptualModel moves CLIP projections with this
    for extractor in model.extractor_list:
        extractor.device = str(device)
    return DreamSim(model, device)


@contextlib.contextmanager
def _backbones_from(extractor_cls: Any, root: Path) -> Iterator[None]:
    """Let DreamSim's ``ViTExtractor`` read backbones from ``root`` instead of torch.hub."""
    original = extractor_cls.__dict__["create_model"]
    extractor_cls.create_model = staticmethod(lambda model_type, load_dir=None: load_backbone(root, model_type))
    try:
        yield
    finally:
        extractor_cls.create_model = original


def load_backbone(root: Path, model_type: str) -> Any:
    """One DreamSim backbone from its file, as DreamSim's loaders build it (DINO-style ViT).

    Returns:
        The ViT (DINO), or the ViT and its projection (CLIP, open_clip); dreamsim's types are untyped.
    """
    from dreamsim.feature_extraction.load_clip_as_dino import QuickGELU

    path = root / DREAMSIM_BACKBONE_FILES[model_type].relpath
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if model_type.startswith("dino"):
        # The hub checkpoint is the bare backbone state dict. DreamSim also builds DINO's projection
        # head from its training checkpoint, but its 'cls' features never use it.
        vit = _vit_like(checkpoint, eps=1e-6)
        vit.load_state_dict(checkpoint, strict=True)
        return vit
    state = dict(checkpoint["state_dict"])
    proj = state.pop("proj")
    vit = _vit_like(state, eps=1e-5)
    vit.pos_drop = nn.LayerNorm(vit.embed_dim, eps=1e-5)  # CLIP's ln_pre sits where DINO has dropout
    vit.load_state_dict(state, strict=True)
    if not model_type.startswith("open_clip"):
        for block in vit.blocks:
            block.mlp.act = QuickGELU()  # OpenAI CLIP's activation
    return vit, proj


def _vit_like(state: dict[str, torch.Tensor], *, eps: float) -> Any:
    """DreamSim's ``VisionTransformer`` with the sizes of ``state`` (ViT-B/16 for the real files).

    Head count is not stored in a checkpoint: it is ``embed_dim // 64``, as in every ViT DreamSim uses.
    """
    from functools import partial

    from dreamsim.feature_extraction.vision_transformer import VisionTransformer

    embed_dim = state["cls_token"].shape[-1]
    patch = state["patch_embed.proj.weight"].shape[-1]
    grid = round((state["pos_embed"].shape[1] - 1) ** 0.5)
    depth = 1 + max(int(m.group(1)) for key in state if (m := re.match(r"blocks\.(\d+)\.", key)))
    hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    return VisionTransformer(
        img_size=[grid * patch],
        patch_size=patch,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=max(1, embed_dim // 64),
        mlp_ratio=hidden / embed_dim,
        qkv_bias="blocks.0.attn.qkv.bias" in state,
        norm_layer=partial(nn.LayerNorm, eps=eps),
    )
