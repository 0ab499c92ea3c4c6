"""``rlrf eval``: the paper's metrics on a set of predictions, with a JSON file and an HTML report.

    rlrf eval --pred DIR|JSONL --ref DIR|JSONL [--task im2svg|text2svg] [--json OUT] [--html OUT]

Only the parser and the settings are read when ``rlrf`` starts; the run (renderers, models) is
imported when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from services.reward_api.core.errors import ConfigError, InputError
from services.reward_api.core.settings import Settings
from services.reward_api.evaluation.config import EvalOptions, EvalSettings

__all__ = ["add_eval_parser", "run_eval"]


def add_eval_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``rlrf eval`` on the ``rlrf`` command's subparsers; returns its parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "eval",
        help="the paper's metrics (MSE, SSIM, LPIPS, DINO, code efficiency; CLIP, judge) with an HTML report",
        description=(
            "Evaluate predictions against references with the metrics of RLRF / StarVector.\n"
            "  im2svg:   MSE, SSIM, LPIPS, DINO score, code efficiency (token or character length difference)\n"
            "  text2svg: CLIP score, VLM judge score, code efficiency (plus the image metrics where a\n"
            "            reference has an image)\n"
            "\n"
            "Pairing: folders match files by stem (prediction foo.svg or foo.txt raw model output; reference\n"
            "foo.svg/foo.png/foo.jpg and/or foo.txt prompt). JSONL: one object per line with an 'id';\n"
            "predictions 'completion' or 'svg', references 'svg', 'image_b64' and/or 'text'.\n"
            "\n"
            "Every prediction is extracted and rendered in the service's sandbox: a hostile or broken SVG\n"
            "gets a status (no_svg, truncated, parse_error, rejected, render_timeout, render_crash), never\n"
            "a score. Means are over the ok samples and say over how many; the failure rate is reported.\n"
            "LPIPS, DINO and CLIP read local weight files only (see docs/EVAL.md); an unconfigured one\n"
            "is absent from the output, never 0. Settings not given here come from RLRF_* variables."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pred", required=True, type=Path, metavar="DIR|JSONL", help="the predictions")
    parser.add_argument("--ref", required=True, type=Path, metavar="DIR|JSONL", help="the references")
    parser.add_argument(
        "--task", choices=["im2svg", "text2svg"], default="im2svg", help="which metrics (default im2svg)"
    )
    parser.add_argument("--json", type=Path, metavar="OUT.json", help="write rows, means, counts and metadata")
    parser.add_argument("--html", type=Path, metavar="OUT.html", help="write a self-contained report, worst first")
    parser.add_argument("--size", type=int, help="canvas side in pixels (default 224, max 1024)")
    parser.add_argument("--renderer", choices=["resvg", "cairosvg"], help="renderer (default resvg)")
    parser.add_argument("--workers", type=int, help="sandboxed render processes (default 2)")
    parser.add_argument(
        "--tokenizer", metavar="DIR", help="local Hugging Face tokenizer for code efficiency (default: characters)"
    )
    parser.add_argument("--lpips-backbone", type=Path, metavar="FILE", help="torchvision vgg16/alexnet state dict")
    parser.add_argument("--lpips-net", choices=["vgg", "alex"], help="LPIPS trunk (default vgg, as StarVector)")
    parser.add_argument(
        "--lpips-inputs",
        choices=["standard", "starvector"],
        help="standard: [-1, 1] as lpips expects (default); starvector: ImageNet-normalised, as its code does",
    )
    parser.add_argument("--dino-dir", type=Path, metavar="DIR", help="DINOv2 directory (transformers layout)")
    parser.add_argument("--clip-checkpoint", type=Path, metavar="FILE", help="open_clip checkpoint (text2svg)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where the learned metrics run")
    parser.add_argument("--batch-size", type=int, help="images per forward pass of the learned metrics (default 16)")
    parser.add_argument(
        "--sort-by", metavar="METRIC", help="the HTML's primary metric (default mse; text2svg clip_score)"
    )
    parser.add_argument("--no-judge", action="store_true", help="text2svg: do not call the judge proxy")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(func=run_eval)
    return parser


def run_eval(args: argparse.Namespace) -> int:
    """``rlrf eval``: read, evaluate, print the table, write ``--json`` and ``--html``.

    Returns:
        0, or 1 when some samples hit our own infrastructure failure (status ``error``; outputs still written).

    Raises:
        ConfigError: invalid settings, a missing font; MissingWeightsError: a configured file is missing.
        InputError: predictions or references that cannot be read or paired.
    """
    from services.reward_api.evaluation.inputs import read_predictions, read_references
    from services.reward_api.evaluation.report import write_html
    from services.reward_api.evaluation.run import evaluate
    from services.reward_api.evaluation.summary import format_table

    service = {
        "size": args.size,
        "renderer": args.renderer,
        "workers": args.workers,
        "clip_checkpoint": args.clip_checkpoint,
        "device": args.device,
    }
    weights = {
        "lpips_backbone": args.lpips_backbone,
        "lpips_net": args.lpips_net,
        "lpips_inputs": args.lpips_inputs,
        "dino_dir": args.dino_dir,
        "eval_batch_size": args.batch_size,
    }
    try:
        settings = Settings(**{k: v for k, v in service.items() if v is not None})
        config = EvalSettings(**{k: v for k, v in weights.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(str(exc)) from None
    predictions = read_predictions(args.pred)
    references = read_references(args.ref)
    if not references:
        raise InputError(f"no references found in {args.ref}")
    options = EvalOptions(
        task=args.task,
        tokenizer=args.tokenizer,
        judge=not args.no_judge,
        sort_by=args.sort_by,
        keep_renders=args.html is not None,
        progress=not args.no_progress,
    )
    report = evaluate(predictions, references, settings, options, config)
    report.metadata.update(pred=str(args.pred), ref=str(args.ref))
    print(format_table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    if args.html is not None:
        write_html(report, args.html)
    errors = report.counts["by_status"].get("error", 0)
    if errors:  # the outputs are written, but a number over fewer samples than asked must not pass silently
        print(f"rlrf: error: {errors} samples could not be scored on our side (status error)", file=sys.stderr)
        return 1
    return 0
