"""The ``rlrf`` command, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

EXAMPLES = REPO / "examples"


def _rlrf(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "services.reward_api.cli", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_score_examples_json() -> None:
    candidates = sorted((EXAMPLES / "candidates").glob("*.txt"))
    proc = _rlrf("score", "--reference", str(EXAMPLES / "reference.svg"), "--json", *map(str, candidates))
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    by_name = {path.stem: result for path, result in zip(candidates, results)}
    assert set(results[0]) == {"reward", "components", "status", "flags", "detail"}
    assert by_name["01_exact"]["components"]["pixel_l2"] == 1.0 and by_name["01_exact"]["status"] == "ok"
    assert by_name["02_recoloured"]["reward"] < by_name["01_exact"]["reward"]
    assert "length_collapse" in by_name["04_collapsed"]["flags"]
    assert "tiny_viewbox" in by_name["05_tiny_viewbox"]["flags"]
    assert by_name["06_truncated"]["status"] == "truncated"
    assert by_name["07_reads_a_file"]["status"] == "rejected"
    assert by_name["07_reads_a_file"]["flags"] == ["external_href"]
    assert by_name["08_prose_only"]["status"] == "no_svg"


def test_score_table_png_reference_and_options(tmp_path: Path) -> None:
    import cv2

    from services.reward_api.core.schemas import ReferenceIn
    from services.reward_api.core.settings import Settings
    from services.reward_api.pipeline import Pipeline

    with Pipeline.embedded(Settings(workers=1, size=128)) as pipeline:
        canvas = pipeline.prepare_reference(ReferenceIn(svg=(EXAMPLES / "reference.svg").read_text())).canvas
    png = tmp_path / "reference.png"
    cv2.imwrite(str(png), canvas.image)
    candidate = EXAMPLES / "candidates" / "01_exact.txt"
    proc = _rlrf(
        "score",
        "--reference",
        str(png),
        "--size",
        "128",
        "--renderer",
        "cairosvg",
        "--weight",
        "format=1",
        str(candidate),
    )
    assert proc.returncode == 0, proc.stderr
    header, row = proc.stdout.splitlines()
    assert header.split() == ["candidate", "reward", "canny_l2", "format", "pixel_l2", "status", "flags"]
    assert row.split()[5] == "ok" and float(row.split()[4]) > 0.95


def test_help_and_errors(tmp_path: Path) -> None:
    help_text = _rlrf("score", "--help")
    assert (
        help_text.returncode == 0
        and "--reference" in help_text.stdout
        and "raw model output" in _rlrf("--help").stdout + help_text.stdout
    )
    broken = tmp_path / "broken.svg"
    broken.write_text("<svg><rect")
    proc = _rlrf("score", "--reference", str(broken), str(EXAMPLES / "candidates" / "01_exact.txt"))
    assert proc.returncode == 2 and "reference SVG is truncated" in proc.stderr  # as a candidate would be
    bad_weight = _rlrf("score", "--reference", str(broken), "--weight", "nope=1", str(broken))
    assert bad_weight.returncode == 2 and "unknown component 'nope'" in bad_weight.stderr


def test_serve_starts_the_embedded_service() -> None:
    """`rlrf serve` (what `make serve` runs) answers /readyz and scores over HTTP, then stops on SIGTERM."""
    import signal
    import socket

    import httpx

    from tests.api.conftest import wait_for

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "services.reward_api.cli", "serve", "--port", str(port), "--workers", "1"]
    server = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", alive=lambda: server.poll() is None)
        reference = (EXAMPLES / "reference.svg").read_text()
        body = {"reference": {"svg": reference}, "completions": [reference]}
        scored = httpx.post(f"http://127.0.0.1:{port}/score", json=body, timeout=60).json()
        assert scored["results"][0]["status"] == "ok"
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    assert server.returncode in (0, -signal.SIGTERM), output  # uvicorn re-raises the signal it handled
    assert "Application startup complete" in output and "Application shutdown complete" in output
