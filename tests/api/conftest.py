"""A real uvicorn server on a free loopback port, in a thread, per app under test; schemathesis against it."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI


def wait_for(url: str, *, timeout_s: float = 60, alive: Callable[[], bool] = lambda: True) -> None:
    """Poll ``url`` until it answers 200; fail if ``alive()`` turns false or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if not alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer 200")
        time.sleep(0.05)


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running(app: FastAPI, *, graceful_s: float | None = None) -> Iterator[str]:
    """Serve ``app`` over real HTTP until the block ends; yields its base URL.

    ``graceful_s``: how long shutdown waits for requests still in flight (uvicorn's default: forever).
    """
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=graceful_s)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    wait_for(f"{base}/healthz", alive=thread.is_alive)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=15)


SCHEMATHESIS_CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


def run_schemathesis(base: str, workdir: Path, *, max_examples: int, seed: int = 1, extra: Sequence[str] = ()) -> None:
    """Schemathesis' CLI against the running service at ``base``: no 5xx, every answer as /openapi.json says.

    A fixed seed and example count keep the run bounded and reproducible; ``workdir`` takes its
    cache and report, so nothing lands in the checkout.
    """
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{base}/openapi.json",
        "--checks",
        ",".join(SCHEMATHESIS_CHECKS),
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--phases",
        "examples,coverage,fuzzing",
        "--no-color",
        *extra,
    ]
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600)
    summary = "\n".join(line for line in done.stdout.splitlines() if line.strip())[-6000:]
    assert done.returncode == 0, f"schemathesis found problems (seed {seed}):\n{summary}\n{done.stderr[-2000:]}"
    assert f"Seed: {seed}" in done.stdout and " passed" in done.stdout, summary
