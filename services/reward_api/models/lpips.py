"""LPIPS for ``rlrf eval``, from local files only, scored in batches.

Nothing here downloads. ``lpips`` would fetch its torchvision trunk from the internet; we build it
with a random trunk instead (``pnet_rand=True``: no download), load the trunk from the torchvision
ImageNet state dict that ``lpips_backbone`` points at, and keep the linear layers that ship inside
the ``lpips`` package.

Convention (StarVector's ``starvector/metrics``, which the RLRF paper reports): LPIPS v0.1,
``net="vgg"`` by default. ``inputs="standard"`` feeds ``[-1, 1]`` images, as the library expects.
StarVector feeds ImageNet-normalised tensors instead (then lpips's own scaling layer runs on top of
them); ``inputs="starvector"`` reproduces that for comparisons with its published numbers. Lower is
better; 0 for identical images. Runs in float32 on every device (no autocast), so a number does not
depend on the GPU's precision.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from services.reward_api.core.errors import ConfigError
from services.reward_api.models.weights import EVAL_FIX, require_file

__all__ = ["LPIPS_BACKBONE_URLS", "Lpips", "LpipsInputs", "LpipsNet", "load_lpips"]

LpipsNet = Literal["vgg", "alex"]
LpipsInputs = Literal["standard", "starvector"]

# The files torchvision (and so lpips) would download for the trunk; any copy of them works.
LPIPS_BACKBONE_URLS: dict[str, str] = {
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class Lpips:
    """LPIPS distances between RGB uint8 image batches (lower: more alike).

    Args:
        model: an ``lpips.LPIPS`` with its trunk and linear layers loaded.
        inputs: ``"standard"`` (``[-1, 1]``) or ``"starvector"`` (ImageNet-normalised).
        device: where ``model`` lives.
        batch_size: image pairs per forward pass.
    """

    def __init__(
        self, model: torch.nn.Module, *, inputs: LpipsInputs, device: torch.device, batch_size: int = 16
    ) -> None:
        self.model = model
        self.inputs = inputs
        self.device = device
        self.batch_size = batch_size
        self.mean = torch.tensor(_IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(_IMAGENET_STD, device=device).view(1, 3, 1, 1)

    @torch.inference_mode()
    def distance(self, prediction: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """``(N,)`` LPIPS of RGB uint8 ``(N, H, W, 3)`` pairs.

        >>> lpips_metric.distance(images, images)  # doctest: +SKIP
        array([0., 0.], dtype=float32)
        """
        if prediction.shape != reference.shape:
            raise ValueError(f"shapes differ: {prediction.shape} vs {reference.shape}")
        out = []
        for start in range(0, len(prediction), self.batch_size):
            x = self._prepare(prediction[start : start + self.batch_size])
            y = self._prepare(reference[start : start + self.batch_size])
            out.append(self.model(x, y).reshape(-1).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros(0, np.float32)

    def _prepare(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        if self.inputs == "starvector":  # ToTensor then Normalize(ImageNet), as StarVector's LPIPS code
            return (x - self.mean) / self.std
        return x.mul_(2.0).sub_(1.0)  # lpips's documented input range


def load_lpips(
    backbone: Path,
    net: LpipsNet = "vgg",
    *,
    inputs: LpipsInputs = "standard",
    device: torch.device | str = "cpu",
    batch_size: int = 16,
) -> Lpips:
    """LPIPS v0.1 with its trunk read from ``backbone``, a torchvision ImageNet state dict.

    Only the ``features.*`` entries are read (the trunk LPIPS taps), so the full torchvision file
    and a features-only copy both work. The linear layers come from the ``lpips`` package itself.

    Raises:
        MissingWeightsError: ``backbone`` or the package's linear-layer file is missing.
        ConfigError: the file is not a state dict of a torchvision ``net`` (a key or a shape differs).
    """
    import lpips

    if net not in LPIPS_BACKBONE_URLS:
        raise ConfigError(f"LPIPS: unknown net {net!r} (RLRF_LPIPS_NET: vgg or alex)")
    require_file(backbone, model="LPIPS", setting="RLRF_LPIPS_BACKBONE", source=LPIPS_BACKBONE_URLS[net], fix=EVAL_FIX)
    linear = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    require_file(linear, model="LPIPS", setting="the lpips package", source="`pip install lpips`")
    with warnings.catch_warnings():  # lpips builds its trunk with torchvision's deprecated `pretrained=`
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(
            net=net, version="0.1", pretrained=True, pnet_rand=True, model_path=str(linear), verbose=False
        )
    try:
        state = torch.load(backbone, map_location="cpu", weights_only=True)  # tensors only: never runs pickled code
    except Exception as exc:
        raise ConfigError(f"LPIPS: {backbone} cannot be read as a torch state dict: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"LPIPS: {backbone} is not a state dict (RLRF_LPIPS_BACKBONE)")
    # lpips keeps torchvision's layer indices: its net.slice<k>.<i>.weight is features.<i>.weight.
    trunk = {}
    for key, param in model.net.state_dict().items():
        source = "features." + key.split(".", 1)[1]
        found = state.get(source)
        if found is None or tuple(found.shape) != tuple(param.shape):
            got = "missing" if found is None else f"shape {tuple(found.shape)}"
            raise ConfigError(
                f"LPIPS: {backbone} is not a torchvision {net} state dict: {source} is {got}, "
                f"expected shape {tuple(param.shape)} (RLRF_LPIPS_NET={net})"
            )
        trunk[key] = found
    model.net.load_state_dict(trunk, strict=True)
    device = torch.device(device)
    model = model.to(device).eval().requires_grad_(False)
    return Lpips(model, inputs=inputs, device=device, batch_size=batch_size)
