"""``RenderLogCallback``: what the policy drew, in the trainer's own TensorBoard or W&B logs.

TRL logs completions as text; reward hacking shows first in the drawings. Every ``every_n_steps``
steps this callback has the reward functions ask the service for thumbnails (``renders: true``)
on the first ``max_groups`` groups of the batch, and logs an image grid (reference, then rollouts
best to worst, each captioned with reward, status and flags) plus a table of rewards, statuses,
flags and components. It uses only what the service already returned: nothing is rendered here.

Opt-in: nothing imports this module unless you do. It needs ``transformers`` (there with TRL) and
Pillow, and logs to whatever of ``tensorboard``/``wandb`` the trainer's ``report_to`` names.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from typing import Any

from transformers import TrainerCallback

from trainer._client import ScoreResponse
from trainer._rewards import _Service, _SVGReward

_TILE = 128  # the service's thumbnails are at most 128 px a side
_CAPTION = 30


class RenderLogCallback(TrainerCallback):
    """Logs reference, rollout renders and their rewards, statuses and flags every N steps.

    Args:
        reward_funcs: the reward functions from ``get_svg_reward``/``get_component_rewards`` given
            to the trainer (their service calls carry the render requests).
        every_n_steps: log at the first step, then at least this many steps apart.
        max_groups: groups per logged step (only these ask the service for renders).
        max_rollouts: rollouts shown per group: the best half and the worst half.
        report_to: ``"tensorboard"`` and/or ``"wandb"``; ``None`` follows ``TrainingArguments.report_to``.
        log_dir: TensorBoard directory; default ``$TENSORBOARD_LOGGING_DIR``, else
            ``<output_dir>/runs/rlrf_renders``.

    Example:
        >>> funcs = get_component_rewards("http://reward-api:8000")  # doctest: +SKIP
        >>> callback = RenderLogCallback(funcs, every_n_steps=50)  # doctest: +SKIP
        >>> GRPOTrainer(..., reward_funcs=funcs, callbacks=[callback])  # doctest: +SKIP
    """

    def __init__(
        self,
        reward_funcs: Sequence[Any],
        *,
        every_n_steps: int = 50,
        max_groups: int = 2,
        max_rollouts: int = 8,
        report_to: Sequence[str] | str | None = None,
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if every_n_steps < 1 or max_groups < 1 or max_rollouts < 1:
            raise ValueError("every_n_steps, max_groups and max_rollouts must be at least 1")
        services: dict[int, _Service] = {}
        for func in reward_funcs:
            if isinstance(func, _SVGReward):
                services[id(func._service)] = func._service
        if not services:
            raise ValueError("no reward function of the RLRF service given (use get_svg_reward/get_component_rewards)")
        for service in services.values():
            service.render_every, service.render_groups = every_n_steps, max_groups
        self._services = list(services.values())
        self.max_rollouts = max_rollouts
        self._report_to = [report_to] if isinstance(report_to, str) else report_to
        self._log_dir = None if log_dir is None else str(log_dir)
        self._backends: set[str] = set()
        self._writer: Any = None
        self._logged: set[tuple[int, int]] = set()  # (service, step) already logged

    # TrainerCallback hooks --------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:  # only the main process logs: the other ranks ask for nothing
            for service in self._services:
                service.render_every = 0
            return
        report_to = self._report_to if self._report_to is not None else args.report_to
        if isinstance(report_to, str):
            report_to = [report_to]
        names = set(report_to or [])
        if "all" in names:
            names = {"tensorboard", "wandb"}
        self._backends = names & {"tensorboard", "wandb"}
        if not self._backends:  # nowhere to log: ask the service for nothing
            for service in self._services:
                service.render_every = 0
        if "tensorboard" in self._backends:
            from torch.utils.tensorboard import SummaryWriter

            log_dir = (
                self._log_dir
                or os.environ.get("TENSORBOARD_LOGGING_DIR")
                or os.path.join(args.output_dir, "runs", "rlrf_renders")
            )
            self._writer = SummaryWriter(log_dir=log_dir)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        for service in self._services:
            if service.rendered is None or (id(service), service.rendered[0]) in self._logged:
                continue
            step, groups = service.rendered
            self._logged.add((id(service), step))
            rows = self.rows(groups)
            if rows:
                self._log(step, rows)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # what is logged -----------------------------------------------------------------------------------
    def rows(self, groups: list[tuple[dict[str, Any], ScoreResponse]]) -> list[dict[str, Any]]:
        """One row per shown rollout: group, index, reward, status, flags, components and images."""
        rows = []
        for g, (request, answer) in enumerate(groups):
            renders = answer.get("renders") or {}
            thumbs = renders.get("rollouts") or []
            results = answer["results"]
            order = sorted(range(len(results)), key=lambda i: _rank(results[i]["reward"]))
            if len(order) > self.max_rollouts:
                half = self.max_rollouts // 2
                order = order[: self.max_rollouts - half] + order[len(order) - half :]
            reference = _image(renders.get("reference"))
            for i in order:
                r = results[i]
                rows.append(
                    {
                        "group": g,
                        "rollout": i,
                        "reward": r["reward"],
                        "status": r["status"],
                        "flags": list(r.get("flags") or []),
                        "components": dict(r.get("components") or {}),
                        "render": _image(thumbs[i] if i < len(thumbs) else None),
                        "reference": reference,
                        "completion": request["completions"][i][:300],
                    }
                )
        return rows

    def _log(self, step: int, rows: list[dict[str, Any]]) -> None:
        grid = render_grid(rows)
        if self._writer is not None:
            import numpy as np

            self._writer.add_image("rlrf/renders", np.asarray(grid), step, dataformats="HWC")
            self._writer.add_text("rlrf/rollouts", _markdown(rows), step)
            self._writer.flush()
        if "wandb" in self._backends:
            import wandb

            if wandb.run is not None:
                columns = ["step", "group", "rollout", "reference", "render", "reward", "status", "flags", "components"]
                table = wandb.Table(columns=columns)
                for row in rows:
                    table.add_data(
                        step,
                        row["group"],
                        row["rollout"],
                        wandb.Image(row["reference"]) if row["reference"] is not None else None,
                        wandb.Image(row["render"]) if row["render"] is not None else None,
                        row["reward"],
                        row["status"],
                        " ".join(row["flags"]),
                        _components(row["components"]),
                    )
                wandb.log({"rlrf/renders": table, "rlrf/render_grid": wandb.Image(grid), "train/global_step": step})


def render_grid(rows: list[dict[str, Any]]) -> Any:
    """A PIL image: one line per group, the reference then its rollouts, each captioned."""
    from PIL import Image, ImageDraw

    lines: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        lines.setdefault(row["group"], []).append(row)
    width = 1 + max(len(v) for v in lines.values())
    cell_h = _TILE + _CAPTION
    grid = Image.new("RGB", (width * (_TILE + 4), len(lines) * (cell_h + 4)), "white")
    draw = ImageDraw.Draw(grid)
    for y, (_, group) in enumerate(sorted(lines.items())):
        top = y * (cell_h + 4)
        cells = [(group[0]["reference"], "reference", "")] + [
            (r["render"], f"#{r['rollout']} {_fmt(r['reward'])} {r['status']}", " ".join(r["flags"])) for r in group
        ]
        for x, (image, caption, flags) in enumerate(cells):
            left = x * (_TILE + 4)
            if image is None:
                draw.rectangle([left, top, left + _TILE - 1, top + _TILE - 1], fill=(253, 232, 232))
                draw.text((left + 6, top + _TILE // 2 - 6), "no render", fill=(161, 17, 34))
            else:
                tile = image.convert("RGB")
                tile.thumbnail((_TILE, _TILE))
                grid.paste(tile, (left, top))
            draw.text((left + 2, top + _TILE + 2), caption[:24], fill=(0, 0, 0))
            draw.text((left + 2, top + _TILE + 15), flags[:24], fill=(161, 17, 34))
    return grid


def _rank(reward: float | None) -> float:
    return -reward if reward is not None else float("inf")  # best first; infrastructure errors last


def _image(url: str | None) -> Any:
    if not url:
        return None
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")


def _fmt(value: float | None) -> str:
    return "null" if value is None else f"{value:.3f}"


def _components(components: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in sorted(components.items()))


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| group | rollout | reward | status | flags | components |", "|---|---|---|---|---|---|"]
    for r in rows:
        flags = " ".join(r["flags"]) or "-"
        lines.append(
            f"| {r['group']} | {r['rollout']} | {_fmt(r['reward'])} | {r['status']} | {flags} | "
            f"{_components(r['components'])} |"
        )
    return "\n".join(lines)
