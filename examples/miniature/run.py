"""RLRF in miniature: data → SFT → GRPO on the running service → `rlrf eval` → figures, per seed.

    python examples/miniature/run.py --out runs/miniature --seeds 0 1 2      # make demo-train

Every stage is the project's own entry point, run as a user would: ``rlrf data prepare``,
``trainer/train_sft.py``, ``rlrf serve`` (embedded, over HTTP) with ``trainer/train_grpo.py``, and
``rlrf eval`` on the held-out split after SFT and after GRPO. Only the data (examples/miniature/
shapes.py), the tiny model (tiny.py), greedy decoding of the held-out prompts and the figures are
the miniature's. ``summary.json`` holds every seed's numbers; ``--figures`` is where the PNGs go.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]

import figures  # noqa: E402
import shapes  # noqa: E402
import tiny  # noqa: E402

CONFIGS = REPO / "trainer" / "configs" / "miniature"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/miniature"))
    parser.add_argument("--figures", type=Path, help="where the PNGs go (default OUT/figures)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train", type=int, default=384, help="training samples")
    parser.add_argument("--heldout", type=int, default=96, help="held-out samples")
    parser.add_argument("--sft-epochs", type=float, help="override the SFT config's epochs")
    parser.add_argument("--grpo-steps", type=int, help="override the GRPO config's max_steps")
    parser.add_argument(
        "--sft-arg", action="append", default=[], metavar="ARG", help="passed to train_sft.py (e.g. --sft-arg=--seed=7)"
    )
    parser.add_argument(
        "--grpo-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="passed to train_grpo.py (e.g. --grpo-arg=--beta=0.04)",
    )
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--require-improvement", action="store_true", help="exit 1 unless GRPO beat SFT on every seed")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    figures_dir = (args.figures or out / "figures").resolve()
    started = time.monotonic()
    import torch

    torch.set_num_threads(1)
    data = make_data(out / "data", args.train, args.heldout)
    server = serve(args.port, out / "serve.log")
    url = f"http://127.0.0.1:{args.port}"
    results = []
    try:
        for seed in args.seeds:
            results.append(run_seed(seed, data, out / f"seed{seed}", url, args))
            log(f"seed {seed} done at {time.monotonic() - started:.0f} s")
        for seed in args.seeds:  # every seed's renders: the seeds differ in what GRPO learned
            name = "heldout_renders.png" if seed == args.seeds[0] else f"heldout_renders_seed{seed}.png"
            grid(figures_dir / name, data, out / f"seed{seed}", url)
    finally:
        server.terminate()
        server.wait(timeout=30)
    summary = summarise(results)
    summary["wall_s"] = round(time.monotonic() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    draw(figures_dir, results, summary)
    print(table(summary))
    print(f"GRPO beat SFT on every seed: {summary['all_seeds_improved']}")
    return 1 if args.require_improvement and not summary["all_seeds_improved"] else 0


def log(message: str) -> None:
    print(f"[miniature] {message}", file=sys.stderr, flush=True)


def rlrf(*argv: str) -> None:
    """The project's CLI, as a user runs it."""
    subprocess.run([sys.executable, "-m", "services.reward_api.cli", *argv], cwd=REPO, check=True, env=_env())


def _env() -> dict[str, str]:
    # One torch thread per process: on a small shared box, spinning thread pools cost 5x.
    env = {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    return {**os.environ, **env}


# 1. data ----------------------------------------------------------------------------------------
def make_data(directory: Path, n_train: int, n_heldout: int) -> dict[str, Any]:
    """Generated shapes, split in two, each through `rlrf data prepare`, then the per-row prompts."""
    rows = shapes.samples(n_train + n_heldout, seed=1234)
    splits = {"train": rows[:n_train], "heldout": rows[n_train:]}
    tokenizer_dir = directory / "tokenizer"
    if not (tokenizer_dir / "tokenizer.json").exists():
        tiny.build(tokenizer_dir, [r["prompt"] + r["svg"] for r in splits["train"]], seed=0)
    for name, split in splits.items():
        prepared = directory / name
        if (prepared / "dataset_info.json").exists():
            continue
        svgs = directory / f"{name}_svgs"
        svgs.mkdir(parents=True, exist_ok=True)
        for row in split:
            (svgs / f"{row['id']}.svg").write_text(row["svg"])
        raw = directory / f"{name}_raw"
        rlrf("data", "prepare", str(svgs), str(raw), "--tokenizer", str(tokenizer_dir))
        _with_prompts(raw, prepared, {f"{r['id']}.svg": r["prompt"] for r in split})
    references = directory / "heldout_refs.jsonl"
    references.write_text("".join(json.dumps({"id": r["id"], "svg": r["svg"]}) + "\n" for r in splits["heldout"]))
    return {"train": directory / "train", "heldout": splits["heldout"], "refs": references, "tokenizer": tokenizer_dir}


def _with_prompts(raw: Path, prepared: Path, prompts: dict[str, str]) -> None:
    from datasets import load_from_disk

    dataset = load_from_disk(str(raw))
    dataset.map(lambda row: {"prompt": prompts[row["source"]]}).save_to_disk(str(prepared))


# 2-4. one seed ----------------------------------------------------------------------------------
def run_seed(seed: int, data: dict[str, Any], directory: Path, url: str, args: argparse.Namespace) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    corpus = [r["prompt"] + r["svg"] for r in shapes.samples(args.train + args.heldout, seed=1234)[: args.train]]
    init = tiny.build(directory / "init", corpus, seed=seed)  # same tokenizer as data/tokenizer
    sft_dir, grpo_dir = directory / "sft", directory / "grpo"
    extra = (["--num_train_epochs", str(args.sft_epochs)] if args.sft_epochs else []) + args.sft_arg
    launch("train_sft.py", CONFIGS / "sft.yaml", init, data["train"], sft_dir, seed, extra, directory / "sft.log")
    sft_eval = evaluate(sft_dir, data, directory / "eval_sft")
    sft_sampled = evaluate(sft_dir, data, directory / "eval_sft_t07", temperature=0.7)
    extra = ["--reward_url", url] + (["--max_steps", str(args.grpo_steps)] if args.grpo_steps else []) + args.grpo_arg
    launch(
        "train_grpo.py", CONFIGS / "grpo.yaml", sft_dir, data["train"], grpo_dir, seed, extra, directory / "grpo.log"
    )
    grpo_eval = evaluate(grpo_dir, data, directory / "eval_grpo")
    grpo_sampled = evaluate(grpo_dir, data, directory / "eval_grpo_t07", temperature=0.7)
    rollouts = {"sft": heldout_rollouts(sft_dir, data, url), "grpo": heldout_rollouts(grpo_dir, data, url)}
    history = json.loads((grpo_dir / "trainer_state.json").read_text())["log_history"]
    return {
        "seed": seed,
        "sft": sft_eval,
        "grpo": grpo_eval,
        "sampled": {"sft": sft_sampled["means"], "grpo": grpo_sampled["means"]},
        "rollouts": rollouts,
        "history": [h for h in history if "reward" in h],
    }


def launch(
    script: str, config: Path, model: Path, dataset: Path, output: Path, seed: int, extra: list[str], log_path: Path
) -> None:
    cmd = [sys.executable, str(REPO / "trainer" / script), "--config", str(config), "--model_name_or_path", str(model)]
    cmd += ["--dataset_path", str(dataset), "--output_dir", str(output), "--seed", str(seed), *extra]
    log(" ".join(cmd[1:]))
    with log_path.open("w") as sink:
        proc = subprocess.run(cmd, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, env=_env())
    if proc.returncode:
        raise SystemExit(f"{script} failed ({proc.returncode}); see {log_path}")


def evaluate(model: Path, data: dict[str, Any], prefix: Path, temperature: float = 0.0) -> dict[str, Any]:
    """Completions of the held-out prompts (greedy, or sampled at the rollouts' temperature), by `rlrf eval`."""
    completions = tiny.generate(model, [r["prompt"] for r in data["heldout"]], temperature=temperature)
    preds = prefix.with_suffix(".pred.jsonl")
    preds.write_text(
        "".join(json.dumps({"id": r["id"], "completion": c}) + "\n" for r, c in zip(data["heldout"], completions))
    )
    report = prefix.with_suffix(".json")
    rlrf(
        "eval",
        "--pred",
        str(preds),
        "--ref",
        str(data["refs"]),
        "--task",
        "im2svg",
        "--json",
        str(report),
        "--no-progress",
    )
    document = json.loads(report.read_text())
    means = {k: v["mean"] for k, v in document["means"].items()}
    return {"means": means, "counts": document["counts"], "completions": completions}


def heldout_rollouts(model: Path, data: dict[str, Any], url: str, k: int = 8) -> dict[str, float]:
    """The reward GRPO optimises, on prompts it never trained on: ``k`` completions per held-out prompt,
    sampled as the rollouts are (T=0.7, seeded), scored by the service in one group per prompt.

    Training rewards are per-step means over a step's fresh prompts, so they jump by more than GRPO moves them;
    the same held-out prompts before and after compare like with like."""
    from transformers import AutoTokenizer

    import trainer

    prompts = [r["prompt"] for r in data["heldout"]]
    completions = tiny.generate(model, [p for p in prompts for _ in range(k)], temperature=0.7)
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokens = [len(ids) for ids in tokenizer(completions, add_special_tokens=False)["input_ids"]]
    groups = [
        {
            "reference": {"svg": r["svg"]},
            "completions": completions[i * k : (i + 1) * k],
            "completion_tokens": tokens[i * k : (i + 1) * k],
            "reference_tokens": len(tokenizer(r["svg"], add_special_tokens=False)["input_ids"]),
            "profile": "rlrf-im2svg",
        }
        for i, r in enumerate(data["heldout"])
    ]
    with trainer.RewardClient(url, retries=2) as client:  # 32 groups a request: under the service's admission cap
        answers = [a for start in range(0, len(groups), 32) for a in client.score_batch(groups[start : start + 32])]
    results = [x for answer in answers for x in answer["results"]]
    rewards = [x["reward"] for x in results if x["reward"] is not None]
    return {
        "reward": sum(rewards) / len(rewards),
        "non_ok": sum(x["status"] != "ok" for x in results) / len(results),
        "flagged": sum(x["status"] == "ok" and bool(x["flags"]) for x in results) / len(results),
    }


# the service ------------------------------------------------------------------------------------
def serve(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    import httpx

    log_path.parent.mkdir(parents=True, exist_ok=True)
    sink = log_path.open("w")
    cmd = [sys.executable, "-m", "services.reward_api.cli", "serve", "--port", str(port), "--workers", "2"]
    server = subprocess.Popen(cmd, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, env=_env())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"rlrf serve exited; see {log_path}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.terminate()
    raise SystemExit("rlrf serve did not become ready in 120 s")


# 5. results -------------------------------------------------------------------------------------
def _window(history: list[dict[str, Any]], key: str, first: bool, n: int = 10) -> float | None:
    values = [h[key] for h in history if h.get(key) is not None]
    part = values[:n] if first else values[-n:]
    return sum(part) / len(part) if part else None


_ROLLOUT = ("reward", "non_ok", "flagged")


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    seeds = []
    for r in results:
        h = r["history"]
        sft, grpo = r["sft"], r["grpo"]
        row = {
            "seed": r["seed"],
            "mse_sft": sft["means"].get("mse"),
            "mse_grpo": grpo["means"].get("mse"),
            "ssim_sft": sft["means"].get("ssim"),
            "ssim_grpo": grpo["means"].get("ssim"),
            "heldout_failure_sft": sft["counts"]["failure_rate"],
            "heldout_failure_grpo": grpo["counts"]["failure_rate"],
            "reward_first": _window(h, "reward", True),
            "reward_last": _window(h, "reward", False),
            "non_ok_first": _window(h, "rlrf/non_ok", True),
            "non_ok_last": _window(h, "rlrf/non_ok", False),
            "flagged_first": _window(h, "rlrf/flagged", True),
            "flagged_last": _window(h, "rlrf/flagged", False),
            "mse_sft_t07": r["sampled"]["sft"].get("mse"),
            "mse_grpo_t07": r["sampled"]["grpo"].get("mse"),
            "ssim_sft_t07": r["sampled"]["sft"].get("ssim"),
            "ssim_grpo_t07": r["sampled"]["grpo"].get("ssim"),
            **{f"heldout_{key}_{stage}": r["rollouts"][stage][key] for stage in ("sft", "grpo") for key in _ROLLOUT},
        }
        # Shares as the criterion states them, on the training rollouts; the held-out non-ok share is reported
        # beside them (a few garbled samples in 768 move it by a tenth of a percent either way).
        row["improved"] = bool(
            None not in (row["mse_sft"], row["mse_grpo"], row["ssim_sft"], row["ssim_grpo"])
            and row["mse_grpo"] < row["mse_sft"]
            and row["ssim_grpo"] > row["ssim_sft"]
            and row["heldout_reward_grpo"] > row["heldout_reward_sft"]
            and row["reward_last"] > row["reward_first"]
            and row["heldout_flagged_grpo"] <= row["heldout_flagged_sft"] + 1e-9
            and row["non_ok_last"] <= row["non_ok_first"] + 1e-9
            and row["flagged_last"] <= row["flagged_first"] + 1e-9
            and (row["heldout_failure_grpo"] or 0) <= (row["heldout_failure_sft"] or 0)
        )
        seeds.append(row)
    return {"seeds": seeds, "all_seeds_improved": all(s["improved"] for s in seeds)}


def table(summary: dict[str, Any]) -> str:
    """Markdown, as the README shows it: SFT → GRPO (or first → last steps) for every measure."""
    # (column, the (before, after) pairs it shows separated by " / ", how a value is written)
    columns: list[tuple[str, list[tuple[str, str]], Callable[[float | None], str]]] = [
        ("held-out MSE (greedy)", [("mse_sft", "mse_grpo")], _f),
        ("held-out SSIM (greedy)", [("ssim_sft", "ssim_grpo")], _f),
        ("held-out reward (T=0.7)", [("heldout_reward_sft", "heldout_reward_grpo")], _f),
        ("training reward (first → last 10 steps)", [("reward_first", "reward_last")], _f),
        (
            "non-ok held-out / training",
            [("heldout_non_ok_sft", "heldout_non_ok_grpo"), ("non_ok_first", "non_ok_last")],
            _pct,
        ),
        (
            "flagged held-out / training",
            [("heldout_flagged_sft", "heldout_flagged_grpo"), ("flagged_first", "flagged_last")],
            _pct,
        ),
        ("MSE / SSIM (T=0.7)", [("mse_sft_t07", "mse_grpo_t07"), ("ssim_sft_t07", "ssim_grpo_t07")], _f),
    ]
    head = "| seed | " + " | ".join(name for name, _, _ in columns) + " | all better |"
    lines = [head, "|" + "---|" * (len(columns) + 2)]
    for s in summary["seeds"]:
        cells = [" / ".join(f"{fmt(s[a])} → {fmt(s[b])}" for a, b in pairs) for _, pairs, fmt in columns]
        lines.append(f"| {s['seed']} | " + " | ".join(cells) + f" | {'yes' if s['improved'] else 'no'} |")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def draw(directory: Path, results: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    keys = ["reward", "rewards/pixel_l2/mean", "rewards/canny_l2/mean", "rewards/length/mean", "rlrf/non_ok"]
    first = results[0]
    series = {
        k.split("/")[1] if "/" in k else k: _smooth([(h["step"], h[k]) for h in first["history"] if k in h])
        for k in keys
    }
    series["non_ok share"] = series.pop("non_ok")
    title = f"GRPO reward and its components per step (seed {first['seed']}, mean of the last 5 steps)"
    figures.line_chart(directory / "reward_curve.png", title, series)
    stages: dict[str, dict[str, float]] = {}
    for metric in ("mse", "ssim"):
        for seed in summary["seeds"]:  # per seed: a mean over seeds would hide a seed that went wrong
            if seed[f"{metric}_sft"] is not None and seed[f"{metric}_grpo"] is not None:
                stages[f"{metric} seed {seed['seed']}"] = {"SFT": seed[f"{metric}_sft"], "GRPO": seed[f"{metric}_grpo"]}
    figures.bar_chart(
        directory / "heldout_metrics.png",
        "Held-out metrics, after SFT and after GRPO",
        stages,
        note="MSE lower is better, SSIM higher is better; `rlrf eval` over the ok samples",
    )


def _smooth(points: list[tuple[float, float]], n: int = 5) -> list[tuple[float, float]]:
    """Trailing mean over ``n`` steps: each step draws 8 new prompts, so raw per-step rewards jump."""
    return [
        (x, sum(y for _, y in points[max(0, i - n + 1) : i + 1]) / len(points[max(0, i - n + 1) : i + 1]))
        for i, (x, _) in enumerate(points)
    ]


def redraw(out: Path, figures_dir: Path, seeds: list[int]) -> None:
    """The figures again from a finished run's files (no training)."""
    summary = json.loads((out / "summary.json").read_text())
    results = []
    for seed in seeds:
        state = json.loads((out / f"seed{seed}" / "grpo" / "trainer_state.json").read_text())
        results.append({"seed": seed, "history": [h for h in state["log_history"] if "reward" in h]})
    draw(figures_dir, results, summary)


def grid(path: Path, data: dict[str, Any], seed_dir: Path, url: str, n: int = 8) -> None:
    """Reference, SFT and GRPO renders of the first held-out samples, thumbnails from the service."""
    import trainer

    def completions(name: str) -> list[str]:
        lines = seed_dir.joinpath(f"eval_{name}.pred.jsonl").read_text().splitlines()
        return [json.loads(line)["completion"] for line in lines]

    sft, grpo = completions("sft"), completions("grpo")
    rows, captions = [], []
    with trainer.RewardClient(url, retries=2) as client:
        groups = [
            {
                "reference": {"svg": r["svg"]},
                "completions": [sft[i], grpo[i]],
                "profile": "rlrf-im2svg",
                "renders": True,
            }
            for i, r in enumerate(data["heldout"][:n])
        ]
        for r, answer in zip(data["heldout"][:n], client.score_batch(groups)):
            thumbs = answer.get("renders") or {}
            rollouts = thumbs.get("rollouts") or [None, None]
            rows.append([thumbs.get("reference"), rollouts[0], rollouts[1]])
            results = answer["results"]
            captions.append([r["prompt"].strip()] + [f"{x['status']} {x['reward']:.2f}" for x in results])
    figures.render_grid(path, ["reference", "after SFT", "after GRPO"], rows, captions)


if __name__ == "__main__":
    sys.exit(main())
