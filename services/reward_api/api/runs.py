"""Per-run, per-step aggregates of the scored traffic, for the dashboard's run view and ``/metrics``.

The first sign of reward hacking in a GRPO run is a drift in what the policy draws: a flag such as
``length_collapse`` climbing, one component rising while the others fall, statuses drifting to
``truncated``. So every group that carries a ``step`` is folded into its run's step (the request's
``run_id``; ``default`` when it has none): count, mean and spread of the total and of each
component, the share of each status and flag, group latency. A few groups per step are captured
with their renders, and the step keeps its best and worst rollouts as thumbnails beside their
reference.

Memory is bounded: at most ``dashboard_runs`` runs (the least recently updated is dropped), a ring
of ``dashboard_steps`` steps per run (the lowest step is dropped), thumbnails for the newest
``RENDER_STEPS`` steps only, and at most ``MAX_FLAGS`` distinct flag names per run (later ones are
counted as ``other``, so a judge that invents flags cannot grow the label set of ``/metrics``).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from services.reward_api.api.recent import data_url
from services.reward_api.core.errors import NotFoundError
from services.reward_api.core.results import Capture, GroupResult, Status
from services.reward_api.core.schemas import ScoreRequest
from services.reward_api.core.settings import Settings

DEFAULT_RUN = "default"
RENDER_STEPS = 32  # steps per run that keep their best/worst thumbnails
CAPTURES_PER_STEP = 2  # groups per (run, step) scored with renders
SHOWN = 3  # best and worst rollouts kept per step
MAX_FLAGS = 32  # distinct flag names per run; more are counted as "other"
_THUMB = 128
_STATUSES = frozenset(s.value for s in Status)


class _Moments:
    """Running count, mean, spread and range of one series (no samples kept)."""

    __slots__ = ("high", "low", "n", "squares", "total")

    def __init__(self) -> None:
        self.n, self.total, self.squares, self.low, self.high = 0, 0.0, 0.0, math.inf, -math.inf

    def add(self, value: float) -> None:
        self.n += 1
        self.total += value
        self.squares += value * value
        self.low = min(self.low, value)
        self.high = max(self.high, value)

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    @property
    def std(self) -> float | None:
        if not self.n:
            return None
        mean = self.total / self.n
        return math.sqrt(max(0.0, self.squares / self.n - mean * mean))

    def summary(self) -> dict[str, float | int | None]:
        return {
            "n": self.n,
            "mean": self.mean,
            "std": self.std,
            "min": self.low if self.n else None,
            "max": self.high if self.n else None,
        }


class _Step:
    """One training step of one run."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.groups = 0
        self.rollouts = 0
        self.reward = _Moments()
        self.components: dict[str, _Moments] = {}
        self.statuses: Counter[str] = Counter()
        self.flags: Counter[str] = Counter()  # rollouts carrying each flag
        self.latency_ms = _Moments()
        self.captures = 0
        self.shown: list[dict[str, Any]] | None = None  # best and worst rollouts with thumbnails
        self.updated = time.time()

    def summary(self) -> dict[str, Any]:
        rollouts = max(1, self.rollouts)
        return {
            "step": self.step,
            "groups": self.groups,
            "rollouts": self.rollouts,
            "reward": self.reward.summary(),
            "components": {name: m.summary() for name, m in sorted(self.components.items())},
            "statuses": {name: n / rollouts for name, n in sorted(self.statuses.items())},
            "flags": {name: n / rollouts for name, n in sorted(self.flags.items())},
            "latency_ms": self.latency_ms.summary(),
            "renders": self.shown is not None,
            "updated": self.updated,
        }


class _Run:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.steps: dict[int, _Step] = {}
        self.rendered: deque[int] = deque()  # steps holding thumbnails, oldest first
        self.flag_names: set[str] = set()
        self.rollouts = 0
        self.updated = time.time()

    def flag(self, name: str) -> str:
        if name in self.flag_names or len(self.flag_names) < MAX_FLAGS:
            self.flag_names.add(name)
            return name
        return "other"

    def recent(self, window: int) -> list[_Step]:
        return [self.steps[s] for s in sorted(self.steps)[-window:]]


class RunStats:
    """The run view's store; thread-safe (groups are scored in worker threads)."""

    def __init__(self, settings: Settings) -> None:
        self.max_runs = settings.dashboard_runs
        self.max_steps = settings.dashboard_steps
        self.window = settings.alert_window_steps
        self.flag_threshold = settings.alert_flag_share
        self.error_threshold = settings.alert_error_share
        self._runs: OrderedDict[str, _Run] = OrderedDict()  # least recently updated first
        self._lock = threading.Lock()

    # recording ----------------------------------------------------------------------------------
    def want(self, request: ScoreRequest) -> bool:
        """Whether this group should be scored with renders for its step (claims the slot if so)."""
        if self.max_runs == 0 or request.step is None:
            return False
        with self._lock:
            step = self._step(request.run_id or DEFAULT_RUN, request.step)
            if step.captures >= CAPTURES_PER_STEP:
                return False
            step.captures += 1
            return True

    def add(self, request: ScoreRequest, result: GroupResult, capture: Capture | None = None) -> None:
        """Fold a scored group into its run's step (groups without a ``step`` are not training traffic)."""
        if self.max_runs == 0 or request.step is None:
            return
        shown = _candidates(request, result, capture) if capture is not None else None
        with self._lock:
            run_id = request.run_id or DEFAULT_RUN
            step = self._step(run_id, request.step)
            run = self._runs[run_id]
            step.groups += 1
            step.rollouts += len(result.results)
            run.rollouts += len(result.results)
            for r in result.results:
                step.statuses[r.status.value] += 1
                for flag in set(r.flags) - _STATUSES:  # a failure's status is also its flag: counted once
                    step.flags[run.flag(flag)] += 1
                if r.reward is not None:
                    step.reward.add(r.reward)
                for name, value in r.components.items():
                    step.components.setdefault(name, _Moments()).add(value)
            if "total" in result.timings_ms:
                step.latency_ms.add(result.timings_ms["total"])
            if shown is not None:
                self._show(run, step, shown)
            step.updated = run.updated = time.time()

    def _step(self, run_id: str, number: int) -> _Step:
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = _Run(run_id)
            while len(self._runs) > self.max_runs:
                self._runs.popitem(last=False)
        self._runs.move_to_end(run_id)
        step = run.steps.get(number)
        if step is None:
            step = run.steps[number] = _Step(number)
            while len(run.steps) > self.max_steps:
                del run.steps[min(run.steps)]
        return step

    @staticmethod
    def _show(run: _Run, step: _Step, candidates: list[dict[str, Any]]) -> None:
        pool = (step.shown or []) + candidates
        scored = sorted((c for c in pool if c["reward"] is not None), key=lambda c: c["reward"], reverse=True)
        best = scored[:SHOWN]
        chosen = {id(c) for c in best}
        worst = [c for c in scored[::-1] if id(c) not in chosen][:SHOWN]
        errors = [c for c in pool if c["reward"] is None][:SHOWN]  # infrastructure errors: shown, never ranked
        for c in best:
            c["rank"] = "best"
        for c in worst + errors:
            c["rank"] = "worst"
        keep = best + worst + errors
        for c in keep:  # thumbnails only for what is kept
            if "image" not in c:
                c["image"] = data_url(c.pop("_image"), _THUMB)
                c["reference"] = data_url(c.pop("_reference"), _THUMB)
        if step.shown is None:
            run.rendered.append(step.step)
            while len(run.rendered) > RENDER_STEPS:
                old = run.steps.get(run.rendered.popleft())
                if old is not None:
                    old.shown = None
        step.shown = keep

    # reading ------------------------------------------------------------------------------------
    def alerts(self, run: _Run) -> list[dict[str, Any]]:
        """Flags and the ``error`` status over their thresholds in the run's recent steps."""
        shares, steps = self._recent(run)
        out = []
        for (kind, name), share in sorted(shares.items()):
            threshold = self.error_threshold if kind == "status" else self.flag_threshold
            if (kind == "flag" or name == Status.error.value) and share > threshold:
                out.append({"kind": kind, "name": name, "share": share, "threshold": threshold, "steps": steps})
        return out

    def _recent(self, run: _Run) -> tuple[dict[tuple[str, str], float], int]:
        recent = run.recent(self.window)
        rollouts = sum(s.rollouts for s in recent)
        counts: Counter[tuple[str, str]] = Counter()
        for s in recent:
            counts.update({("status", k): v for k, v in s.statuses.items()})
            counts.update({("flag", k): v for k, v in s.flags.items()})
        counts[("status", Status.error.value)] += 0  # always reported, so "no errors" is a 0, not a gap
        return {key: n / rollouts if rollouts else 0.0 for key, n in counts.items()}, len(recent)

    def runs(self) -> list[dict[str, Any]]:
        """Every run held, most recently updated first."""
        with self._lock:
            return [
                {
                    "run_id": run.run_id,
                    "steps": len(run.steps),
                    "first_step": min(run.steps, default=None),
                    "latest_step": max(run.steps, default=None),
                    "rollouts": run.rollouts,
                    "updated": run.updated,
                    "alerts": self.alerts(run),
                }
                for run in reversed(self._runs.values())
            ]

    def run(self, run_id: str) -> dict[str, Any]:
        """Per-step aggregates of one run, by step."""
        with self._lock:
            run = self._get(run_id)
            return {
                "run_id": run_id,
                "alerts": self.alerts(run),
                "steps": [run.steps[s].summary() for s in sorted(run.steps)],
            }

    def step(self, run_id: str, number: int) -> dict[str, Any]:
        """One step's aggregates plus its best and worst rollouts' thumbnails beside their references."""
        with self._lock:
            step = self._get(run_id).steps.get(number)
            if step is None:
                raise NotFoundError(f"run {run_id!r} holds no step {number}")
            shown = step.shown or []
            return {
                **step.summary(),
                "best": [c for c in shown if c["rank"] == "best"],
                "worst": [c for c in shown if c["rank"] == "worst"],
            }

    def _get(self, run_id: str) -> _Run:
        run = self._runs.get(run_id)
        if run is None:
            raise NotFoundError(f"no run {run_id!r} (never seen, or dropped: {self.max_runs} runs are kept)")
        return run


def _candidates(request: ScoreRequest, result: GroupResult, capture: Capture) -> list[dict[str, Any]]:
    """Every rollout of a captured group, images still raw (thumbnailed only if kept)."""
    reference, renders = capture.reference, capture.rollouts
    return [
        {
            "index": i,
            "request_id": request.request_id,
            "reward": r.reward,
            "status": r.status.value,
            "components": r.components,
            "flags": r.flags,
            "detail": r.detail,
            "_image": image,
            "_reference": reference,
        }
        for i, (r, image) in enumerate(zip(result.results, renders))
    ]


class RunCollector(Collector):
    """The run view's aggregates as Prometheus series, built at scrape time.

    Labels stay bounded: ``run`` (at most ``dashboard_runs`` values: dropped runs vanish from the
    scrape), ``component`` (the service's components), ``status`` (the ``Status`` values) and
    ``flag`` (at most ``MAX_FLAGS`` per run). Never a step label: the newest step's values are
    gauges, and ``rlrf_run_step`` says which step they describe.
    """

    def __init__(self, stats: RunStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Any]:
        g = {
            "step": GaugeMetricFamily("rlrf_run_step", "Newest training step seen per run", labels=["run"]),
            "reward_mean": GaugeMetricFamily(
                "rlrf_run_reward_mean", "Mean total reward of the run's newest step", labels=["run"]
            ),
            "reward_std": GaugeMetricFamily(
                "rlrf_run_reward_std", "Spread (std) of the total reward in the newest step", labels=["run"]
            ),
            "component_mean": GaugeMetricFamily(
                "rlrf_run_component_mean", "Mean of each component in the newest step", labels=["run", "component"]
            ),
            "component_std": GaugeMetricFamily(
                "rlrf_run_component_std",
                "Spread (std) of each component in the newest step",
                labels=["run", "component"],
            ),
            "status": GaugeMetricFamily(
                "rlrf_run_status_share", "Share of the newest step's rollouts per status", labels=["run", "status"]
            ),
            "flag": GaugeMetricFamily(
                "rlrf_run_flag_share", "Share of the newest step's rollouts carrying each flag", labels=["run", "flag"]
            ),
            "recent_status": GaugeMetricFamily(
                "rlrf_run_recent_status_share",
                "Share per status over the run's last alert_window_steps steps (the alert's input)",
                labels=["run", "status"],
            ),
            "recent_flag": GaugeMetricFamily(
                "rlrf_run_recent_flag_share",
                "Share carrying each flag over the run's last alert_window_steps steps (the alert's input)",
                labels=["run", "flag"],
            ),
            "latency": GaugeMetricFamily(
                "rlrf_run_group_latency_seconds", "Mean group latency in the newest step", labels=["run"]
            ),
        }
        rollouts = CounterMetricFamily("rlrf_run_rollouts", "Rollouts scored per run (held runs only)", labels=["run"])
        stats = self.stats
        with stats._lock:
            for run in stats._runs.values():
                rid = run.run_id
                rollouts.add_metric([rid], run.rollouts)
                if not run.steps:
                    continue
                newest = run.steps[max(run.steps)]
                g["step"].add_metric([rid], newest.step)
                if newest.reward.n:
                    g["reward_mean"].add_metric([rid], newest.reward.mean or 0.0)
                    g["reward_std"].add_metric([rid], newest.reward.std or 0.0)
                for name, m in newest.components.items():
                    g["component_mean"].add_metric([rid, name], m.mean or 0.0)
                    g["component_std"].add_metric([rid, name], m.std or 0.0)
                total = max(1, newest.rollouts)
                for name, n in newest.statuses.items():
                    g["status"].add_metric([rid, name], n / total)
                for name, n in newest.flags.items():
                    g["flag"].add_metric([rid, name], n / total)
                if newest.latency_ms.n:
                    g["latency"].add_metric([rid], (newest.latency_ms.mean or 0.0) / 1e3)
                shares, _ = stats._recent(run)
                for (kind, name), share in shares.items():
                    g["recent_" + kind].add_metric([rid, name], share)
        yield from g.values()
        yield rollouts
