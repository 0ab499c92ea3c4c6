"""The miniature's task: a one-line description → the SVG of one coloured shape.

Generated, not taken from data/svg_dev: a model small enough to train on two CPU cores in minutes
cannot learn svg_dev's icons, but it can learn to place a shape, and every prompt has one exact
ground-truth SVG, so pixel MSE and SSIM on the held-out split measure exactly how well it draws.
The prompt carries the shape, colour, position and size; the SVG must put those numbers in the
right attributes (a copy task with structure, which short SFT leaves imprecise).
"""

from __future__ import annotations

import random

COLOURS = ("red", "green", "blue", "orange", "purple", "black")
SHAPES = ("circle", "square")
POSITIONS = tuple(range(12, 53, 4))  # centre coordinates on a 64-unit canvas
SIZES = (8, 10, 12, 14, 16)


def svg_for(shape: str, colour: str, x: int, y: int, size: int) -> str:
    """The ground-truth SVG: one shape centred at (x, y), ``size`` its radius or half-side."""
    if shape == "circle":
        body = f'<circle cx="{x}" cy="{y}" r="{size}" fill="{colour}"/>'
    else:
        body = f'<rect x="{x - size}" y="{y - size}" width="{2 * size}" height="{2 * size}" fill="{colour}"/>'
    return f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">{body}</svg>'


def prompt_for(shape: str, colour: str, x: int, y: int, size: int) -> str:
    return f"{colour} {shape} at {x} {y} size {size}\n"


def samples(n: int, seed: int) -> list[dict[str, str]]:
    """``n`` distinct samples ``{id, prompt, svg}``, drawn with ``seed``."""
    rng = random.Random(seed)
    seen: set[tuple[object, ...]] = set()
    out = []
    while len(out) < n:
        spec = (
            rng.choice(SHAPES),
            rng.choice(COLOURS),
            rng.choice(POSITIONS),
            rng.choice(POSITIONS),
            rng.choice(SIZES),
        )
        if spec in seen:
            continue
        seen.add(spec)
        out.append({"id": f"{len(out):04d}", "prompt": prompt_for(*spec), "svg": svg_for(*spec)})
    return out
