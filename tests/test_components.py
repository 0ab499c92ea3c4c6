"""Reward components against independent formulas (NumPy, OpenCV)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from services.reward_api.components import COMPONENTS, Canvas, Sample
from services.reward_api.components._canvas import moments

rng = np.random.default_rng(0)


def _image(seed: int, size: int = 64) -> np.ndarray:
    image = np.full((size, size, 3), 255, np.uint8)
    r = np.random.default_rng(seed)
    for _ in range(6):
        x, y = r.integers(0, size - 10, 2)
        color = tuple(int(c) for c in r.integers(0, 255, 3))
        cv2.rectangle(image, (int(x), int(y)), (int(x) + 12, int(y) + 9), color, -1)
    return image


def _score(name: str, candidate: np.ndarray, reference: np.ndarray) -> float | None:
    return COMPONENTS[name].compute(Sample(Canvas(candidate)), Sample(Canvas(reference)))


def test_registry_declares_ranges() -> None:
    assert set(COMPONENTS) == {
        "pixel_l2",
        "canny_l2",
        "length",
        "format",
        "dreamsim",
        "dreamsim_canny",
        "clip_text",
        "judge",
    }
    assert all((c.lower, c.upper) == (-1.0, 1.0) for n, c in COMPONENTS.items() if n != "judge")
    assert (COMPONENTS["judge"].lower, COMPONENTS["judge"].upper) == (0.0, 1.0)
    assert not COMPONENTS["length"].needs_canvas and COMPONENTS["pixel_l2"].needs_canvas
    assert COMPONENTS["dreamsim_canny"].stage == "model" and COMPONENTS["dreamsim_canny"].features == (
        "dreamsim_edges",
    )
    assert COMPONENTS["clip_text"].reference_features == ("clip_text",)


@pytest.mark.parametrize("seed", range(5))
def test_pixel_l2_equals_two_rho_minus_one(seed: int) -> None:
    a, b = _image(seed), _image(seed + 100)
    rho = np.corrcoef(a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64))[0, 1]
    assert _score("pixel_l2", a, b) == pytest.approx(max(-1.0, 2 * rho - 1), abs=1e-5)


def test_pixel_l2_extremes() -> None:
    a = _image(1)
    assert _score("pixel_l2", a, a) == pytest.approx(1.0)
    assert _score("pixel_l2", 255 - a, a) == pytest.approx(-1.0)
    flat = np.full_like(a, 255)
    assert _score("pixel_l2", flat, a) == pytest.approx(0.0, abs=1e-5)
    assert _score("pixel_l2", flat, flat) == pytest.approx(1.0)
    brighter = np.clip(a.astype(np.int32) // 2 + 100, 0, 255).astype(np.uint8)
    assert _score("pixel_l2", brighter, a) == pytest.approx(1.0, abs=1e-2)  # z-scoring: contrast-invariant


def test_canny_l2_matches_the_recipe() -> None:
    a, b = _image(3), _image(4)

    def edge_map(image: np.ndarray) -> np.ndarray:
        edges = cv2.Canny(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), 100, 200)
        edges = cv2.dilate(edges, np.ones((3, 3), np.uint8), iterations=1)
        edges = cv2.GaussianBlur(edges, (13, 13), 0).astype(np.float64)
        return (edges - edges.mean()) / edges.std()

    expected = float(np.clip(1 - np.mean((edge_map(a) - edge_map(b)) ** 2), -1, 1))
    assert _score("canny_l2", a, b) == pytest.approx(expected, abs=5e-3)  # separable blur: within 1 grey level
    assert _score("canny_l2", a, a) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("length", "ref", "expected"),
    [(49, 100, -1.0), (50, 100, 1.0), (100, 100, 0.75), (150, 100, 0.0), (300, 100, -1.0), (75, 100, 1 - 0.0625)],
)
def test_length_formula(length: int, ref: int, expected: float) -> None:
    assert COMPONENTS["length"].compute(Sample(length=length), Sample(length=ref)) == pytest.approx(expected)


def test_length_does_not_apply_without_a_reference_length() -> None:
    assert COMPONENTS["length"].compute(Sample(length=10), Sample(length=None)) is None


def test_format() -> None:
    canvas = Canvas(_image(0))
    assert COMPONENTS["format"].compute(Sample(canvas), Sample(canvas)) == 1.0
    assert COMPONENTS["format"].compute(Sample(None), Sample(canvas)) == -1.0


def _zscored_reward_in_floats(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formulation: materialise z-scored float copies, then the MSE."""

    def z(x: np.ndarray) -> np.ndarray:
        x = x.reshape(-1).astype(np.float64)
        return (x - x.mean()) / x.std() if x.std() > 0 else np.zeros_like(x)

    return float(np.clip(1 - np.mean((z(a) - z(b)) ** 2), -1, 1))


@pytest.mark.parametrize("seed", range(6))
def test_exact_moments_match_the_float_formulation(seed: int) -> None:
    r = np.random.default_rng(seed)
    a = r.integers(0, 256, (50, 40, 3), dtype=np.uint8)
    b = (a // 2 + r.integers(0, 120, a.shape)).astype(np.uint8) if seed % 2 else _image(seed, 40)[:50, :40]
    b = np.ascontiguousarray(np.resize(b, a.shape))
    canvas_a, canvas_b = Canvas(a), Canvas(b)
    assert _score("pixel_l2", a, b) == pytest.approx(_zscored_reward_in_floats(a, b), abs=1e-9)
    edges_in_floats = _zscored_reward_in_floats(canvas_a.edges, canvas_b.edges)
    assert _score("canny_l2", a, b) == pytest.approx(edges_in_floats, abs=1e-9)


def test_moments_and_canvas_guards() -> None:
    flat = moments(np.full((4, 4, 3), 7, np.uint8))
    assert (flat.n, flat.total, flat.squares, flat.spread) == (48, 336, 2352, 0)
    with pytest.raises(ValueError):
        Canvas(np.zeros((4, 4), np.uint8))
    assert Canvas(np.full((10, 10, 3), 255, np.uint8)).ink_fraction == 0.0
