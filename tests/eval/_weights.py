"""Random LPIPS-trunk and DINOv2 weights, saved in exactly the on-disk formats the eval loaders read.

Nothing can be downloaded here, so the tests build the files: a torchvision ``alexnet``/``vgg16``
state dict (the file torchvision caches, ``features.*`` keys; the classifier is left out by default
because LPIPS never reads it and it is most of the file) and a transformers DINOv2 directory
(``Dinov2Model.save_pretrained`` plus the ``BitImageProcessor`` config facebook/dinov2-base ships),
with tiny hidden sizes.
"""

from __future__ import annotations

from pathlib import Path

import torch

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
