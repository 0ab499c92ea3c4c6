"""An optimizer against the reward: CMA-ES over a few primitives, from a blank start.

Hand-written hacks only cover what we thought of; an optimizer finds what the reward pays for. For
one reference and profile, CMA-ES (the ``cma`` package) maximises the reward of an SVG made of
``shapes`` primitives (rects, circles and triangle paths, each with position, size, RGB colour and
opacity; every parameter in [0, 1]), starting from all-transparent shapes: a blank canvas that knows
nothing of the target. Each generation is one group through the real ``Pipeline``. Along the
trajectory of the best candidate so far it tracks metrics the reward does not use (SSIM and MSE,
``image_metrics``): a sound reward raises SSIM with it, so the Spearman correlation of reward and SSIM
along the trajectory should be high and the final SSIM well above the blank start's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from scipy.stats import spearmanr

from services.reward_api.core.schemas import ReferenceIn, ScoreRequest
from services.reward_api.image_metrics import mean_squared_error, structural_similarity

PARAMS = 8  # x, y, w, h, r, g, b, opacity
KINDS = ("rect", "circle", "path")


@dataclass(slots=True)
class Trajectory:
    """Best-so-far reward, SSIM and MSE per generation, and a few renders along the way."""

    reference: str
    profile: str
    rewards: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    mse: list[float] = field(default_factory=list)
    snapshots: list[tuple[int, np.ndarray]] = field(default_factory=list)
    best_svg: str = ""
    flags: dict[str, int] = field(default_factory=dict)  # statuses/flags the optimizer's candidates hit

    @property
    def spearman(self) -> float | None:
        if len(set(self.rewards)) < 2 or len(set(self.ssim)) < 2:
            return None
        return float(spearmanr(self.rewards, self.ssim).statistic)

    def summary(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "profile": self.profile,
            "generations": len(self.rewards),
            "reward_start": self.rewards[0] if self.rewards else None,
            "reward_final": self.rewards[-1] if self.rewards else None,
            "ssim_start": self.ssim[0] if self.ssim else None,
            "ssim_final": self.ssim[-1] if self.ssim else None,
            "mse_final": self.mse[-1] if self.mse else None,
            "spearman_reward_ssim": self.spearman,
            "flags": self.flags,
        }


def to_svg(x: np.ndarray, size: int) -> str:
    """The SVG of parameter vector ``x`` (clipped to [0, 1]) on a ``size`` canvas."""
    p = np.clip(np.asarray(x, float), 0.0, 1.0).reshape(-1, PARAMS)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 {size} {size}">']
    for k, (cx, cy, w, h, r, g, b, a) in enumerate(p):
        if a < 0.02:
            continue
        fill = f'fill="#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}" fill-opacity="{a:.2f}"'
        cx, cy, w, h = cx * size, cy * size, w * size, h * size
        kind = KINDS[k % len(KINDS)]
        if kind == "rect":
            parts.append(f'<rect x="{cx - w / 2:.1f}" y="{cy - h / 2:.1f}" width="{w:.1f}" height="{h:.1f}" {fill}/>')
        elif kind == "circle":
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{max(w, h) / 2:.1f}" {fill}/>')
        else:
            parts.append(
                f'<path d="M{cx:.1f} {cy - h / 2:.1f}L{cx - w / 2:.1f} {cy + h / 2:.1f}'
                f'L{cx + w / 2:.1f} {cy + h / 2:.1f}z" {fill}/>'
            )
    return "".join(parts) + "</svg>"


def optimize(
    pipeline: Any,
    name: str,
    svg: str,
    profile: str,
    *,
    generations: int,
    shapes: int = 12,
    seed: int = 0,
    step: int | None = None,
    snapshots: int = 5,
) -> Trajectory:
    """Run CMA-ES for ``generations`` against ``profile``'s reward for the reference ``svg``."""
    import warnings

    with warnings.catch_warnings():  # cma warns that matplotlib (its plots, unused here) is missing
        warnings.simplefilter("ignore")
        import cma

    size = pipeline.settings.size
    target = pipeline.prepare_reference(ReferenceIn(svg=svg)).canvas.image
    x0 = np.full(shapes * PARAMS, 0.5)
    x0[PARAMS - 1 :: PARAMS] = 0.0  # every shape transparent: the blank start
    es = cma.CMAEvolutionStrategy(
        x0, 0.3, {"seed": seed + 1, "bounds": [0.0, 1.0], "verbose": -9, "maxiter": generations}
    )
    trajectory = Trajectory(name, profile if step is None else f"{profile}@{step}")
    best: tuple[float, str | None, np.ndarray | None] = (-np.inf, None, None)  # reward, svg, render
    marks = {round(v) for v in np.linspace(0, generations - 1, snapshots)}
    blank = np.full_like(target, 255)
    for generation in range(generations):
        xs = es.ask()
        svgs = [to_svg(x, size) for x in xs]
        group, capture = pipeline.score_group_captured(
            ScoreRequest(reference={"svg": svg}, completions=svgs, profile=profile, step=step)
        )
        renders = capture.rollouts
        rewards = [r.reward if r.reward is not None else -1e9 for r in group.results]
        for r in group.results:
            for key in {r.status.value, *r.flags}:
                trajectory.flags[key] = trajectory.flags.get(key, 0) + 1
        es.tell(xs, [-v for v in rewards])
        k = int(np.argmax(rewards))
        if rewards[k] > best[0]:
            best = (rewards[k], svgs[k], renders[k] if renders[k] is not None else blank)
        image = best[2] if best[2] is not None else blank
        trajectory.rewards.append(float(best[0]))
        trajectory.ssim.append(float(structural_similarity(image, target)))
        trajectory.mse.append(float(mean_squared_error(image, target)))
        if generation in marks:
            trajectory.snapshots.append((generation, image))
    trajectory.best_svg = best[1] or ""
    trajectory.snapshots.append((-1, target))
    return trajectory


def picture(trajectory: Trajectory, side: int = 128) -> np.ndarray:
    """Renders at a few generations (and the target, last) above the reward and SSIM curves (BGR)."""
    tiles = [cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA) for _, image in trajectory.snapshots]
    strip = np.hstack(tiles)
    width = strip.shape[1]
    for k, (generation, _) in enumerate(trajectory.snapshots):
        label = "target" if generation < 0 else f"gen {generation}"
        cv2.putText(strip, label, (k * side + 4, side - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 160), 1)
    plot_h = 160
    plot = np.full((plot_h, width, 3), 255, np.uint8)
    for values, colour, label, row in (
        (trajectory.rewards, (200, 80, 0), "reward", 14),
        (trajectory.ssim, (0, 140, 0), "SSIM", 30),
    ):
        v = np.asarray(values, float)
        if len(v) < 2:
            continue
        lo, hi = float(v.min()), float(v.max())
        y = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
        xs = np.linspace(10, width - 10, len(v))
        pts = np.stack([xs, plot_h - 10 - y * (plot_h - 40)], axis=1).astype(np.int32)
        cv2.polylines(plot, [pts], False, colour, 2)
        cv2.putText(plot, f"{label} {lo:+.3f} .. {hi:+.3f}", (10, row), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1)
    rho = trajectory.spearman
    cv2.putText(
        plot,
        f"{trajectory.reference} / {trajectory.profile}: Spearman(reward, SSIM) = "
        + ("n/a" if rho is None else f"{rho:.3f}"),
        (10, 46),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.4,
        (0, 0, 0),
        1,
    )
    return np.vstack([strip, plot])
