"""A rendered canvas and the derived images the components share, each computed at most once.

Images are BGR uint8 (OpenCV's order) for reference and candidates alike; the components only
compare like with like, so the channel order never matters to a score.
"""

from __future__ import annotations

from functools import cached_property

import cv2
import numpy as np

_FLAT_STD = 1e-6
_NEAR_WHITE = 250  # grey level above which a pixel counts as background


def zscore(image: np.ndarray) -> np.ndarray:
    """Flattened float32 copy with zero mean and unit std; a flat image becomes all zeros."""
    values = image.reshape(-1).astype(np.float32)
    mean, std = float(values.mean()), float(values.std())
    values -= mean
    if std > _FLAT_STD:
        values /= std
    return values


def zscored_l2_reward(a: np.ndarray, b: np.ndarray) -> float:
    """clip(1 - MSE(a, b), -1, 1) for two z-scored vectors (equals 2·corr - 1 when neither is flat)."""
    diff = a - b
    mse = float(np.dot(diff, diff)) / diff.size
    return float(min(1.0, max(-1.0, 1.0 - mse)))


class Canvas:
    """One rendered image plus lazily computed features (grey, edge map, z-scores)."""

    __slots__ = ("__dict__", "image")

    def __init__(self, image: np.ndarray) -> None:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected HxWx3 uint8, got {image.shape} {image.dtype}")
        self.image = image

    @cached_property
    def gray(self) -> np.ndarray:
        return cv2.cvtColor(self.image, cv2.COLOR_BGR2GRAY)

    @cached_property
    def zscored(self) -> np.ndarray:
        return zscore(self.image)

    @cached_property
    def edges(self) -> np.ndarray:
        """Canny (100, 200) on grey, dilated 3x3 once, Gaussian-blurred 13x13: the RLRF edge map."""
        edges = cv2.Canny(self.gray, 100, 200)
        edges = cv2.dilate(edges, np.ones((3, 3), np.uint8), iterations=1)
        return cv2.GaussianBlur(edges, (13, 13), 0)

    @cached_property
    def edges_zscored(self) -> np.ndarray:
        return zscore(self.edges)

    @cached_property
    def ink_fraction(self) -> float:
        """Share of pixels that are not (near-)white: what the blank guard looks at."""
        return float(np.count_nonzero(self.gray < _NEAR_WHITE)) / self.gray.size
