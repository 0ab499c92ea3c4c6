"""``rlrf audit``: its options and what it prints (kept here so cli.py only registers it)."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

DESCRIPTION = """\
Which cheap tricks beat an honest drawing, per profile.

For every reference it scores, in one group through the real Pipeline: the reference itself; honest
corruptions at strengths 0.1 .. 0.9 (that share of the shapes dropped and recoloured, the rest
shifted); and one candidate per hack class (blank, mean-colour rect, tiny viewBox, truncated, length
collapse, padding to 4x, drawn twice (exactly, and nudged by 0.2% of the side), embedded raster (also
with RLRF_EMBEDDED_RASTER=allow), pixel grids at 16/32/64 cells as rects, one path per colour,
per-cell paths, a dot grid, a coarse grid under a few correct shapes; with --task text2svg also the
prompt as <text> and as glyph outline paths).

A class WINS on a reference when it scores at least the honest drawing with 10% of its shapes
dropped. Printed per profile: win rate per class, monotonicity (mean Spearman of reward against
corruption strength; 1 = falls with every step) and how often the reference itself scores highest.
Profiles whose learned model or judge is not configured here (RLRF_DREAMSIM_DIR, RLRF_CLIP_CHECKPOINT,
RLRF_JUDGE_URL) are reported as not auditable. Exit status 1 when a profile fails (a class wins, the
reference is not maximal, or monotonicity < 0.95).

--optimize N runs CMA-ES for N generations from a blank canvas against each audited profile's reward
on --optimize-refs references spread over the set, tracking SSIM and MSE (which the reward does not use); it
reports Spearman(reward, SSIM) along the trajectory, the final SSIM, and writes one PNG per run.
"""


def add_audit_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from services.reward_api.profiles import PROFILES

    audit = commands.add_parser(
        "audit",
        help="reward-hack audit: which cheap tricks beat an honest drawing, per profile (and --optimize)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    audit.add_argument(
        "--refs", required=True, type=Path, help="folder of reference .svg files, or a JSONL (svg, name, text)"
    )
    audit.add_argument(
        "--profile",
        action="append",
        choices=sorted(PROFILES),
        help="profile to audit (repeatable; default: all shipped)",
    )
    audit.add_argument(
        "--weight", action="append", default=[], metavar="NAME=W", help="override one component weight (repeatable)"
    )
    audit.add_argument("--task", choices=["im2svg", "text2svg"], default="im2svg", help="task (default im2svg)")
    audit.add_argument("--limit", type=int, help="audit only the first N references (sorted by file name)")
    audit.add_argument("--html", type=Path, help="write the HTML report (worst cases with renders) here")
    audit.add_argument("--json", type=Path, help="write the full results as JSON here")
    audit.add_argument("--optimize", type=int, default=0, metavar="N", help="also run CMA-ES for N generations")
    audit.add_argument(
        "--optimize-refs", type=int, default=3, help="references the optimizer runs on, spread over --refs (default 3)"
    )
    audit.add_argument("--optimize-shapes", type=int, default=12, help="primitives the optimizer places (default 12)")
    audit.add_argument("--optimize-dir", type=Path, default=Path("audit-optimize"), help="where the trajectory PNGs go")
    audit.add_argument("--size", type=int, help="canvas side in pixels (default 224)")
    audit.add_argument("--workers", type=int, help="render worker processes (default 2)")
    audit.add_argument("--quiet", action="store_true", help="no progress bars")
    audit.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    import cv2

    from services.reward_api.audit import optimize as opt
    from services.reward_api.audit import report
    from services.reward_api.audit import run as audit_run
    from services.reward_api.core.errors import InputError
    from services.reward_api.core.settings import Settings

    settings = Settings(**{k: v for k, v in {"size": args.size, "workers": args.workers}.items() if v})
    from services.reward_api.cli_options import parse_weights

    weights = parse_weights(args.weight)
    refs = audit_run.load_references(args.refs, args.limit)
    if not refs:
        raise InputError(f"no references in {args.refs}")
    profiles = args.profile or audit_run.shipped_profiles()
    result = audit_run.run_audit(
        refs,
        profiles,
        settings,
        task=args.task,
        weights=weights or None,
        progress=not args.quiet,
        keep_renders=args.html is not None,
    )
    result.command = "rlrf audit " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["audit"] else sys.argv[1:])
    print(audit_run.table(result))
    trajectories = []
    if args.optimize:
        trajectories = _optimize(args, settings, refs, result, opt, cv2)
    failures = result.failures()
    print("\n".join(f"FAIL {f}" for f in failures) if failures else "no failures")
    data = result.to_json()
    data["optimizer"] = [t.summary() for t in trajectories]
    if args.json:
        args.json.write_text(json.dumps(data, indent=2))
    if args.html:
        report.write_html(result, args.html, optimizer_html=_optimizer_html(trajectories, args.optimize_dir))
    return 1 if failures else 0


def _optimize(args, settings, refs, result, opt, cv2):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    from services.reward_api.pipeline import Pipeline

    live = [p for p in result.profiles if not p.skipped and p.required]  # format's reward is constant
    args.optimize_dir.mkdir(parents=True, exist_ok=True)
    trajectories = []
    spread = refs[:: max(1, len(refs) // max(1, args.optimize_refs))][: args.optimize_refs]  # across sources
    runs = [(ref, p) for ref in spread for p in live]
    with Pipeline.embedded(settings) as pipeline:
        for ref, p in tqdm(runs, desc="optimize", unit="run", disable=args.quiet):
            t = opt.optimize(
                pipeline,
                ref.name,
                ref.svg,
                p.profile,
                generations=args.optimize,
                shapes=args.optimize_shapes,
                step=p.step,
            )
            trajectories.append(t)
            out = args.optimize_dir / f"{ref.name}__{t.profile.replace('@', '_')}.png"
            cv2.imwrite(str(out), opt.picture(t))
    print("\n| reference | profile | reward start -> final | SSIM start -> final | Spearman(reward, SSIM) |")
    print("|---|---|---|---|---|")
    for t in trajectories:
        s = t.summary()
        rho = "n/a" if s["spearman_reward_ssim"] is None else f"{s['spearman_reward_ssim']:.3f}"
        print(
            f"| {t.reference} | {t.profile} | {s['reward_start']:+.3f} -> {s['reward_final']:+.3f} | "
            f"{s['ssim_start']:.3f} -> {s['ssim_final']:.3f} | {rho} |"
        )
    return trajectories


def _optimizer_html(trajectories, directory: Path) -> str:  # type: ignore[no-untyped-def]
    if not trajectories:
        return ""
    parts = ["<h2>Optimizer (CMA-ES from a blank canvas)</h2>"]
    for t in trajectories:
        png = directory / f"{t.reference}__{t.profile.replace('@', '_')}.png"
        if png.is_file():
            data = base64.b64encode(png.read_bytes()).decode()
            parts.append(f'<p>{t.reference} / {t.profile}</p><img src="data:image/png;base64,{data}">')
    return "\n".join(parts)
