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
from typing import Any

from services.reward_api.cli_options import parse_weights
from services.reward_api.core.errors import ConfigError, RewardError
from services.reward_api.core.results import GroupResult
from services.reward_api.core.schemas import ReferenceIn, ScoreRequest
from services.reward_api.core.settings import Settings
from services.reward_api.evaluation.cli import add_eval_parser
from services.reward_api.profiles import PROFILES


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["judge-proxy"]:  # a separate service with its own settings and options
        from services.judge_proxy.cli import main as judge_proxy

        return judge_proxy(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    args.argv = argv
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
        help="run a distributed-mode worker: consumes render (cpu) or model (gpu) tasks from Redis (Celery)",
        description=(
            "A Celery worker for `rlrf serve --backend celery` (RLRF_REDIS_URL picks the broker).\n"
            "  --queue cpu  renders and scores SVG chunks in its own pool of --workers sandboxed processes.\n"
            "  --queue gpu  loads the learned models once (RLRF_DREAMSIM_DIR, RLRF_CLIP_CHECKPOINT, RLRF_DEVICE)\n"
            "               and embeds renders; its --threads tasks are merged into batches of up to\n"
            "               RLRF_MODEL_MAX_BATCH. Threads, never forked children: CUDA does not survive fork.\n"
            "The Celery worker runs in a child process that is started again if it dies (e.g. kombu's\n"
            "'Unrecoverable error' on a Redis reconnect), with back-off; SIGTERM/SIGINT stop both."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument("--queue", choices=["cpu", "gpu"], default="cpu", help="which work to consume (default cpu)")
    worker.add_argument("--workers", type=int, help="sandboxed render processes of a cpu worker (default 2)")
    worker.add_argument(
        "--threads",
        type=int,
        help="tasks in flight in this worker (default: 4 per render process for cpu, so a chunk of another group "
        "gets in beside a slow group's and the render pool serves it first; 32 for gpu: fills batches)",
    )
    worker.add_argument("--name", help="Celery node name (default rlrf-cpu@%%h or rlrf-gpu@%%h)")
    worker.add_argument(
        "--no-supervise",
        action="store_true",
        help="run the Celery worker in this process, with nothing to restart it (under systemd or k8s, say)",
    )
    worker.set_defaults(func=_worker)

    models = commands.add_parser(
        "models",
        help="fetch or check the learned models' weight files (DreamSim, CLIP)",
        description=(
            "The service never downloads weights: it reads the files RLRF_DREAMSIM_DIR and\n"
            "RLRF_CLIP_CHECKPOINT point at. `fetch` fills them on a machine with internet access (copy them\n"
            "to the cluster afterwards); `check` loads them and embeds one canvas."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model_commands = models.add_subparsers(required=True, metavar="ACTION")
    fetch = model_commands.add_parser("fetch", help="download the configured models' files (needs internet)")
    fetch.add_argument("--dreamsim-dir", type=Path, help="DreamSim cache directory (RLRF_DREAMSIM_DIR)")
    fetch.add_argument("--clip-checkpoint", type=Path, help="where to write the CLIP checkpoint (RLRF_CLIP_CHECKPOINT)")
    fetch.add_argument("--clip-tag", default="openai", help="open_clip pretrained tag to fetch (default openai)")
    fetch.add_argument("--dry-run", action="store_true", help="print what would be downloaded, download nothing")
    fetch.set_defaults(func=_models_fetch)
    check = model_commands.add_parser("check", help="load the configured models and embed one canvas")
    check.add_argument("--dreamsim-dir", type=Path, help="DreamSim cache directory (RLRF_DREAMSIM_DIR)")
    check.add_argument("--clip-checkpoint", type=Path, help="CLIP checkpoint file (RLRF_CLIP_CHECKPOINT)")
    check.set_defaults(func=_models_check)

    judge = commands.add_parser(
        "judge-proxy",
        help="run the VLM judge proxy (Gemini, OpenAI-compatible servers); see `rlrf judge-proxy --help`",
        add_help=False,
    )
    judge.set_defaults(func=lambda _: 0)  # dispatched in main(): its own parser reads the options

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
    add_eval_parser(commands)
    # rlrf audit: reward-hack audit and optimizer (services/reward_api/audit/cli.py)
    from services.reward_api.audit.cli import add_audit_parser

    add_audit_parser(commands)
    return parser


def _data_prepare(args: argparse.Namespace) -> int:
    from services.reward_api.data import DEFAULT_PROMPT, PrepareOptions, prepare  # renderers: only when run

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


def _models_fetch(args: argparse.Namespace) -> int:
    from services.reward_api.models import fetch

    settings = _settings(dreamsim_dir=args.dreamsim_dir, clip_checkpoint=args.clip_checkpoint)
    steps = fetch.plan(settings, args.clip_tag)
    if not steps:
        raise ConfigError("nothing to fetch: give --dreamsim-dir and/or --clip-checkpoint (or the RLRF_ settings)")
    print("\n".join(steps))
    if not args.dry_run:
        fetch.fetch(settings, args.clip_tag)
        print("\n".join(fetch.check(settings)))
    return 0


def _models_check(args: argparse.Namespace) -> int:
    from services.reward_api.models import fetch

    settings = _settings(dreamsim_dir=args.dreamsim_dir, clip_checkpoint=args.clip_checkpoint)
    lines = fetch.check(settings)
    if not lines:
        raise ConfigError("no learned model configured: set RLRF_DREAMSIM_DIR and/or RLRF_CLIP_CHECKPOINT")
    print("\n".join(lines))
    return 0


def _worker(args: argparse.Namespace) -> int:
    if not args.no_supervise:
        from services.reward_api.worker.supervise import supervise

        return supervise([sys.executable, "-m", "services.reward_api.cli", *args.argv, "--no-supervise"])
    from services.reward_api.worker.tasks import make_worker_app

    settings = _settings(workers=args.workers)
    app, state = make_worker_app(settings)
    if args.queue == "gpu":
        features = state.models.configured_features()
        if not features:
            raise ConfigError("a gpu worker needs learned models: set RLRF_DREAMSIM_DIR and/or RLRF_CLIP_CHECKPOINT")
        state.models.check(features)  # a missing file fails here, before any task is taken
        state.models.load(features)
    elif not state.backend.pool.wait_ready(120):  # take no task before the render processes can run it
        raise ConfigError("render workers did not start within 120 s (see the log above)")
    threads = args.threads or (32 if args.queue == "gpu" else 4 * settings.workers)
    # ``worker_main`` drops the worker's exit code: a worker stopped by an "Unrecoverable error" (kombu's on a
    # Redis reconnect) exited 0 and looked like a clean stop to the supervisor and to systemd. Celery's
    # ``worker_init`` signal hands over the worker, whose ``exitcode`` is read once it has stopped.
    from celery import signals

    started: list[Any] = []
    signals.worker_init.connect(lambda sender, **_: started.append(sender), weak=False)
    try:
        app.worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={threads}",
                "-Q",
                settings.gpu_queue if args.queue == "gpu" else settings.cpu_queue,
                "-n",
                args.name or f"rlrf-{args.queue}@%h",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
            ]
        )
    finally:
        state.close()
    if not started:
        return 1  # Celery stopped before it built a worker (it has said why)
    # A warm shutdown sets 0, an unrecoverable error 1; a cold shutdown (SIGQUIT) sets nothing: not clean.
    code = started[-1].exitcode
    return 1 if code is None else int(code)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from services.reward_api.api.main import create_app

    settings = _settings(host=args.host, port=args.port, workers=args.workers, backend=args.backend)
    # A client that left must not hold shutdown for request_deadline_s: in-flight requests get 30 s.
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level="info", timeout_graceful_shutdown=30
    )
    return 0


def _score(args: argparse.Namespace) -> int:
    settings = _settings(size=args.size, renderer=args.renderer, workers=args.workers)
    reference = _read_reference(args.reference)
    weights = parse_weights(args.weight)
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


def _settings(**given: Any) -> Settings:
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
