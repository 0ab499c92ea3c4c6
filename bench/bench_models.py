"""Throughput of the learned components: DreamSim on renders and on their edge maps, one GRPO step.

Workload (issue 5's yardstick): ``--groups`` references x ``--group-size`` rollouts (32 x 64 = one
2,048-rollout step by default), rendered beforehand from the svg_dev corpus with ``bench/perturb.py``
(rendering is ``bench_pipeline.py``'s business; this measures the model stage). Reference
embeddings are computed once before timing, as the pipeline caches them by content hash.

Timed: every group submits its ``dreamsim`` and ``dreamsim_edges`` inputs to one ``ModelScorer``
at once from its own thread, as concurrent ``POST /score`` requests (or GPU-worker tasks) do, so the
cross-request batcher merges them into batches of up to ``--max-batch``; then the two components
are computed from the embeddings. ``--sequential`` adds the same work one group at a time, to show
what cross-request batching buys.

Weights: random, with the real shapes (``--arch vit-b``: DreamSim's ensemble of three ViT-B/16
backbones, about 260 M parameters) or tiny ones (``--arch tiny``, a smoke test). Speed depends on
shapes, not values, so random weights measure what the released checkpoint would cost.

    python bench/bench_models.py                                  # on a GPU: 32 x 64, ViT-B ensemble
    python bench/bench_models.py --groups 2 --group-size 16       # a CPU-sized run
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.perturb import make_group
from services.reward_api.components import COMPONENTS, Canvas, Sample
from services.reward_api.core.settings import Settings
from services.reward_api.models.scorer import ModelScorer
from services.reward_api.scoring import render_job, render_reference
from services.reward_api.svg.policy import PolicyLimits

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "data/svg_dev"


def render_groups(data: Path, groups: int, size: int, group_size: int, seed: int) -> list[tuple[Canvas, list[Canvas]]]:
    """Reference and candidate canvases; candidates that fail the policy are replaced by the reference."""
    job = render_job(Settings(size=size), limits=PolicyLimits(reject_embedded_raster=False))
    out = []
    files = sorted(data.glob("*.svg"))[:groups]
    for path in tqdm(files, desc="rendering", unit="group", file=sys.stderr):
        svg = path.read_text()
        reference = render_reference(None, svg, job=job).image
        assert reference is not None, path
        candidates = []
        for text in make_group(svg, group_size, seed=seed, name=path.name):
            image = render_reference(None, text, job=job).image
            candidates.append(Canvas(image if image is not None else reference))
        out.append((Canvas(reference), candidates))
    return out


def _score_group(scorer: ModelScorer, reference: dict[str, np.ndarray], candidates: list[Canvas]) -> list[float]:
    embedded = scorer.embed(
        {"dreamsim": [c.image for c in candidates], "dreamsim_edges": [c.edges for c in candidates]}
    )
    ref = Sample(features=reference)
    totals = []
    for row in range(len(candidates)):
        cand = Sample(features={name: embedded[name][row] for name in embedded})
        totals.append(COMPONENTS["dreamsim"].compute(cand, ref) + COMPONENTS["dreamsim_canny"].compute(cand, ref))
    return totals


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from tests.models._weights import make_dreamsim_dir

    groups = render_groups(args.data, args.groups, args.size, args.group_size, args.seed)
    rollouts = sum(len(c) for _, c in groups)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"building random DreamSim weights ({args.arch}) ...", file=sys.stderr)
        root = make_dreamsim_dir(Path(tmp) / "dreamsim", embed_dim=768 if args.arch == "vit-b" else 64)
        settings = Settings(
            size=args.size,
            dreamsim_dir=root,
            device=args.device,
            model_max_batch=args.max_batch,
            model_max_wait_ms=args.max_wait_ms,
        )
        scorer = ModelScorer(settings)
        scorer.load(["dreamsim"])
        device = next(scorer._models["dreamsim"].model.parameters()).device
        # Warm-up (CUDA context, kernels), then the references: cached before timing, as in the service.
        scorer.embed({"dreamsim": [groups[0][0].image] * min(8, args.max_batch)})
        references = []
        for reference, _ in groups:
            out = scorer.embed({"dreamsim": [reference.image], "dreamsim_edges": [reference.edges]})
            references.append({name: array[0] for name, array in out.items()})
        if device.type == "cuda":
            torch.cuda.synchronize()

        batches_before = sum(b.batches for b in scorer._batchers.values())
        started = time.perf_counter()
        with ThreadPoolExecutor(len(groups)) as pool:
            rewards = list(pool.map(lambda g: _score_group(scorer, g[0], g[1][1]), zip(references, groups)))
        concurrent_s = time.perf_counter() - started
        batches = sum(b.batches for b in scorer._batchers.values()) - batches_before

        sequential_s = None
        if args.sequential:
            started = time.perf_counter()
            for ref, (_, candidates) in tqdm(list(zip(references, groups)), desc="sequential", file=sys.stderr):
                _score_group(scorer, ref, candidates)
            sequential_s = time.perf_counter() - started
        scorer.close()

    identity = [r[0] for r in rewards]  # candidate 0 is the reference itself: 2.0 (both components at 1)
    result = {
        "arch": args.arch,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "groups": len(groups),
        "group_size": args.group_size,
        "rollouts": rollouts,
        "max_batch": args.max_batch,
        "forward_batches": batches,
        "seconds": concurrent_s,
        "rollouts_per_s": rollouts / concurrent_s,
        "seconds_per_2048": 2048 * concurrent_s / rollouts,
        "sequential_seconds": sequential_s,
        "identity_reward_min": float(min(identity)),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="directory of reference SVGs")
    parser.add_argument("--groups", type=int, default=32, help="references (groups) in the step (default 32)")
    parser.add_argument("--group-size", type=int, default=64, help="rollouts per group (default 64)")
    parser.add_argument("--size", type=int, default=224, help="canvas side (DreamSim resizes to 224)")
    parser.add_argument("--arch", choices=["vit-b", "tiny"], default="vit-b", help="weight shapes (default vit-b)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--max-batch", type=int, default=256, help="images per forward pass (default 256)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="batcher wait for more requests")
    parser.add_argument("--sequential", action="store_true", help="also time one group at a time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    result = run(args)
    print(
        f"{result['rollouts']} rollouts ({result['groups']} x {result['group_size']}), dreamsim + dreamsim_canny, "
        f"{result['arch']} on {result['device']}: {result['seconds']:.2f} s, "
        f"{result['rollouts_per_s']:.1f} rollouts/s, "
        f"{result['seconds_per_2048']:.2f} s per 2048 rollouts ({result['forward_batches']} forward passes)"
    )
    if result["sequential_seconds"] is not None:
        print(
            f"one group at a time: {result['sequential_seconds']:.2f} s "
            f"({result['sequential_seconds'] / result['seconds']:.2f}x the batched time)"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
