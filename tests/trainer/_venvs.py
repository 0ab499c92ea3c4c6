"""The trainers' own virtual environments (scripts/trainer-venvs.sh) and a way to run code in them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def venv_python(name: str) -> Path:
    """``.venv-<name>/bin/python``; skipped locally when not built, a failure in CI."""
    python = REPO / f".venv-{name}" / "bin" / "python"
    if not python.exists():
        message = f".venv-{name} is not built: run `bash scripts/trainer-venvs.sh {name}`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return python


def run_json(name: str, script: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Any:
    """Run ``script`` with that venv's python (our checkout on PYTHONPATH); parse its ``RESULT`` line."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    environment.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        [str(venv_python(name)), str(script), *args],
        env=environment,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"{script.name} {args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return json.loads(lines[-1][len("RESULT ") :])
