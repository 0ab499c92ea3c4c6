"""The hack audit: honest corruptions and hack classes scored through the real ``Pipeline``.

For every reference and profile, one group holds the reference, its graded corruptions and one
candidate per hack class. A class *wins* on a reference when its reward is at least the mildly
corrupted honest drawing's (``generators.MILD``); its win rate is the share of references it wins.
Monotonicity is the Spearman correlation of reward with corruption strength (negated: 1 means the
reward falls with every step), averaged over references.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from services.reward_api.audit import generators as gen
from services.reward_api.core.errors import RewardError
from services.reward_api.core.schemas import ReferenceIn, ScoreRequest
from services.reward_api.core.settings import Settings
from services.reward_api.profiles import PROFILES, combine, resolve_weights

# Profiles audited at a training step: the warm-up profile is audited where its length weight ends.
PROFILE_STEPS: dict[str, int] = {"rlrf-im2svg-length-warmup": 500}
# Profiles that pay for validity only would tie every valid hack by construction; none is shipped
# (profiles.py), so the win-rate requirement applies to every profile audited.
VALIDITY_ONLY: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Reference:
    """One audit reference: its name, SVG and a prompt (Text2SVG)."""

    name: str
    svg: str
    prompt: str


def load_references(path: Path, limit: int | None = None) -> list[Reference]:
    """SVG files of a folder (sorted), or JSONL rows with ``svg`` (and optional ``name``, ``text``)."""
    refs: list[Reference] = []
    if path.is_dir():
        for file in sorted(path.glob("*.svg")):
            refs.append(Reference(file.stem, file.read_text("utf-8"), _prompt_from_name(file.stem)))
    else:
        for k, line in enumerate(path.read_text("utf-8").splitlines()):
            if line.strip():
                row = json.loads(line)
                name = str(row.get("name", k))
                refs.append(Reference(name, row["svg"], row.get("text") or _prompt_from_name(name)))
    return refs[:limit] if limit else refs


def _prompt_from_name(name: str) -> str:
    stem = name.split("__")[-1]
    stem = re.sub(r"^(icons|svg|color_svg|flags_4x3)_", "", stem)
    return re.sub(r"[-_]+", " ", stem).strip() or "an icon"


@dataclass(slots=True)
class ProfileAudit:
    """Everything the audit found for one profile."""

    profile: str
    step: int | None
    skipped: str | None = None
    references: int = 0
    wins: dict[str, int] = field(default_factory=dict)
    scored: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)  # class -> status/flag -> count
    margins: dict[str, list[tuple[float, str]]] = field(default_factory=dict)  # class -> (hack - mild, ref)
    spearman: list[float] = field(default_factory=list)
    reference_not_max: list[str] = field(default_factory=list)
    rewards: dict[str, dict[str, float | None]] = field(default_factory=dict)  # ref -> candidate -> reward

    @property
    def win_rates(self) -> dict[str, float]:
        return {name: self.wins.get(name, 0) / n for name, n in self.scored.items() if n}

    @property
    def monotonicity(self) -> float | None:
        return float(np.mean(self.spearman)) if self.spearman else None

    @property
    def required(self) -> bool:
        """Whether the 0% win-rate requirement applies (it does not to validity-only profiles)."""
        return self.profile not in VALIDITY_ONLY

    def summary(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "step": self.step,
            "skipped": self.skipped,
            "references": self.references,
            "required": self.required,
            "win_rates": self.win_rates,
            "outcomes": self.outcomes,
            "monotonicity": self.monotonicity,
            "monotonicity_min": float(np.min(self.spearman)) if self.spearman else None,
            "reference_not_max": self.reference_not_max,
            "worst": {k: sorted(v, reverse=True)[:5] for k, v in self.margins.items()},
        }


@dataclass(slots=True)
class AuditResult:
    """The audit of every profile, plus what it ran on."""

    profiles: list[ProfileAudit]
    task: str
    hacks: list[str]
    references: list[str]
    command: str = ""
    mismatches: list[str] = field(default_factory=list)  # recombined totals that differ from direct scoring
    renders: dict[str, dict[str, bytes]] = field(default_factory=dict)  # ref -> candidate -> PNG (HTML report)

    def failures(self) -> list[str]:
        """Requirement violations: a class that wins, the reference not maximal, monotonicity < 0.95."""
        out = []
        for p in self.profiles:
            if p.skipped or not p.required:
                continue
            label = _label(p.profile, p.step)
            out += [f"{label}: {k} wins {v:.0%}" for k, v in p.win_rates.items() if v > 0]
            out += [f"{label}: reference not maximal on {r}" for r in p.reference_not_max]
            if p.monotonicity is not None and p.monotonicity < 0.95:
                out.append(f"{label}: monotonicity {p.monotonicity:.3f} < 0.95")
        return out + [f"recombination mismatch: {m}" for m in self.mismatches]

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "task": self.task,
            "hacks": self.hacks,
            "references": self.references,
            "profiles": [p.summary() for p in self.profiles],
            "failures": self.failures(),
        }


def _label(profile: str, step: int | None) -> str:
    return profile if step is None else f"{profile}@{step}"


def candidates(ref: Reference, target: np.ndarray, task: str) -> tuple[list[tuple[str, str]], list[gen.Hack]]:
    """(honest candidates as (label, svg)), and the hack classes for ``task``."""
    honest = [("reference", ref.svg)] + [
        (f"honest@{s:g}", gen.corrupt(ref.svg, s, seed=ref.name)) for s in gen.STRENGTHS[1:]
    ]
    hacks = list(gen.IM2SVG_HACKS)
    if task == "text2svg":
        hacks += list(text_hacks(ref.prompt))
    return honest, hacks


def text_hacks(prompt: str) -> Iterable[gen.Hack]:
    yield gen.Hack("prompt_text", "the prompt written as <text>", lambda svg, t: gen.prompt_text(prompt, t.shape[1]))
    yield gen.Hack(
        "prompt_glyphs",
        "the prompt's letters as glyph outline paths",
        lambda svg, t: gen.prompt_glyphs(prompt, t.shape[1]),
    )


def run_audit(
    refs: Sequence[Reference],
    profiles: Sequence[str],
    settings: Settings,
    *,
    task: str = "im2svg",
    weights: dict[str, float] | None = None,
    progress: bool = True,
    keep_renders: bool = False,
) -> AuditResult:
    """Score every reference's honest and hack candidates under each profile; see the module.

    ``keep_renders``: keep small PNGs of the mild honest candidate and every hack (the HTML report).

    Each reference's candidates are scored once, in one group, with every component of the audited
    profiles weighted, and each profile's total is then the pipeline's own ``combine`` of those
    components with the profile's weights (a failure's components are already its penalty). On the
    first reference every profile is also scored directly, and the two must agree exactly: the
    shortcut saves re-rendering per profile and is checked, not assumed.
    """
    from tqdm import tqdm

    from services.reward_api.pipeline import Pipeline

    audits = [ProfileAudit(p, PROFILE_STEPS.get(p)) for p in profiles]
    hack_names: list[str] = []
    mismatches: list[str] = []
    union: dict[str, float] | None = None
    live: list[ProfileAudit] = []
    direct: dict[str, dict[str, Any]] = {}
    kept: dict[str, dict[str, bytes]] = {}
    allow = settings.model_copy(update={"embedded_raster": "allow", "workers": 1})
    with Pipeline.embedded(settings) as pipeline, Pipeline.embedded(allow) as allow_pipeline:
        for ref in tqdm(refs, desc="audit", unit="ref", disable=not progress):
            try:
                prepared = pipeline.prepare_reference(ReferenceIn(svg=ref.svg))
            except RewardError as exc:
                tqdm.write(f"rlrf audit: skipping {ref.name}: {exc}")
                continue
            assert prepared.canvas is not None
            target = prepared.canvas.image
            honest, hacks = candidates(ref, target, task)
            hack_names = [h.name for h in hacks]
            made = {h.name: h.make(ref.svg, target) for h in hacks}
            main = honest + [(h.name, made[h.name]) for h in hacks if h.raster_policy == "reject"]
            allowed = [(h.name, made[h.name]) for h in hacks if h.raster_policy == "allow"]
            reference = ReferenceIn(svg=ref.svg, text=ref.prompt if task == "text2svg" else None)
            if union is None:  # first reference: which profiles run here, and the exactness check
                for audit in audits:
                    try:
                        direct[audit.profile] = _score(
                            pipeline, reference, main, task, audit.profile, weights, audit.step
                        )
                    except RewardError as exc:  # a profile whose model or judge is not configured here
                        audit.skipped = f"{type(exc).__name__}: {exc}"
                live = [a for a in audits if not a.skipped]
                if not live:
                    break
                union = {c: 1.0 for a in live for c in resolve_weights(a.profile, weights, a.step)}
            pooled = _exact(live[0], union)
            renders: dict[str, bytes] | None = {} if keep_renders else None
            rows = _score(pipeline, reference, main, task, live[0].profile, pooled, None, renders)
            if allowed:
                rows.update(_score(allow_pipeline, reference, allowed, task, live[0].profile, pooled, None, renders))
            for audit in live:
                totals = _recombine(rows, resolve_weights(audit.profile, weights, audit.step))
                if direct:
                    for label, result in direct[audit.profile].items():
                        if result.reward != totals[label] and not (
                            result.reward is not None
                            and totals[label] is not None
                            and abs(result.reward - totals[label]) < 1e-9
                        ):
                            mismatches.append(f"{audit.profile} {ref.name} {label}: {result.reward} != {totals[label]}")
                _record(audit, ref.name, rows, totals, [label for label, _ in honest], hack_names)
            if renders is not None:
                kept[ref.name] = renders
            direct = {}
    result = AuditResult(audits, task, hack_names, [r.name for r in refs])
    result.mismatches = mismatches
    result.renders = kept
    return result


def _score(
    pipeline: Any,
    reference: ReferenceIn,
    items: list[tuple[str, str]],
    task: str,
    profile: str,
    weights: dict[str, float] | None,
    step: int | None,
    renders: dict[str, bytes] | None = None,
) -> dict[str, Any]:
    request = ScoreRequest(
        task=task,
        reference=reference,
        completions=[svg for _, svg in items],
        profile=profile,
        weights=weights,
        step=step,
    )
    if renders is None:
        group = pipeline.score_group(request)
    else:
        group, capture = pipeline.score_group_captured(request)
        for (label, _), image in zip(items, capture.rollouts):
            if label not in renders and (label == f"honest@{gen.MILD:g}" or not label.startswith(("honest", "ref"))):
                renders[label] = _thumbnail(image)
        renders.setdefault("target", _thumbnail(capture.reference))
    return {label: result for (label, _), result in zip(items, group.results)}


def _thumbnail(image: np.ndarray | None, side: int = 128) -> bytes:
    """A small PNG of a BGR render (an empty byte string for a rollout that did not render)."""
    if image is None:
        return b""
    import cv2

    ok, png = cv2.imencode(".png", cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA))
    return png.tobytes() if ok else b""


def _exact(audit: ProfileAudit, pooled: dict[str, float]) -> dict[str, float]:
    """Overrides that weight exactly ``pooled``: the base profile's other components set to 0."""
    base = resolve_weights(audit.profile, None, None)
    return {**{c: 0.0 for c in base}, **pooled}


def _recombine(rows: dict[str, Any], weights: dict[str, float]) -> dict[str, float | None]:
    """Each row's total under ``weights``: the pipeline's ``combine`` of its components."""
    return {label: None if r.reward is None else combine(r.components, weights)[0] for label, r in rows.items()}


def _record(
    audit: ProfileAudit,
    name: str,
    rows: dict[str, Any],
    totals: dict[str, float | None],
    honest: list[str],
    hacks: list[str],
) -> None:
    audit.references += 1
    audit.rewards[name] = totals
    mild = totals[f"honest@{gen.MILD:g}"]
    best = totals["reference"]
    if best is not None and any(v is not None and v > best + 1e-9 for v in totals.values()):
        audit.reference_not_max.append(name)
    strengths = [0.0] + [float(label.split("@")[1]) for label in honest[1:]]
    values = [totals[label] for label in honest]
    if all(v is not None for v in values) and len(set(values)) > 1:
        rho = spearmanr(strengths, values).statistic
        if not math.isnan(rho):
            audit.spearman.append(float(-rho))
    for hack in hacks:
        result = rows[hack]
        seen = audit.outcomes.setdefault(hack, {})
        for key in {result.status.value, *result.flags}:
            seen[key] = seen.get(key, 0) + 1
        reward = totals[hack]
        if mild is None or reward is None:
            continue
        audit.scored[hack] = audit.scored.get(hack, 0) + 1
        margin = reward - mild
        audit.margins.setdefault(hack, []).append((round(margin, 4), name))
        if margin >= 0:
            audit.wins[hack] = audit.wins.get(hack, 0) + 1


def shipped_profiles() -> list[str]:
    """Every profile in ``profiles.PROFILES``, in its order."""
    return list(PROFILES)


def table(result: AuditResult) -> str:
    """Markdown: a row per hack class (win rate), monotonicity and reference-maximal rows, a column per
    audited profile; then the profiles that could not be audited here and why."""
    audited = [p for p in result.profiles if not p.skipped]
    header = ["class", *(_label(p.profile, p.step) + ("" if p.required else " (validity only)") for p in audited)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for hack in result.hacks:
        rates = [p.win_rates.get(hack) for p in audited]
        lines.append(f"| {hack} | " + " | ".join("-" if r is None else f"{r:.0%}" for r in rates) + " |")
    mono = ["-" if p.monotonicity is None else f"{p.monotonicity:.3f}" for p in audited]
    lines.append("| monotonicity (mean Spearman) | " + " | ".join(mono) + " |")
    best = [f"{p.references - len(p.reference_not_max)}/{p.references}" for p in audited]
    lines.append("| reference scores highest | " + " | ".join(best) + " |")
    skipped = [f"{_label(p.profile, p.step)} ({_short(p.skipped)})" for p in result.profiles if p.skipped]
    if skipped:
        lines.append("")
        lines.append("Not auditable here: " + ", ".join(skipped) + ".")
    return "\n".join(lines)


def _short(reason: str) -> str:
    match = re.search(r"RLRF_[A-Z_]+", reason)
    return f"needs {match.group()}" if match else reason[:60]


def write_json(result: AuditResult, path: Path) -> None:
    path.write_text(json.dumps(result.to_json(), indent=2, default=_default))


def _default(value: object) -> object:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, Counter):
        return dict(value)
    raise TypeError(type(value))
