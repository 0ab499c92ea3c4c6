"""Randomly initialised weights of every learned model, saved in exactly the on-disk formats the loaders read.

Nothing here can be downloaded on these machines, so the tests (and the CPU benchmark) build the
files themselves: the same containers, key names and directory layout as DreamSim's cache and an
open_clip checkpoint, with small sizes by default (``embed_dim=768`` gives the real ViT-B shapes);
for ``rlrf eval``, a torchvision ``alexnet``/``vgg16`` state dict (the file torchvision caches,
``features.*`` keys; the classifier is left out by default because LPIPS never reads it and it is
most of the file) and a transformers DINOv2 directory (``Dinov2Model.save_pretrained`` plus the
``BitImageProcessor`` config facebook/dinov2-base ships), with tiny hidden sizes.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import torch
from torch import nn

from services.reward_api.models.weights import DREAMSIM_BACKBONE_FILES, DREAMSIM_LAYOUTS

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def _vit(embed_dim: int, patch: int, eps: float) -> nn.Module:
    from dreamsim.feature_extraction.vision_transformer import VisionTransformer

    # depth 12: DreamSim reads the CLS token of block 11
    return VisionTransformer(
        patch_size=patch,
        embed_dim=embed_dim,
        depth=12,
        num_heads=max(1, embed_dim // 64),
        mlp_ratio=2 if embed_dim < 768 else 4,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=eps),
    )


def _randomise(module: nn.Module, generator: torch.Generator) -> None:
    """Replace every parameter with noise: ViT's zero-initialised tokens would make tests trivially pass."""
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.2)


def make_dreamsim_dir(root: Path, kind: str = "ensemble", *, embed_dim: int = 64, seed: int = 0) -> Path:
    """A DreamSim cache directory for variant ``kind`` with random weights; returns ``root``."""
    from peft import LoraConfig, get_peft_model

    from services.reward_api.models.dreamsim import _backbones_from

    generator = torch.Generator().manual_seed(seed)
    layout = DREAMSIM_LAYOUTS[kind]
    for model_type in layout.backbones:
        path = root / DREAMSIM_BACKBONE_FILES[model_type].relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        patch = 32 if model_type.endswith("32") else 16
        if model_type.startswith("dino"):
            vit = _vit(embed_dim, patch, 1e-6)
            _randomise(vit, generator)
            torch.save(vit.state_dict(), path)  # the torch.hub DINO checkpoint: a bare state dict
        else:
            vit = _vit(embed_dim, patch, 1e-5)
            vit.pos_drop = nn.LayerNorm(embed_dim, eps=1e-5)
            _randomise(vit, generator)
            state = dict(vit.state_dict())
            state["proj"] = torch.randn(embed_dim, 512 if embed_dim >= 768 else 32, generator=generator) * 0.2
            torch.save({"state_dict": state}, path)  # DreamSim's *_pretrain.pth.tar: {"state_dict": ..., proj}

    from dreamsim.config import dreamsim_args
    from dreamsim.feature_extraction.extractor import ViTExtractor
    from dreamsim.model import PerceptualModel

    with _backbones_from(ViTExtractor, root):
        model = PerceptualModel(**dreamsim_args["model_config"][kind], device="cpu", load_dir=str(root))
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias="none", target_modules=["qkv"])
    peft_model = get_peft_model(model, lora)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:  # lora_B starts at zero: make the adapter actually change the model
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    peft_model.save_pretrained(str(root / layout.lora_dir))
    return root


def make_clip_checkpoint(root: Path, *, seed: int = 0, config: dict | None = None) -> tuple[Path, Path]:
    """A tiny open_clip architecture config and a random checkpoint for it: (checkpoint, config)."""
    import open_clip

    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "rlrf-tiny-clip.json"
    config_path.write_text(json.dumps(config or TINY_CLIP))
    open_clip.add_model_config(config_path)
    torch.manual_seed(seed)
    model = open_clip.create_model("rlrf-tiny-clip", pretrained=None)
    _randomise(model, torch.Generator().manual_seed(seed))
    checkpoint = root / "open_clip_pytorch_model.bin"
    torch.save(model.state_dict(), checkpoint)
    return checkpoint, config_path


# facebook/dinov2-base's preprocessor_config.json, field for field.
DINOV2_PROCESSOR = {
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "resample": 3,
    "rescale_factor": 1 / 255,
    "size": {"shortest_edge": 256},
}


def make_lpips_backbone(path: Path, net: str = "alex", *, seed: int = 0) -> Path:
    """A torchvision ``alexnet``/``vgg16`` state dict (its ``features.*`` keys) with random weights."""
    import torchvision

    torch.manual_seed(seed)
    if net == "alex":
        features = torchvision.models.alexnet().features
    else:  # vgg16's trunk alone: its classifier's 120M parameters would cost seconds for nothing
        from torchvision.models.vgg import cfgs, make_layers

        features = make_layers(cfgs["D"], batch_norm=False)
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def make_dino_dir(root: Path, *, seed: int = 0, hidden_size: int = 32) -> Path:
    """A DINOv2 directory (config.json, model.safetensors, preprocessor_config.json), random and tiny."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    config = Dinov2Config(
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        image_size=518,
        patch_size=14,
    )
    model = Dinov2Model(config)
    with torch.no_grad():  # the init leaves tokens near zero: make images differ in feature space
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    model.save_pretrained(root)
    BitImageProcessor(**DINOV2_PROCESSOR).save_pretrained(root)
    return root
