"""LPIPS and DINO loaders read the real on-disk formats and match their reference packages exactly."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from services.reward_api.core.errors import ConfigError, MissingWeightsError
from services.reward_api.core.settings import Settings
from services.reward_api.models.dino import load_dino
from services.reward_api.models.lpips import load_lpips
from tests.conftest import svg_dev_files
from tests.models._weights import make_lpips_backbone

lpips = pytest.importorskip("lpips")


@pytest.fixture(scope="module")
def rgb(settings: Settings) -> np.ndarray:
    """Six real svg_dev renders at 64 px (RGB uint8): small enough for vgg on a CPU."""
    from services.reward_api.scoring import render_job, render_reference
    from services.reward_api.svg.policy import PolicyLimits

    job = render_job(settings, width=64, height=64, renderer="resvg", limits=PolicyLimits(reject_embedded_raster=False))
    images = [render_reference(None, p.read_text(), job=job).image for p in svg_dev_files()[5::50][:6]]
    assert all(image is not None for image in images)
    return np.stack([image[:, :, ::-1] for image in images])  # type: ignore[index]


def _reference_lpips(backbone: Path, net: str) -> torch.nn.Module:
    """lpips.LPIPS itself, each trunk layer filled from the file by its torchvision index."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    state = torch.load(backbone, weights_only=True)
    loaded = set()
    for slice_ in model.net.children():  # lpips slices keep torchvision's layer indices as names
        for index, layer in slice_.named_children():
            params = {name: state[f"features.{index}.{name}"] for name, _ in layer.named_parameters()}
            layer.load_state_dict(params, strict=True)
            loaded.update(f"features.{index}.{name}" for name in params)
    assert loaded == {k for k in state if k.startswith("features.")}  # every trunk weight of the file is used
    return model.eval()


def _tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.copy()).permute(0, 3, 1, 2).float() / 255.0


def _check_lpips(backbone: Path, net: str, rgb: np.ndarray, *, both_conventions: bool = True) -> None:
    ours = load_lpips(backbone, net, batch_size=4)  # 6 pairs: two batches
    pred, ref = rgb, np.roll(rgb, 1, axis=0)
    reference = _reference_lpips(backbone, net)
    with torch.no_grad():
        expected = reference(_tensor(pred), _tensor(ref), normalize=True).reshape(-1).numpy()  # [0,1] -> [-1,1]
    got = ours.distance(pred, ref)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert np.all(got > 0)
    np.testing.assert_array_equal(ours.distance(rgb, rgb), np.zeros(len(rgb), np.float32))
    if not both_conventions:
        return

    starvector = load_lpips(backbone, net, inputs="starvector")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():  # StarVector: Normalize(ImageNet) tensors straight into lpips.LPIPS
        expected_sv = reference((_tensor(pred) - mean) / std, (_tensor(ref) - mean) / std).reshape(-1).numpy()
    np.testing.assert_allclose(starvector.distance(pred, ref), expected_sv, rtol=1e-5, atol=1e-7)
    assert not np.allclose(expected_sv, expected)  # the two conventions really give different numbers


def test_lpips_alex_matches_the_lpips_package_on_the_same_weights(
    eval_weights: dict[str, Path], rgb: np.ndarray
) -> None:
    _check_lpips(eval_weights["alex"], "alex", rgb)


@pytest.mark.slow
def test_lpips_vgg_matches_the_lpips_package_on_the_same_weights(
    tmp_path: Path, eval_weights: dict[str, Path], rgb: np.ndarray
) -> None:
    with pytest.raises(ConfigError, match=r"not a torchvision vgg state dict: features\.0\.weight is shape"):
        load_lpips(eval_weights["alex"], "vgg")  # an alexnet file for the vgg trunk
    _check_lpips(make_lpips_backbone(tmp_path / "vgg16-397923af.pth", "vgg"), "vgg", rgb, both_conventions=False)


def test_lpips_reads_the_full_torchvision_file_and_refuses_the_wrong_one(
    tmp_path: Path, eval_weights: dict[str, Path], rgb: np.ndarray
) -> None:
    # torchvision's file also holds the classifier, which LPIPS never reads (stand-ins: the real one is 230 MB).
    state = torch.load(eval_weights["alex"], weights_only=True)
    state.update({"classifier.1.weight": torch.zeros(8, 8), "classifier.1.bias": torch.zeros(8)})
    torch.save(state, full := tmp_path / "alexnet-owt-7be5be79.pth")
    np.testing.assert_allclose(
        load_lpips(full, "alex").distance(rgb[:2], rgb[2:4]),
        load_lpips(eval_weights["alex"], "alex").distance(rgb[:2], rgb[2:4]),
    )
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, tmp_path / "partial.pth")
    with pytest.raises(ConfigError, match=r"features\.0\.bias is missing"):
        load_lpips(tmp_path / "partial.pth", "alex")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot be read as a torch state dict"):
        load_lpips(tmp_path / "junk.pth", "alex")


def test_lpips_missing_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "vgg16-397923af.pth"
    with pytest.raises(MissingWeightsError, match=r"LPIPS: missing weight file .*vgg16-397923af\.pth .RLRF_LPIPS"):
        load_lpips(missing, "vgg")


def test_dino_score_matches_transformers_directly(eval_weights: dict[str, Path], rgb: np.ndarray) -> None:
    from transformers import AutoImageProcessor, AutoModel

    directory = eval_weights["dino"]
    ours = load_dino(directory, batch_size=4)
    pred, ref = rgb, np.roll(rgb, 1, axis=0)
    got = ours.score(pred, ref)

    model = AutoModel.from_pretrained(directory, local_files_only=True).eval()
    processor = AutoImageProcessor.from_pretrained(directory, local_files_only=True)
    expected = []
    with torch.no_grad():
        for a, b in zip(pred, ref):  # one pair at a time, as StarVector's calculator does
            fa = model(**processor(images=a, return_tensors="pt")).last_hidden_state.mean(dim=1)
            fb = model(**processor(images=b, return_tensors="pt")).last_hidden_state.mean(dim=1)
            expected.append((float(F.cosine_similarity(fa, fb).item()) + 1) / 2)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert np.all((got > 0) & (got < 1)) and np.ptp(got) > 0
    np.testing.assert_allclose(ours.score(rgb, rgb), np.ones(len(rgb)), atol=1e-6)


def test_dino_missing_files_are_named(tmp_path: Path, eval_weights: dict[str, Path]) -> None:
    with pytest.raises(MissingWeightsError, match=r"DINO: RLRF_DINO_DIR=.* is not a directory"):
        load_dino(tmp_path / "nowhere")
    copy = tmp_path / "dinov2"
    shutil.copytree(eval_weights["dino"], copy)
    (copy / "preprocessor_config.json").unlink()
    with pytest.raises(MissingWeightsError, match=r"missing weight file .*preprocessor_config\.json"):
        load_dino(copy)
    (copy / "model.safetensors").unlink()
    with pytest.raises(MissingWeightsError, match=r"missing weight file .*model\.safetensors"):
        load_dino(copy)
