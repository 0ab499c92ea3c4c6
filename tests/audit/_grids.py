"""References that are themselves grids: the guards must not fire on their faithful copies."""

from __future__ import annotations

import numpy as np

HEAD = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {n} {n}" width="{n}" height="{n}">'


def pixel_art(n: int = 16, seed: int = 0) -> str:
    """An n x n pixel-art sprite: one <rect> per non-white cell, a few palette colours."""
    rng = np.random.default_rng(seed)
    palette = ["#e63946", "#1d3557", "#f1c40f", "#2a9d8f", "#000000"]
    cells = [
        f'<rect x="{j}" y="{i}" width="1" height="1" fill="{palette[rng.integers(len(palette))]}"/>'
        for i in range(n)
        for j in range(n)
        if rng.random() < 0.7
    ]
    return HEAD.format(n=n) + "".join(cells) + "</svg>"


def qr_like(n: int = 25, seed: int = 1) -> str:
    """A QR-like code: black modules as one path of unit squares."""
    rng = np.random.default_rng(seed)
    d = "".join(f"M{j} {i}h1v1h-1z" for i in range(n) for j in range(n) if rng.random() < 0.5)
    return HEAD.format(n=n) + f'<path fill="#000" d="{d}"/></svg>'


def chequered_flag(n: int = 8) -> str:
    """A chequered flag: n x n alternating rects on white."""
    cells = [
        f'<rect x="{j}" y="{i}" width="1" height="1" fill="#000"/>' for i in range(n) for j in range(n) if (i + j) % 2
    ]
    return HEAD.format(n=n) + '<rect width="100%" height="100%" fill="#fff"/>' + "".join(cells) + "</svg>"


GRID_REFERENCES = {"pixel_art": pixel_art(), "qr_like": qr_like(), "chequered_flag": chequered_flag()}
