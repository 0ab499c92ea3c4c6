"""The ``rlrf`` command line.

    rlrf score --reference REF.svg|REF.png [options] CAND... [--json]

A CAND file may hold raw model output: prose, <think> blocks and fences around the SVG.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

from services.reward_api.core.errors import RewardError
from services.reward_api.core.results import GroupResult
from services.reward_api.core.schemas import ReferenceIn, ScoreRequest
from services.reward_api.core.settings import Settings
from services.reward_api.profiles import PROFILES


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except RewardError as exc:
        print(f"rlrf: error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlrf",
        description="Rendering-feedback rewards for SVG reinforcement learning.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    score = commands.add_parser(
        "score",
        help="score candidate SVGs (or raw model outputs) against a reference",
        description=(
            "Score each CAND against the reference as one rollout group, exactly as the service would.\n"
            "Prints a row per candidate: reward, components, status and flags.\n"
            "Settings not given here come from RLRF_* environment variables (see core/settings.py)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    score.add_argument("--reference", required=True, type=Path, help="reference SVG, or a PNG/JPEG image")
    score.add_argument("--size", type=int, help="canvas side in pixels (default 224, max 1024)")
    score.add_argument("--renderer", choices=["resvg", "cairosvg"], help="renderer (default resvg)")
    score.add_argument("--profile", choices=sorted(PROFILES), help="weight profile (default rlrf-im2svg)")
    score.add_argument(
        "--weight", action="append", default=[], metavar="NAME=W", help="override one component weight (repeatable)"
    )
    score.add_argument("--step", type=int, help="training step, for weight warm-up schedules")
    score.add_argument("--workers", type=int, help="render worker processes (default 2)")
    score.add_argument("--json", action="store_true", help='print {"results": [...]} as JSON')
    score.add_argument(
        "candidates", nargs="+", type=Path, metavar="CAND", help="files with an SVG or raw model output (prose, fences)"
    )
    score.set_defaults(func=_score)

    serve = commands.add_parser(
        "serve",
        help="run the HTTP reward service (embedded mode: render workers in this process)",
        description=(
            "Serve POST /score, /score/batch and /openrlhf/reward (OpenAPI at /docs), /healthz, /readyz, /metrics.\n"
            "Embedded mode: one process with its own pool of render workers; no Redis needed.\n"
            "Other settings come from RLRF_* environment variables (RLRF_API_TOKEN, RLRF_SIZE, ...)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", help="bind address (default 127.0.0.1; 0.0.0.0 in a container)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--workers", type=int, help="render worker processes (embedded; default 2)")
    serve.add_argument(
        "--backend", choices=["embedded", "celery"], help="embedded (default) or celery: work goes to `rlrf worker`"
    )
    serve.set_defaults(func=_serve)

    worker = commands.add_parser(
        "worker",
        help="run a distributed-mode worker: consumes render/score tasks from Redis (Celery)",
        description=(
            "A Celery worker for `rlrf serve --backend celery`. It runs --threads tasks at once and renders\n"
            "in its own pool of --workers sandboxed processes (RLRF_REDIS_URL picks the broker)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument("--workers", type=int, help="sandboxed render processes of this worker (default 2)")
    worker.add_argument("--threads", type=int, default=4, help="tasks (chunks) in flight in this worker (default 4)")
    worker.add_argument("--name", default="rlrf@%h", help="Celery node name (default rlrf@%%h)")
    worker.set_defaults(func=_worker)

    data = commands.add_parser("data", help="prepare training datasets")
    data_commands = data.add_subparsers(required=True, metavar="ACTION")
    prepare = data_commands.add_parser(
        "prepare",
        help="turn an SVG collection into a filtered training dataset (rendered references, token counts)",
        description=(
            "Render every SVG of INPUT (a folder of .svg files, or a dataset saved with save_to_disk) on the reward\n"
            "canvas, count its tokens, drop broken, embedded-raster, blank, low-colour-entropy, over-long and\n"
            "(for the RL subset) too-short SVGs, and save the rest with save_to_disk. Prints what was dropped and why."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prepare.add_argument("input", type=Path, help="folder of .svg files, or a saved Hugging Face dataset")
    prepare.add_argument("output", type=Path, help="where to save the prepared dataset")
    prepare.add_argument("--svg-column", default="svg", help="SVG column of a dataset input (default svg)")
    prepare.add_argument("--tokenizer", help="local tokenizer directory for token counts (default: chars/4 proxy)")
    prepare.add_argument("--size", type=int, default=224, help="canvas side of the rendered references")
    prepare.add_argument("--max-tokens", type=int, default=8192, help="drop longer SVGs (default 8192)")
    prepare.add_argument("--min-tokens", type=int, default=0, help="drop shorter SVGs (RL subset; default 0)")
    prepare.add_argument(
        "--min-entropy", type=float, default=0.2, help="drop renders under this colour entropy in bits (default 0.2)"
    )
    prepare.add_argument("--prompt", help="the prompt column's text")
    prepare.add_argument("--workers", type=int, default=2, help="render worker processes")
    prepare.set_defaults(func=_data_prepare)
    return parser


def _data_prepare(args: argparse.Namespace) -> int:
    from trainer.data import DEFAULT_PROMPT, PrepareOptions, prepare

    options = PrepareOptions(
        size=args.size,
        max_tokens=args.max_tokens,
        min_tokens=args.min_tokens,
        min_entropy=args.min_entropy,
        prompt=args.prompt or DEFAULT_PROMPT,
        tokenizer=args.tokenizer,
        svg_column=args.svg_column,
        workers=args.workers,
    )
    summary = prepare(args.input, args.output, options)
    dropped = ", ".join(f"{reason} {n}" for reason, n in sorted(summary.dropped.items())) or "none"
    print(f"kept {summary.kept} of {summary.seen} SVGs; dropped: {dropped}; saved to {args.output}")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from services.reward_api.worker.tasks import make_worker_app

    settings = _settings(workers=args.workers)
    app, state = make_worker_app(settings)
    try:
        app.worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={args.threads}",
                "-Q",
                settings.cpu_queue,
                "-n",
                args.name,
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
            ]
        )
    finally:
        state.close()
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from services.reward_api.api.main import create_app

    settings = _settings(host=args.host, port=args.port, workers=args.workers, backend=args.backend)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
    return 0


def _score(args: argparse.Namespace) -> int:
    settings = _settings(size=args.size, renderer=args.renderer, workers=args.workers)
    reference = _read_reference(args.reference)
    weights = {}
    for item in args.weight:
        name, _, value = item.partition("=")
        try:
            weights[name] = float(value)
        except ValueError:
            raise SystemExit(f"rlrf: error: --weight expects NAME=NUMBER, got {item!r}") from None
    # surrogateescape keeps undecodable bytes visible to the policy, which reports parse_error.
    completions = [path.read_bytes().decode("utf-8", "surrogateescape") for path in args.candidates]
    request = ScoreRequest(
        reference=reference, completions=completions, profile=args.profile, weights=weights or None, step=args.step
    )
    from services.reward_api.pipeline import Pipeline  # heavy imports only when scoring

    with Pipeline.embedded(settings) as pipeline:
        result = pipeline.score_group(request)
    if args.json:
        print(json.dumps({"results": [r.model_dump(mode="json") for r in result.results]}, indent=2))
    else:
        print(_table(result, [str(p) for p in args.candidates]))
    return 0


def _settings(**given: object) -> Settings:
    """Settings from the environment, with the options given on the command line on top."""
    return Settings(**{k: v for k, v in given.items() if v})


def _read_reference(path: Path) -> ReferenceIn:
    data = path.read_bytes()
    if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        return ReferenceIn(image_b64=base64.b64encode(data).decode("ascii"))
    return ReferenceIn(svg=data.decode("utf-8", "surrogateescape"))


def _table(result: GroupResult, names: list[str]) -> str:
    columns = sorted({name for r in result.results for name in r.components})
    header = ["candidate", "reward", *columns, "status", "flags"]
    rows = [header]
    for name, r in zip(names, result.results):
        reward = "null" if r.reward is None else f"{r.reward:+.3f}"
        comps = [f"{r.components[c]:+.3f}" if c in r.components else "-" for c in columns]
        rows.append([name, reward, *comps, r.status.value, ",".join(r.flags) or "-"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


if __name__ == "__main__":
    raise SystemExit(main())
