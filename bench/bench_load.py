"""Load on the HTTP service: rewards/s and group latency under concurrent trainer clients, and what a
hostile neighbour costs them.

``rlrf serve`` (embedded, its defaults unless ``--workers``/``--max-inflight``) runs in its own process.
Each client is a loop that POSTs one 64-rollout group at a time (a svg_dev reference and 63 perturbed
copies, ``bench/perturb.py``) and, on 429, waits the ``Retry-After`` it was given and sends it again
(the latency it reports includes those waits: what a trainer sees). Scenarios, in one run:

  clients=N          N clients, ``--groups`` groups each.
  N + hostile        the same N clients while one more client sends groups whose every SVG runs to
                     the render time limit (a huge filter region): the normal clients' latency shows
                     whether a slow group costs its neighbours (round robin) or only itself.

Example (the README's load table)::

    .venv/bin/python bench/bench_load.py --clients 8,32 --groups 4 --json bench/out/load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.perturb import make_group  # noqa: E402

DEFAULT_DATA = REPO / "data/svg_dev"
HOSTILE = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100"><filter id="f" x="-1e6" y="-1e6" '
    'width="2e6" height="2e6" filterUnits="userSpaceOnUse"><feGaussianBlur stdDeviation="1e4"/>'
    '<feMorphology radius="1e4"/></filter><rect width="50" height="50" filter="url(#f)"/></svg>'
)


@dataclass
class Scenario:
    name: str
    clients: int
    groups: int = 0
    rollouts: int = 0
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    refused_429: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def row(self) -> str:
        lat = sorted(self.latencies_s)
        p50 = statistics.median(lat) if lat else float("nan")
        p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))] if lat else float("nan")
        rate = self.rollouts / self.seconds if self.seconds else float("nan")
        not_ok = {k: v for k, v in self.statuses.items() if k != "ok"}
        return (
            f"| {self.name} | {self.clients} | {self.groups} | {rate:.1f} | {1e3 * p50:.0f} | {1e3 * p99:.0f} | "
            f"{self.refused_429} | {', '.join(f'{k} {v}' for k, v in sorted(not_ok.items())) or '-'} |"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLRF_")}
    env.update({"RLRF_PORT": str(port), "RLRF_DASHBOARD_GROUPS": "0"})
    if args.max_inflight:
        env["RLRF_MAX_INFLIGHT_ROLLOUTS"] = str(args.max_inflight)
    cmd = [sys.executable, "-m", "services.reward_api.cli", "serve", "--workers", str(args.workers)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("rlrf serve did not become ready within 120 s")


async def _client(
    http: httpx.AsyncClient, url: str, payloads: list[dict[str, Any]], scenario: Scenario, record: bool
) -> None:
    for payload in payloads:
        started = time.monotonic()
        while True:
            response = await http.post(f"{url}/score", json=payload)
            if response.status_code != 429:
                break
            if record:
                scenario.refused_429 += 1
            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
        response.raise_for_status()
        if not record:
            continue
        scenario.latencies_s.append(time.monotonic() - started)
        scenario.groups += 1
        for result in response.json()["results"]:
            scenario.rollouts += 1
            scenario.statuses[result["status"]] = scenario.statuses.get(result["status"], 0) + 1


async def _run(url: str, scenario: Scenario, payloads: list[list[dict[str, Any]]], hostile: bool) -> None:
    limits = httpx.Limits(max_connections=scenario.clients + 2)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        neighbour = None
        if hostile:
            bad = {"reference": payloads[0][0]["reference"], "completions": [HOSTILE] * 64}
            neighbour = asyncio.create_task(_client(http, url, [bad] * 4, scenario, record=False))
            await asyncio.sleep(0.5)
        started = time.monotonic()
        await asyncio.gather(*(_client(http, url, p, scenario, record=True) for p in payloads))
        scenario.seconds = time.monotonic() - started
        if neighbour is not None:
            neighbour.cancel()


def _payloads(files: list[Path], clients: int, groups: int, offset: int) -> list[list[dict[str, Any]]]:
    out = []
    for c in range(clients):
        mine = []
        for g in range(groups):
            path = files[(offset + c * groups + g) % len(files)]
            svg = path.read_text()
            # A comment makes every reference unique, so the reference cache never hides a render.
            reference = f"{svg}<!-- load {offset} {c} {g} -->"
            mine.append({"reference": {"svg": reference}, "completions": make_group(svg, 64, seed=g, name=path.name)})
        out.append(mine)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="8,32", help="comma-separated client counts (default 8,32)")
    parser.add_argument("--groups", type=int, default=4, help="64-rollout groups per client (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="render processes of the server (default 2)")
    parser.add_argument("--max-inflight", type=int, help="RLRF_MAX_INFLIGHT_ROLLOUTS for the server")
    parser.add_argument("--no-hostile", action="store_true", help="skip the hostile-neighbour scenario")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="directory of reference SVGs")
    parser.add_argument("--json", type=Path, help="write the scenarios here")
    args = parser.parse_args(argv)
    files = sorted(args.data.glob("*.svg"))
    counts = [int(c) for c in args.clients.split(",")]
    proc, url = _start_server(args)
    scenarios: list[Scenario] = []
    try:
        offset = 0
        plans = [(n, False) for n in counts] + ([] if args.no_hostile else [(counts[0], True)])
        for n, hostile in plans:
            scenario = Scenario(f"{n} clients" + (" + 1 hostile" if hostile else ""), n)
            payloads = _payloads(files, n, args.groups, offset)
            offset += n * args.groups
            print(f"running {scenario.name} ({n * args.groups} groups of 64) ...", file=sys.stderr, flush=True)
            asyncio.run(_run(url, scenario, payloads, hostile))
            scenarios.append(scenario)
            if hostile:  # the neighbour's last group may still be rendering: start the next scenario clean
                proc.kill()
                proc.wait()
                proc, url = _start_server(args)
    finally:
        proc.kill()
        proc.wait()
    print("| scenario | clients | groups | rewards/s | p50 group ms | p99 group ms | 429s | not ok |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for scenario in scenarios:
        print(scenario.row())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(s) for s in scenarios], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
