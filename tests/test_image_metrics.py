"""MSE and SSIM equal scikit-image's on real renders; code efficiency is StarVector's difference."""

from __future__ import annotations

import numpy as np
import pytest

from services.reward_api.core.settings import Settings
from services.reward_api.image_metrics import code_efficiency, mean_squared_error, structural_similarity
from services.reward_api.scoring import render_job, render_reference
from services.reward_api.svg.policy import PolicyLimits
from tests.conftest import svg_dev_files

skimage_metrics = pytest.importorskip("skimage.metrics", reason="scikit-image (the dev extra) is the reference")
sk_mse = skimage_metrics.mean_squared_error
sk_ssim = skimage_metrics.structural_similarity


@pytest.fixture(scope="module")
def renders(settings: Settings) -> np.ndarray:
    """Eight real svg_dev renders on the 224 px canvas (BGR uint8, as the sandbox returns them)."""
    job = render_job(
        settings, width=224, height=224, renderer="resvg", limits=PolicyLimits(reject_embedded_raster=False)
    )
    images = []
    for path in svg_dev_files()[::37][:8]:
        rendered = render_reference(None, path.read_text(), job=job)
        assert rendered.image is not None, path.name
        images.append(rendered.image)
    return np.stack(images)


def _pairs(renders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every render against the next one, plus a noisy copy of itself (a near miss)."""
    rng = np.random.default_rng(0)
    noisy = np.clip(renders.astype(np.int16) + rng.integers(-30, 31, renders.shape), 0, 255).astype(np.uint8)
    return np.concatenate([renders, renders]), np.concatenate([np.roll(renders, 1, axis=0), noisy])


def test_mse_equals_scikit_image_on_the_unit_scale(renders: np.ndarray) -> None:
    a, b = _pairs(renders)
    ours = mean_squared_error(a, b)
    reference = [sk_mse(x / 255.0, y / 255.0) for x, y in zip(a, b)]  # StarVector: ToTensor, then mse_loss
    assert ours == pytest.approx(reference, rel=1e-12, abs=1e-15)
    assert [mean_squared_error(x, y) for x, y in zip(a, b)] == pytest.approx(list(ours), rel=1e-12)
    assert ours.min() > 0


def test_ssim_equals_scikit_image_with_starvectors_arguments(renders: np.ndarray) -> None:
    a, b = _pairs(renders)
    ours = structural_similarity(a, b)
    # StarVector's call: win_size=11, channel_axis=-1 on uint8 (data_range 255), no gaussian_weights.
    reference = [sk_ssim(x, y, win_size=11, channel_axis=-1, data_range=255) for x, y in zip(a, b)]
    assert ours == pytest.approx(reference, abs=1e-10)
    assert float(structural_similarity(a[0], b[0])) == pytest.approx(reference[0], abs=1e-10)
    assert len(set(np.round(ours, 6))) == len(ours)  # the pairs really differ


@pytest.mark.parametrize("win_size", [3, 7])
def test_ssim_other_windows_and_a_single_channel(renders: np.ndarray, win_size: int) -> None:
    a, b = _pairs(renders)
    gray_a, gray_b = a[:4, :, :, :1], b[:4, :, :, :1]
    ours = structural_similarity(gray_a, gray_b, win_size=win_size)
    reference = [sk_ssim(x[..., 0], y[..., 0], win_size=win_size, data_range=255) for x, y in zip(gray_a, gray_b)]
    assert ours == pytest.approx(reference, abs=1e-10)


def test_identical_images_give_mse_0_and_ssim_1(renders: np.ndarray) -> None:
    white = np.full((2, 224, 224, 3), 255, np.uint8)  # flat images: SSIM's constants keep it exactly 1
    for images in (renders, white):
        assert np.all(mean_squared_error(images, images) == 0.0)
        assert structural_similarity(images, images) == pytest.approx(np.ones(len(images)), abs=1e-12)


def test_extremes_and_input_checks() -> None:
    white = np.full((16, 16, 3), 255, np.uint8)
    black = np.zeros_like(white)
    assert mean_squared_error(white, black) == 1.0
    assert structural_similarity(white, black) == pytest.approx(sk_ssim(white, black, win_size=11, channel_axis=-1))
    with pytest.raises(ValueError, match="shapes differ"):
        mean_squared_error(white, white[:8])
    with pytest.raises(TypeError, match="uint8"):
        structural_similarity(white.astype(np.float32), white.astype(np.float32))
    with pytest.raises(ValueError, match="smaller than"):
        structural_similarity(white[:8, :8], white[:8, :8])
    with pytest.raises(ValueError, match="odd"):
        structural_similarity(white, white, win_size=10)


def test_code_efficiency_is_prediction_minus_reference() -> None:
    assert code_efficiency(80, 100) == -20
    assert code_efficiency(130, 100) == 30
    assert code_efficiency(5, 5) == 0
