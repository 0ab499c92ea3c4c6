"""False rejections: how many legitimate, self-contained SVGs the reference path refuses.

Every file of a corpus of real SVG written outside this project goes through exactly what a
reference goes through (``scoring.render_reference`` in the sandboxed worker pool: extraction,
policy with rasters allowed, rendering), and through the candidate policy (rasters refused, as
``embedded_raster`` says by default). Anything but ``ok`` on the reference path is a false
rejection, since none of these files reads anything outside itself; the candidate column shows
what a model copying them would get.

Build the corpus from npm packages (``assemble``), then measure a directory (``measure``); the
first directory level below it is the class a file is counted in:

  python bench/false_rejections.py assemble /tmp/svgcorpus devicon country-flag-icons ...
  python bench/false_rejections.py measure /tmp/svgcorpus --per-class 400 --renderer resvg

``assemble`` runs ``npm pack`` for each package (or takes a ``.tgz`` it left earlier) and keeps
only its ``.svg`` files, under ``DIR/<package>/``. ``measure`` prints, per class, the files
measured, the false-rejection rate of the reference path and of the candidate policy, and the
reasons (``status:reason``, numbers replaced by N, with one example file each); ``--json PATH``
writes every verdict.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.reward_api.core.settings import Settings
from services.reward_api.pipeline import render_pool
from services.reward_api.sandbox import TaskFailure
from services.reward_api.scoring import policy_limits, render_job, render_reference
from services.reward_api.svg.extract import extract_svg
from services.reward_api.svg.policy import check_svg


def assemble(directory: Path, packages: Sequence[str]) -> dict[str, int]:
    """``npm pack`` each package and unpack its SVG files under ``directory/<package>/``."""
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for package in packages:
            if package.endswith(".tgz") and Path(package).is_file():  # a tarball npm pack left earlier
                tarball = Path(package)
                target = directory / tarball.name.removesuffix(".tgz")
            else:
                done = subprocess.run(
                    ["npm", "pack", "--silent", package], cwd=scratch, capture_output=True, text=True, check=False
                )
                if done.returncode != 0:
                    print(f"npm pack {package} failed: {done.stderr.strip()[:200]}", file=sys.stderr)
                    continue
                tarball = Path(scratch) / done.stdout.strip().splitlines()[-1]
                target = directory / package.replace("/", "__")
            counts[package] = 0
            with tarfile.open(tarball) as archive:
                for member in archive.getmembers():
                    if not (member.isfile() and member.name.lower().endswith(".svg")):
                        continue
                    data = archive.extractfile(member)
                    if data is None:
                        continue
                    path = target / Path(*Path(member.name).parts[1:])  # below the tarball's top folder
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data.read())
                    counts[package] += 1
    return counts


def measure(
    directory: Path, *, settings: Settings, per_class: int | None, seed: int
) -> dict[str, list[dict[str, str]]]:
    """Every sampled file's verdict on the reference path and under the candidate policy, by class."""
    classes: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.suffix.lower() == ".svg":
            classes[path.relative_to(directory).parts[0]].append(path)
    rng = random.Random(seed)
    picked = {
        name: sorted(rng.sample(files, per_class)) if per_class and len(files) > per_class else files
        for name, files in classes.items()
    }
    reference_job = render_job(settings, limits=policy_limits(settings.model_copy(update={"embedded_raster": "allow"})))
    candidate_limits = policy_limits(settings)
    verdicts: dict[str, list[dict[str, str]]] = {}
    with render_pool(settings) as pool:
        for name, files in sorted(picked.items()):
            texts = [_read(path) for path in files]
            rendered = pool.run(partial(render_reference, job=reference_job), texts)
            rows = []
            for path, text, result in zip(files, texts, rendered):
                if isinstance(result, TaskFailure):
                    reference = f"{'render_timeout' if 'Timeout' in type(result).__name__ else 'render_crash'}:worker"
                else:
                    reference = result.status.value + (f":{_reason(result.detail)}" if result.detail else "")
                rows.append(
                    {
                        "file": str(path.relative_to(directory)),
                        "reference": reference,
                        "candidate": _candidate(text, settings, candidate_limits),
                    }
                )
            verdicts[name] = rows
    return verdicts


def _read(path: Path) -> str:
    data = path.read_bytes()
    if data[:3] == b"\xef\xbb\xbf":
        data = data[3:]
    return data.decode("utf-8", errors="surrogateescape")


def _reason(detail: str) -> str:
    """A short, countable reason from a status detail: its first clause, numbers as N."""
    return re.sub(r"\d+(\.\d+)?", "N", detail.split(":")[0])[:60]


def _candidate(text: str, settings: Settings, limits: object) -> str:
    extraction = extract_svg(text)
    if extraction.svg is None:
        return extraction.status.value
    checked = check_svg(extraction.svg, width=settings.size, height=settings.size, limits=limits)  # type: ignore[arg-type]
    if checked.status.value == "ok":
        return "ok"
    return f"{checked.status.value}:{','.join(checked.flags)}"


def report(verdicts: dict[str, list[dict[str, str]]]) -> str:
    """A markdown table per class plus the reasons, then the totals."""
    lines = [
        "| class | files | reference refused | rate | candidate refused | rate |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    examples: dict[tuple[str, str], str] = {}
    total = [0, 0, 0]
    for name, rows in verdicts.items():
        refused = [r for r in rows if r["reference"] != "ok"]
        cand = [r for r in rows if r["candidate"] != "ok"]
        for row in refused:
            reasons[name][row["reference"]] += 1
            examples.setdefault((name, row["reference"]), row["file"])
        for row in cand:
            reasons[name][f"candidate {row['candidate']}"] += 1
            examples.setdefault((name, f"candidate {row['candidate']}"), row["file"])
        n = len(rows)
        total = [total[0] + n, total[1] + len(refused), total[2] + len(cand)]
        lines.append(
            f"| {name} | {n} | {len(refused)} | {_pct(len(refused), n)} | {len(cand)} | {_pct(len(cand), n)} |"
        )
    lines.append(
        f"| **all** | {total[0]} | {total[1]} | {_pct(total[1], total[0])} | {total[2]} | {_pct(total[2], total[0])} |"
    )
    lines.append("")
    for name, counter in reasons.items():
        for reason, count in counter.most_common():
            lines.append(f"- {name}: {count} x `{reason}` (e.g. `{examples[(name, reason)]}`)")
    return "\n".join(lines)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "-"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("assemble", help="npm pack packages and keep their SVG files")
    build.add_argument("directory", type=Path)
    build.add_argument("packages", nargs="+")
    run = commands.add_parser("measure", help="false-rejection rate of a directory of SVG files")
    run.add_argument("directory", type=Path)
    run.add_argument("--per-class", type=int, default=None, metavar="N", help="sample N files per class")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--renderer", choices=["resvg", "cairosvg"], default="resvg")
    run.add_argument("--size", type=int, default=224)
    run.add_argument("--workers", type=int, default=2)
    run.add_argument("--json", type=Path, default=None, metavar="PATH", help="write every verdict here")
    args = parser.parse_args(argv)
    if args.command == "assemble":
        for package, count in assemble(args.directory, args.packages).items():
            print(f"{package}: {count} SVG files")
        return 0
    settings = Settings(renderer=args.renderer, size=args.size, workers=args.workers)
    verdicts = measure(args.directory, settings=settings, per_class=args.per_class, seed=args.seed)
    if args.json:
        args.json.write_text(json.dumps(verdicts, indent=1))
    print(report(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
