"""Throughput of the reward pipeline against the naive RLRF/VFig reward loop, in one run.

Workload: every reference SVG of the corpus (``--data``, default ``<repo>/data/svg_dev``;
``--limit N`` keeps the first N by file name, ``--shuffle`` picks N at random instead) becomes one
rollout group of ``--group`` G candidates: the reference itself, then G-1 copies perturbed as text
(translate / rotate / scale / recolour / drop shapes / add a rect / combo; see ``bench/perturb.py``),
deterministically from ``--seed``. Each arm scores exactly the same candidates, at every ``--size``.

Arms:

  baseline  Today's naive reward code, one process, one core (``cv2.setNumThreads(1)``): per sample
            ``cairosvg.svg2png(output_width=S, output_height=S, background_color="white")`` -> PNG
            bytes -> ``PIL.Image.open(...).convert("RGB")`` -> numpy; pixel L2 on z-scored images,
            Canny(100, 200) + dilate 3x3 + GaussianBlur 13x13 edge L2, the length reward; the total
            weighted like the ``rlrf-im2svg`` profile (1, 1, 0.1). The reference is rendered again for
            every sample, as a per-(completion, solution) reward function does (``--baseline-ref
            group``: once per group instead).
  floor     Rendering only, no policy check, no decode, no metrics: the ``resvg`` binding in a
            ``multiprocessing`` spawn Pool of ``--workers`` processes, each task rendering one SVG
            to PNG bytes and returning their length. It renders what ours renders: each group's
            reference once plus its G candidates. The pool is started and warmed up before timing.
  ours      ``Pipeline.embedded(Settings(size=S, workers=W))``: one ``score_group`` call per group,
            with ``--concurrency`` groups in flight (1: in sequence; 4: as a trainer sending a
            step's groups concurrently, or concurrent HTTP requests). Before timing, W warm-up
            groups (references made unique with a comment, so nothing timed is cached) are scored
            concurrently to start every worker.
            Per-group latency p50/p99 is reported too.

  http      The same groups through real HTTP: ``rlrf serve`` (embedded) in its own process, the
            largest ``--concurrency`` of httpx clients here, JSON both ways. Compare with
            ``ours xC`` at the same concurrency (target: >= 0.9x).

  celery    Distributed mode on this machine: Redis on 127.0.0.1:6379 (db 14) and W `rlrf worker`
            processes with one render process each; the largest ``--concurrency`` of groups in
            flight through ``Pipeline.distributed``. Compare with ``ours xC`` (target: >= 0.8x).

``--renderers`` adds a single-process comparison of renderers on the first ``--renderers-limit``
references, each normalised to the canvas by ``check_svg(svg, width=S, height=S).document``: the
``resvg`` binding, the ``resvg-py`` package (``svg_to_bytes``; also with ``skip_system_fonts=True``)
and cairosvg, milliseconds per SVG (best of ``--renderers-repeat``), plus the pixel agreement of
resvg vs resvg-py (and cairosvg vs resvg), as mean absolute difference of the decoded images.

Output: tqdm progress bars on stderr; a markdown report on stdout (per size: arm, processes, samples,
renders, seconds, rewards/s, ratio vs baseline, ratio vs floor); ``--json PATH`` writes every raw
figure. A one-line WARNING is printed when ours and the baseline disagree on the rewards: the
reference scored against itself must give pixel_l2 = canny_l2 = 1 in both, and the other candidates
should agree up to renderer anti-aliasing (cairo vs resvg).

Examples:

  python bench/bench_pipeline.py                          # all 300 references, 224 and 512 px
  python bench/bench_pipeline.py --limit 20 --size 224    # a quick check
  python bench/bench_pipeline.py --size 224,512 --renderers --json bench/out/run.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

if __package__ in (None, ""):  # run as a script: make the repository root importable (bench.*)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.perturb import make_group

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "data/svg_dev"
DEFAULT_SIZES = (224, 512)
WEIGHTS = {"pixel_l2": 1.0, "canny_l2": 1.0, "length": 0.1}  # the rlrf-im2svg profile
IDENTITY_TOLERANCE = 1e-3  # the reference against itself must score 1 within this
AGREEMENT_TOLERANCE = 0.1  # mean |ours - baseline| per component, over candidates both scored
WHITE = (255, 255, 255, 255)

Group = tuple[str, list[str]]  # (reference, candidates)


@dataclass
class Arm:
    """One measured arm at one size."""

    arm: str
    processes: int
    samples: int  # candidates scored (rewards produced)
    renders: int  # SVG rasterisations done
    seconds: float
    group_latency_ms: list[float] = field(default_factory=list)
    note: str = ""
    failures: dict[str, int] = field(default_factory=dict)  # outcome -> count, for what did not score ok
    cpu_s: dict[str, float] = field(default_factory=dict)  # role -> CPU-seconds over the timed run
    api_threads_s: dict[str, float] = field(default_factory=dict)  # the API process's CPU-seconds by thread

    @property
    def rate(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("nan")

    @property
    def cpu_per_1000(self) -> float:
        """CPU-seconds (user + system, every process of the arm) per 1,000 rewards."""
        return 1e3 * sum(self.cpu_s.values()) / self.samples if self.cpu_s and self.samples else float("nan")


class CpuMeter:
    """CPU-seconds (user + system) of processes by role, between ``start()`` and ``stop()``.

    A role is a list of ``(pid, part)``: ``part`` "own" is that process alone; "children" is every
    live descendant plus what the kernel already charged to the process for descendants it reaped
    (``children_user``/``children_system``: render processes replaced mid-run still count).
    Processes born during the run count from zero. The roles are what a cluster bills: the API
    process (request threads, collector), its render processes, each worker's main process
    (Celery consumer, chunk threads, wire format) and its render processes, Redis.
    """

    def __init__(self, roles: dict[str, list[tuple[int, str]]]) -> None:
        import psutil

        self._psutil = psutil
        self.roles = roles
        self._start: dict[str, dict[int, float]] = {}

    def _sample(self, members: list[tuple[int, str]]) -> dict[int, float]:
        psutil = self._psutil
        seen: dict[int, float] = {}
        for pid, part in members:
            try:
                root = psutil.Process(pid)
                t = root.cpu_times()
                if part == "own":
                    seen[pid] = t.user + t.system
                    continue
                seen[-pid] = t.children_user + t.children_system  # reaped descendants, keyed apart
                for proc in root.children(recursive=True):
                    try:
                        c = proc.cpu_times()
                        seen[proc.pid] = c.user + c.system
                    except psutil.NoSuchProcess:
                        pass
            except psutil.NoSuchProcess:
                continue
        return seen

    def _threads(self) -> dict[int, float]:
        return {th.id: th.user_time + th.system_time for th in self._psutil.Process().threads()}

    def start(self) -> None:
        self._start = {role: self._sample(members) for role, members in self.roles.items()}
        self._threads_start = self._threads()

    def stop(self) -> dict[str, float]:
        out = {}
        for role, members in self.roles.items():
            end, begin = self._sample(members), self._start.get(role, {})
            out[role] = sum(max(0.0, v - begin.get(pid, 0.0)) for pid, v in end.items())
        # This process by thread: where the API's own share goes (collector, callers, dispatcher).
        names = {th.native_id: th.name.split("_")[0].rstrip("-0123456789") for th in threading.enumerate()}
        self.threads: dict[str, float] = {}
        for tid, cpu in self._threads().items():
            name = names.get(tid, "other")
            self.threads[name] = self.threads.get(name, 0.0) + max(0.0, cpu - self._threads_start.get(tid, 0.0))
        return out


@dataclass
class Scores:
    """Per-candidate components of one arm, in workload order (NaN where the arm did not score it)."""

    pixel: list[float] = field(default_factory=list)
    canny: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    ok: list[bool] = field(default_factory=list)
    status: list[str] = field(default_factory=list)


def _failures(scores: Scores) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in scores.status:
        if status != "ok":
            counts[status] = counts.get(status, 0) + 1
    return counts


# baseline: the naive loop ------------------------------------------------------------------------
def _naive_render(svg: str, size: int) -> np.ndarray:
    import cairosvg
    from PIL import Image

    png = cairosvg.svg2png(
        bytestring=svg.encode("utf-8"), output_width=size, output_height=size, background_color="white"
    )
    return np.asarray(Image.open(BytesIO(png)).convert("RGB"))


def _naive_l2(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float32)
    b = b.astype(np.float32)
    a = (a - a.mean()) / (a.std() + 1e-8)
    b = (b - b.mean()) / (b.std() + 1e-8)
    return float(np.clip(1.0 - np.mean((a - b) ** 2), -1.0, 1.0))


def _naive_edges(image: np.ndarray) -> np.ndarray:
    import cv2

    edges = cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 100, 200)
    edges = cv2.dilate(edges, np.ones((3, 3), np.uint8), iterations=1)
    return cv2.GaussianBlur(edges, (13, 13), 0)


def _naive_length(candidate: str, reference: str) -> float:
    length, ref = len(" ".join(candidate.split())), len(" ".join(reference.split()))
    if length < ref / 2:
        return -1.0
    return float(np.clip(1.0 - ((length - ref / 2) / ref) ** 2, -1.0, 1.0))


def naive_reward(
    candidate: str, reference: str, size: int, reference_image: np.ndarray | None = None
) -> dict[str, float]:
    """What a per-sample reward function does: render both, compare, weight. Failures score -1 each."""
    ref = reference_image if reference_image is not None else _naive_render(reference, size)
    length = _naive_length(candidate, reference)
    try:
        image = _naive_render(candidate, size)
    except Exception:
        return {"pixel_l2": -1.0, "canny_l2": -1.0, "length": length, "total": -2.0 + 0.1 * length, "ok": 0.0}
    pixel = _naive_l2(image, ref)
    canny = _naive_l2(_naive_edges(image), _naive_edges(ref))
    total = WEIGHTS["pixel_l2"] * pixel + WEIGHTS["canny_l2"] * canny + WEIGHTS["length"] * length
    return {"pixel_l2": pixel, "canny_l2": canny, "length": length, "total": total, "ok": 1.0}


def run_baseline(groups: Sequence[Group], size: int, ref_mode: str, progress: bool) -> tuple[Arm, Scores]:
    import cv2

    cv2.setNumThreads(1)
    _naive_render(groups[0][0], size)  # import cairosvg/PIL before timing, as any warm process has
    scores, latencies = Scores(), []
    samples = sum(len(c) for _, c in groups)
    with tqdm(total=samples, desc=f"baseline {size}px", unit="svg", file=sys.stderr, disable=not progress) as bar:
        started = time.perf_counter()
        for reference, candidates in groups:
            t0 = time.perf_counter()
            ref_image = _naive_render(reference, size) if ref_mode == "group" else None
            for candidate in candidates:
                r = naive_reward(candidate, reference, size, ref_image)
                scores.pixel.append(r["pixel_l2"])
                scores.canny.append(r["canny_l2"])
                scores.total.append(r["total"])
                scores.ok.append(bool(r["ok"]))
                scores.status.append("ok" if r["ok"] else "render_error")
            latencies.append(1e3 * (time.perf_counter() - t0))
            bar.update(len(candidates))
        seconds = time.perf_counter() - started
    renders = samples * 2 if ref_mode == "sample" else samples + len(groups)
    note = f"cairosvg + PIL + numpy/cv2, reference rendered once per {ref_mode}"
    return Arm("baseline", 1, samples, renders, seconds, latencies, note, _failures(scores)), scores


# floor: resvg only, in a process pool ----------------------------------------------------------
_FLOOR_OPTIONS: Any = None


def _floor_init() -> None:
    global _FLOOR_OPTIONS
    import resvg

    _FLOOR_OPTIONS = resvg.usvg.Options.default()


def _floor_render(task: tuple[str, int]) -> int:
    """Render one SVG to an S x S PNG; return its byte count (-1 if resvg refused it)."""
    import resvg

    svg, size = task
    try:
        tree = resvg.usvg.Tree.from_str(svg, _FLOOR_OPTIONS)
        w, h = tree.int_size()
        png = resvg.render(tree, (size / w, 0.0, 0.0, 0.0, size / h, 0.0), bg_size=(size, size), bg_color=WHITE)
    except BaseException as exc:  # pyo3 panics derive from BaseException
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return -1
    return len(png)


def run_floor(groups: Sequence[Group], size: int, workers: int, progress: bool) -> Arm:
    tasks = [(svg, size) for reference, candidates in groups for svg in (reference, *candidates)]
    chunksize = max(1, min(32, len(tasks) // (workers * 8)))
    samples = sum(len(c) for _, c in groups)
    failures = 0
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_floor_init) as pool:
        pool.map(_floor_render, [(groups[0][0], size)] * (4 * workers), chunksize=1)  # start + warm every worker
        with tqdm(total=len(tasks), desc=f"floor {size}px", unit="svg", file=sys.stderr, disable=not progress) as bar:
            started = time.perf_counter()
            for n in pool.imap_unordered(_floor_render, tasks, chunksize=chunksize):
                failures += n < 0
                bar.update()
            seconds = time.perf_counter() - started
    note = f"resvg binding → PNG bytes, spawn Pool({workers}), chunksize {chunksize}, reference + candidates"
    return Arm("floor", workers, samples, len(tasks), seconds, [], note, {"resvg_error": failures} if failures else {})


# ours -------------------------------------------------------------------------------------------
def run_ours(
    groups: Sequence[Group], size: int, workers: int, chunk_size: int | None, concurrency: int, progress: bool
) -> tuple[Arm, Scores]:
    from concurrent.futures import ThreadPoolExecutor

    from services.reward_api.core.results import GroupResult
    from services.reward_api.core.schemas import ReferenceIn, ScoreRequest
    from services.reward_api.core.settings import Settings
    from services.reward_api.pipeline import Pipeline

    overrides: dict[str, Any] = {"chunk_size": chunk_size} if chunk_size else {}
    settings = Settings(size=size, workers=workers, **overrides)
    scores, latencies = Scores(), []
    samples = sum(len(c) for _, c in groups)
    with Pipeline.embedded(settings) as pipeline:
        warm = [
            ScoreRequest(reference=ReferenceIn(svg=f"{ref}<!-- warm-up {i} -->"), completions=cands)
            for i, (ref, cands) in enumerate(list(groups)[: max(1, workers)])
        ]
        with ThreadPoolExecutor(len(warm)) as executor:
            list(executor.map(pipeline.score_group, warm))
        bar = tqdm(
            total=samples, desc=f"ours x{concurrency} {size}px", unit="svg", file=sys.stderr, disable=not progress
        )

        def score(group: Group) -> tuple[GroupResult, float]:
            reference, candidates = group
            t0 = time.perf_counter()
            result = pipeline.score_group(ScoreRequest(reference=ReferenceIn(svg=reference), completions=candidates))
            bar.update(len(candidates))
            return result, 1e3 * (time.perf_counter() - t0)

        # This process is the API (pipeline, request threads); its children are the render pool.
        me = os.getpid()
        meter = CpuMeter({"api": [(me, "own")], "api render processes": [(me, "children")]})
        with bar, ThreadPoolExecutor(concurrency) as callers:
            meter.start()
            started = time.perf_counter()
            outputs = list(callers.map(score, groups))
            seconds = time.perf_counter() - started
            cpu = meter.stop()
    for result, latency in outputs:
        latencies.append(latency)
        for r in result.results:
            ok = r.status.value == "ok"
            scores.pixel.append(r.components.get("pixel_l2", float("nan")) if ok else float("nan"))
            scores.canny.append(r.components.get("canny_l2", float("nan")) if ok else float("nan"))
            scores.total.append(float("nan") if r.reward is None else r.reward)
            scores.ok.append(ok)
            scores.status.append(r.status.value)
    mode = "groups in sequence" if concurrency == 1 else f"{concurrency} groups in flight (concurrent callers)"
    note = f"Pipeline.embedded, renderer {settings.renderer}, chunk_size {settings.chunk_size}, {mode}"
    name = f"ours x{concurrency}"
    arm = Arm(name, workers, samples, samples + len(groups), seconds, latencies, note, _failures(scores), cpu)
    arm.api_threads_s = meter.threads
    return arm, scores


def run_http(groups: Sequence[Group], size: int, workers: int, concurrency: int, progress: bool) -> Arm:
    """The same groups through real HTTP: ``rlrf serve`` in its own process, httpx clients here."""
    import os
    import socket
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "RLRF_SIZE": str(size)}
    cmd = [sys.executable, "-m", "services.reward_api.cli", "serve", "--port", str(port), "--workers", str(workers)]
    server = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    samples = sum(len(c) for _, c in groups)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("rlrf serve did not become ready")
            time.sleep(0.1)
        local = threading.local()

        def post(group: Group, warm: str = "") -> float:
            if not hasattr(local, "client"):
                local.client = httpx.Client(timeout=300)
            reference, candidates = group
            t0 = time.perf_counter()
            response = local.client.post(
                f"{url}/score", json={"reference": {"svg": reference + warm}, "completions": candidates}
            )
            response.raise_for_status()
            return 1e3 * (time.perf_counter() - t0)

        with ThreadPoolExecutor(concurrency) as callers:
            list(callers.map(lambda g: post(g, "<!-- warm-up -->"), list(groups)[: max(1, workers)]))
            bar = tqdm(
                total=samples, desc=f"http x{concurrency} {size}px", unit="svg", file=sys.stderr, disable=not progress
            )
            with bar:
                started = time.perf_counter()
                for latency in callers.map(post, groups):
                    latencies.append(latency)
                    bar.update(len(groups[0][1]))
                seconds = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    note = f"rlrf serve (embedded) in its own process, {concurrency} httpx clients in flight, JSON both ways"
    return Arm(f"http x{concurrency}", workers, samples, samples + len(groups), seconds, latencies, note, {})


def _private_redis() -> tuple[Any, str] | None:
    """A redis-server of the benchmark's own (its CPU is then the benchmark's alone), or None."""
    import shutil
    import socket
    import subprocess
    import tempfile

    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        return None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    directory = tempfile.mkdtemp(prefix="rlrf-bench-redis-")
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(250):
        try:
            redis.Redis.from_url(url).ping()
            return proc, url
        except redis.ConnectionError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("private redis-server did not start")


def run_celery(
    groups: Sequence[Group], size: int, workers: int, concurrency: int, progress: bool, chunk: int | None = None
) -> Arm:
    """Distributed mode on this machine: a private Redis (else 127.0.0.1:6379/14) and ``workers``
    `rlrf worker` processes with one render process each, so the render processes match ours."""
    import signal
    import subprocess
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    import redis

    from services.reward_api.core.schemas import ReferenceIn, ScoreRequest
    from services.reward_api.core.settings import Settings
    from services.reward_api.pipeline import Pipeline
    from services.reward_api.worker.celery_app import make_celery

    private = _private_redis()
    url = private[1] if private else "redis://127.0.0.1:6379/14"
    redis.Redis.from_url(url).flushdb()
    overrides: dict[str, Any] = {"celery_chunk_size": chunk} if chunk else {}
    settings = Settings(
        size=size, backend="celery", redis_url=url, cpu_queue=f"rlrf.bench.{uuid.uuid4().hex[:6]}", **overrides
    )
    env = {**os.environ, "RLRF_REDIS_URL": url, "RLRF_CPU_QUEUE": settings.cpu_queue, "RLRF_WORKERS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "services.reward_api.cli", "worker", "--threads", "2", "--name", f"bench{i}@%h"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for i in range(workers)
    ]
    latencies: list[float] = []
    samples = sum(len(c) for _, c in groups)
    try:
        app = make_celery(settings)
        deadline = time.monotonic() + 120
        while len(app.control.ping(timeout=0.5) or []) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError("celery workers did not start")
        with Pipeline.distributed(settings) as pipeline:

            def score(group: Group, warm: str = "") -> float:
                reference, candidates = group
                t0 = time.perf_counter()
                pipeline.score_group(ScoreRequest(reference=ReferenceIn(svg=reference + warm), completions=candidates))
                return 1e3 * (time.perf_counter() - t0)

            with ThreadPoolExecutor(concurrency) as callers:
                list(callers.map(lambda g: score(g, "<!-- warm-up -->"), list(groups)[: max(2, workers)]))
                bar = tqdm(
                    total=samples,
                    desc=f"celery x{concurrency} {size}px",
                    unit="svg",
                    file=sys.stderr,
                    disable=not progress,
                )
                roles = {
                    "api": [(os.getpid(), "own")],
                    "worker main processes": [(proc.pid, "own") for proc in procs],
                    "worker render processes": [(proc.pid, "children") for proc in procs],
                }
                if private:
                    roles["redis"] = [(private[0].pid, "own")]
                meter = CpuMeter(roles)
                with bar:
                    meter.start()
                    started = time.perf_counter()
                    for latency in callers.map(score, groups):
                        latencies.append(latency)
                        bar.update(len(groups[0][1]))
                    seconds = time.perf_counter() - started
                    cpu = meter.stop()
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
        if private:
            private[0].kill()
            private[0].wait(timeout=10)
    note = (
        f"Pipeline.distributed: {'a private' if private else 'the shared (CPU not counted)'} Redis + {workers} "
        f"`rlrf worker` processes (1 render process each), {concurrency} groups in flight, "
        f"chunks of {settings.celery_chunk_size}"
    )
    name = f"celery x{concurrency}" + (f" chunk {chunk}" if chunk else "")
    arm = Arm(name, workers, samples, samples + len(groups), seconds, latencies, note, {}, cpu)
    arm.api_threads_s = meter.threads
    return arm


# agreement of ours and the baseline --------------------------------------------------------------
def agreement(ours: Scores, base: Scores, groups: Sequence[Group]) -> dict[str, Any]:
    """Identity check (candidate 0 is the reference) and mean |difference| where both scored."""
    firsts, i = [], 0
    for _, candidates in groups:
        firsts.append(i)
        i += len(candidates)
    o_pix, b_pix = np.array(ours.pixel), np.array(base.pixel)
    o_can, b_can = np.array(ours.canny), np.array(base.canny)
    both = np.array(ours.ok) & np.array(base.ok)

    def identity(pix: np.ndarray, can: np.ndarray) -> int:
        return int(
            sum(not (abs(pix[j] - 1) <= IDENTITY_TOLERANCE and abs(can[j] - 1) <= IDENTITY_TOLERANCE) for j in firsts)
        )

    out: dict[str, Any] = {
        "identity_groups": len(firsts),
        "identity_failures_ours": identity(o_pix, o_can),
        "identity_failures_baseline": identity(b_pix, b_can),
        "compared": int(both.sum()),
        "ours_not_ok": int((~np.array(ours.ok)).sum()),
        "baseline_not_ok": int((~np.array(base.ok)).sum()),
    }
    for name, o, b in (("pixel_l2", o_pix, b_pix), ("canny_l2", o_can, b_can)):
        d = np.abs(o[both] - b[both])
        out[f"{name}_mean_abs_diff"] = float(d.mean()) if d.size else float("nan")
        out[f"{name}_max_abs_diff"] = float(d.max()) if d.size else float("nan")
        corr = (
            np.corrcoef(o[both], b[both])[0, 1]
            if d.size > 2 and o[both].std() > 0 and b[both].std() > 0
            else float("nan")
        )
        out[f"{name}_pearson"] = float(corr)
    out["ok"] = (
        out["identity_failures_ours"] == 0
        and out["identity_failures_baseline"] == 0
        and out["pixel_l2_mean_abs_diff"] <= AGREEMENT_TOLERANCE
        and out["canny_l2_mean_abs_diff"] <= AGREEMENT_TOLERANCE
    )
    return out


# renderers --------------------------------------------------------------------------------------
def run_renderers(references: Sequence[str], sizes: Iterable[int], repeat: int, progress: bool) -> dict[str, Any]:
    """Single-process ms/SVG of resvg (binding), resvg-py and cairosvg on normalised documents."""
    import cairosvg
    import cv2
    import resvg
    import resvg_py

    from services.reward_api.svg.policy import PolicyLimits, check_svg

    cv2.setNumThreads(1)
    options = resvg.usvg.Options.default()

    def binding(doc: str, s: int) -> bytes:
        tree = resvg.usvg.Tree.from_str(doc, options)
        w, h = tree.int_size()
        return bytes(resvg.render(tree, (s / w, 0.0, 0.0, 0.0, s / h, 0.0), bg_size=(s, s), bg_color=WHITE))

    def package(doc: str, s: int) -> bytes:
        return bytes(resvg_py.svg_to_bytes(svg_string=doc, width=s, height=s, background="#ffffff"))

    def package_no_fonts(doc: str, s: int) -> bytes:
        return bytes(
            resvg_py.svg_to_bytes(svg_string=doc, width=s, height=s, background="#ffffff", skip_system_fonts=True)
        )

    def cairo(doc: str, s: int) -> bytes:
        return bytes(
            cairosvg.svg2png(bytestring=doc.encode("utf-8"), output_width=s, output_height=s, background_color="white")
        )

    renderers = {
        "resvg (binding)": binding,
        "resvg-py": package,
        "resvg-py skip_system_fonts": package_no_fonts,
        "cairosvg": cairo,
    }

    def decode(png: bytes) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).astype(np.int16)

    out: dict[str, Any] = {"svgs": len(references), "repeat": repeat, "sizes": {}}
    limits = PolicyLimits(reject_embedded_raster=False)
    for size in sizes:
        docs = [check_svg(svg, width=size, height=size, limits=limits).document for svg in references]
        ms: dict[str, list[float]] = {name: [] for name in renderers}
        mad_py, mad_cairo = [], []
        for fn in renderers.values():  # first-call costs (imports, caches) out of the timings
            fn(docs[0] or "", size)
        for doc in tqdm(docs, desc=f"renderers {size}px", unit="svg", file=sys.stderr, disable=not progress):
            if doc is None:
                continue
            pngs: dict[str, bytes] = {}
            for name, fn in renderers.items():
                best = float("inf")
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    pngs[name] = fn(doc, size)
                    best = min(best, time.perf_counter() - t0)
                ms[name].append(1e3 * best)
            ref = decode(pngs["resvg (binding)"])
            mad_py.append(float(np.abs(ref - decode(pngs["resvg-py"])).mean()))
            mad_cairo.append(float(np.abs(ref - decode(pngs["cairosvg"])).mean()))
        out["sizes"][str(size)] = {
            "ms_per_svg": ms,
            "mad_resvg_vs_resvg_py": mad_py,
            "mad_resvg_vs_cairosvg": mad_cairo,
        }
    return out


# report -------------------------------------------------------------------------------------------
def _ratio(a: float, b: float | None) -> str:
    return f"{a / b:.2f}×" if b else "–"


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def report_size(size: int, arms: list[Arm], agree: dict[str, Any] | None, groups: int, group: int) -> str:
    by_name = {a.arm: a for a in arms}
    base = by_name.get("baseline")
    floor = by_name.get("floor")
    lines = [
        f"## {size} px: {groups} groups × {group} candidates = {groups * group} samples",
        "",
        "| arm | processes | samples | renders | seconds | rewards/s | CPU-s / 1000 rewards | vs baseline | vs floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for a in arms:
        cpu = f"{a.cpu_per_1000:.1f}" if a.cpu_s else "–"
        lines.append(
            f"| {a.arm} | {a.processes} | {a.samples} | {a.renders} | {a.seconds:.2f} | {a.rate:.1f} | {cpu} "
            f"| {_ratio(a.rate, base.rate if base else None)} | {_ratio(a.rate, floor.rate if floor else None)} |"
        )
    lines.append("")
    for a in arms:
        if a.cpu_s:
            parts = ", ".join(f"{role} {1e3 * s / a.samples:.1f}" for role, s in a.cpu_s.items())
            lines.append(f"- {a.arm} CPU-s per 1000 rewards by process: {parts}")
        if a.api_threads_s:
            busy = sorted(a.api_threads_s.items(), key=lambda kv: -kv[1])
            parts = ", ".join(f"{name} {1e3 * s / a.samples:.2f}" for name, s in busy if s > 0)
            lines.append(f"  - of which the api process by thread: {parts}")
    for a in arms:
        latency = ""
        if a.group_latency_ms:
            p50, p99 = _percentile(a.group_latency_ms, 50), _percentile(a.group_latency_ms, 99)
            latency = f"; per-group latency p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        failed = "; not ok: " + ", ".join(f"{n} {k}" for k, n in sorted(a.failures.items())) if a.failures else ""
        lines.append(f"- {a.arm}: {a.note}{latency}{failed}")
    if agree is not None:
        pix = {k: agree[f"pixel_l2_{k}"] for k in ("mean_abs_diff", "max_abs_diff", "pearson")}
        can = {k: agree[f"canny_l2_{k}"] for k in ("mean_abs_diff", "max_abs_diff", "pearson")}
        lines.append(
            f"- ours vs baseline on {agree['compared']} candidates both scored: mean |Δ| "
            f"pixel_l2 {pix['mean_abs_diff']:.4f} (max {pix['max_abs_diff']:.3f}, r={pix['pearson']:.3f}), "
            f"canny_l2 {can['mean_abs_diff']:.4f} (max {can['max_abs_diff']:.3f}, r={can['pearson']:.3f}); "
            f"reference vs itself = 1: failures ours {agree['identity_failures_ours']}, "
            f"baseline {agree['identity_failures_baseline']} of {agree['identity_groups']}"
        )
    return "\n".join(lines)


def report_renderers(data: dict[str, Any]) -> str:
    lines = [
        f"## Renderers, single process, {data['svgs']} SVGs normalised by check_svg, best of {data['repeat']}",
        "",
        "| size | renderer | mean ms/SVG | p50 ms | p99 ms | vs resvg binding (time) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for size, entry in data["sizes"].items():
        base = float(np.mean(entry["ms_per_svg"]["resvg (binding)"]))
        for name, values in entry["ms_per_svg"].items():
            mean, p50, p99 = float(np.mean(values)), _percentile(values, 50), _percentile(values, 99)
            lines.append(f"| {size} | {name} | {mean:.2f} | {p50:.2f} | {p99:.2f} | {mean / base:.2f}× |")
    lines.append("")
    for size, entry in data["sizes"].items():
        py, ca = entry["mad_resvg_vs_resvg_py"], entry["mad_resvg_vs_cairosvg"]
        lines.append(
            f"- {size} px pixel agreement (mean |Δ| of BGR uint8, 0-255): resvg vs resvg-py mean {np.mean(py):.4f}, "
            f"max {np.max(py):.4f}, identical on {sum(v == 0 for v in py)}/{len(py)}; "
            f"resvg vs cairosvg mean {np.mean(ca):.3f}, max {np.max(ca):.3f}"
        )
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("resvg", "resvg-py", "cairosvg", "opencv-python-headless", "pillow", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "versions": versions,
    }


# main ---------------------------------------------------------------------------------------------
def _finite(value: Any) -> Any:
    """NaN/inf to null, recursively, so the JSON is strict."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size or list of sizes: {text!r}") from None
    if not sizes or any(s < 16 or s > 1024 for s in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be 16..1024: {text!r}")
    return sizes


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of whole numbers: {text!r}") from None
    if not counts or any(c < 1 for c in counts):
        raise argparse.ArgumentTypeError(f"counts must be >= 1: {text!r}")
    return counts


def _arms(text: str) -> list[str]:
    arms = [a for a in text.replace(",", " ").split() if a != "none"]
    unknown = set(arms) - {"baseline", "floor", "ours", "http", "celery"}
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown arm(s): {', '.join(sorted(unknown))}")
    return arms


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_pipeline.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="folder of reference *.svg (default: %(default)s)"
    )
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="use only N references (default: all)")
    parser.add_argument(
        "--shuffle", action="store_true", help="pick the references at random (seeded) instead of by file name"
    )
    parser.add_argument(
        "--group", type=int, default=8, metavar="G", help="candidates per group, the reference included (default: 8)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the perturbations and of --shuffle (default: 0)")
    parser.add_argument(
        "--size",
        type=_sizes,
        action="append",
        metavar="S",
        help="canvas side in px; repeatable or comma-separated (default: 224 and 512)",
    )
    parser.add_argument("--workers", type=int, default=2, metavar="W", help="processes of floor and ours (default: 2)")
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="Settings.chunk_size of ours (default: the Settings default)"
    )
    parser.add_argument(
        "--concurrency",
        type=_counts,
        default=[1, 4],
        help="groups in flight in ours, comma list: 1 = groups in sequence; a trainer sends a step's groups "
        "concurrently (default: 1,4)",
    )
    parser.add_argument(
        "--arms",
        type=_arms,
        default=["baseline", "floor", "ours", "http", "celery"],
        help="comma list of baseline,floor,ours,http,celery, or none",
    )
    parser.add_argument(
        "--baseline-ref",
        choices=("sample", "group"),
        default="sample",
        help="baseline renders the reference for every sample (naive code, default) or once per group",
    )
    parser.add_argument("--renderers", action="store_true", help="also compare resvg, resvg-py and cairosvg")
    parser.add_argument(
        "--renderers-limit", type=int, default=100, metavar="N", help="references for --renderers (default: 100)"
    )
    parser.add_argument(
        "--renderers-repeat", type=int, default=3, metavar="R", help="timings per SVG, best kept (default: 3)"
    )
    parser.add_argument(
        "--celery-chunk",
        type=_counts,
        default=[],
        metavar="N[,N]",
        help="also run the celery arm with these celery_chunk_size values (per-chunk overhead)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the raw figures as JSON here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    args.size = sorted({s for chunk in args.size for s in chunk}) if args.size else list(DEFAULT_SIZES)
    if args.group < 1 or args.workers < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--group, --workers and --limit must be positive")
    return args


def load_references(data: Path, limit: int | None, shuffle: bool, seed: int) -> list[tuple[str, str]]:
    files = sorted(data.glob("*.svg"))
    if not files:
        raise SystemExit(f"no *.svg under {data} (see --data)")
    if shuffle:
        random.Random(seed).shuffle(files)
    return [(f.name, f.read_text(encoding="utf-8")) for f in files[:limit]]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    progress = not args.no_progress
    references = load_references(args.data, args.limit, args.shuffle, args.seed)
    groups: list[Group] = [(svg, make_group(svg, args.group, seed=args.seed, name=name)) for name, svg in references]
    env = environment()
    raw: dict[str, Any] = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "environment": env,
    }
    raw["sizes"] = {}
    print("# rlrf reward pipeline benchmark\n")
    print(
        f"{len(groups)} references from {args.data}, G={args.group} "
        f"(reference + {args.group - 1} perturbed, seed {args.seed}); "
        f"workers {args.workers}; {env['cpus_usable']} usable CPUs; Python {env['python']}; "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        + "\n",
        flush=True,
    )
    warnings = []
    for size in args.size:
        arms: list[Arm] = []
        base_scores = ours_scores = None
        if "baseline" in args.arms:
            arm, base_scores = run_baseline(groups, size, args.baseline_ref, progress)
            arms.append(arm)
        if "floor" in args.arms:
            arms.append(run_floor(groups, size, args.workers, progress))
        if "ours" in args.arms:
            for concurrency in args.concurrency:
                arm, ours_scores = run_ours(groups, size, args.workers, args.chunk_size, concurrency, progress)
                arms.append(arm)
        if "http" in args.arms:
            arms.append(run_http(groups, size, args.workers, max(args.concurrency), progress))
        if "celery" in args.arms:
            arms.append(run_celery(groups, size, args.workers, max(args.concurrency), progress))
            for chunk in args.celery_chunk:
                arms.append(run_celery(groups, size, args.workers, max(args.concurrency), progress, chunk))
        agree = (
            agreement(ours_scores, base_scores, groups) if base_scores is not None and ours_scores is not None else None
        )
        raw["sizes"][str(size)] = {
            "arms": [{**asdict(a), "rewards_per_s": a.rate, "cpu_s_per_1000": a.cpu_per_1000} for a in arms],
            "agreement": agree,
            "scores": {
                name: asdict(s) for name, s in (("baseline", base_scores), ("ours", ours_scores)) if s is not None
            },
        }
        if arms:
            print(report_size(size, arms, agree, len(groups), args.group) + "\n", flush=True)
        if agree is not None and not agree["ok"]:
            warnings.append(
                f"WARNING: {size} px: ours and baseline disagree on the rewards (reference vs itself != 1: "
                f"ours {agree['identity_failures_ours']}, baseline {agree['identity_failures_baseline']}; "
                f"mean |Δ| pixel_l2 {agree['pixel_l2_mean_abs_diff']:.3f}, "
                f"canny_l2 {agree['canny_l2_mean_abs_diff']:.3f}; tolerance {AGREEMENT_TOLERANCE})"
            )
            print(warnings[-1] + "\n", flush=True)
    if args.renderers:
        subset = [svg for _, svg in references[: args.renderers_limit]]
        raw["renderers"] = run_renderers(subset, args.size, args.renderers_repeat, progress)
        print(report_renderers(raw["renderers"]) + "\n", flush=True)
    raw["warnings"] = warnings
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_finite(raw), indent=1))
        print(f"raw figures written to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
