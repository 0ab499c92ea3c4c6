"""Real Redis and real `rlrf worker` processes for distributed-mode tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from services.reward_api.core.settings import Settings
from tests.api.conftest import free_port
from tests.conftest import REPO

SYSTEM_REDIS = "redis://127.0.0.1:6379/15"


def distributed_settings(redis_url: str, **overrides: object) -> Settings:
    """Settings for one test: its own queue, short limits so failure paths finish quickly."""
    base: dict[str, object] = {
        "backend": "celery",
        "redis_url": redis_url,
        "cpu_queue": f"rlrf.test.{uuid.uuid4().hex[:8]}",
        "gpu_queue": f"rlrf.test.gpu.{uuid.uuid4().hex[:8]}",
        "workers": 1,
        "render_timeout_s": 2.0,
        "celery_chunk_size": 4,
        "task_time_limit_s": 20.0,
        "visibility_timeout_s": 30.0,
        "request_deadline_s": 60.0,
    }
    return Settings(**{**base, **overrides})


def worker_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLRF_")}
    for name in (
        "backend",
        "redis_url",
        "cpu_queue",
        "workers",
        "render_timeout_s",
        "task_time_limit_s",
        "visibility_timeout_s",
        "worker_memory_mb",
        "gpu_queue",
        "dreamsim_dir",
        "clip_checkpoint",
        "clip_model_config",
    ):
        if getattr(settings, name) is not None:
            env[f"RLRF_{name.upper()}"] = str(getattr(settings, name))
    return env


@contextmanager
def workers(
    settings: Settings, count: int = 1, threads: int = 2, queue: str = "cpu", already: int = 0
) -> Iterator[list[subprocess.Popen[str]]]:
    """Start ``count`` `rlrf worker` processes on one of the settings' queues; wait for their pings.

    ``already``: workers of this test already running (they answer the same pings).
    """
    from services.reward_api.worker.celery_app import make_celery

    procs = []
    for i in range(count):
        cmd = [
            sys.executable,
            "-m",
            "services.reward_api.cli",
            "worker",
            "--queue",
            queue,
            "--threads",
            str(threads),
            "--name",
            f"w{i}-{uuid.uuid4().hex[:6]}@%h",
        ]
        procs.append(
            subprocess.Popen(
                cmd,
                cwd=REPO,
                env=worker_env(settings),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                text=True,
            )
        )
    app = make_celery(settings)
    deadline = time.monotonic() + 90
    while len(app.control.ping(timeout=0.5) or []) < count + already:
        assert time.monotonic() < deadline, "workers did not answer pings"
        assert all(p.poll() is None for p in procs), "a worker exited at start-up"
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture()
def system_redis() -> Iterator[str]:
    """Redis on 127.0.0.1:6379 (started by .ci/run when absent), database 15, emptied."""
    client = redis.Redis.from_url(SYSTEM_REDIS)
    client.ping()
    client.flushdb()
    yield SYSTEM_REDIS
    client.flushdb()


class PrivateRedis:
    """A redis-server of our own, so a test can stop and restart it without touching the shared one."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        cmd = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        for _ in range(200):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture()
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()
