"""Keep one ``rlrf worker`` alive: run it as a child and start it again when it dies.

Why: a Celery worker can exit on its own after a broker outage (kombu's Redis transport has raised
``AttributeError`` in ``restore_unacked`` on reconnect, logged as "Unrecoverable error"), and a
bare process has nothing to bring it back. Containers have their restart policy; this is the same
for ``rlrf worker`` run by hand or by a test. Restarts back off (1, 2, 4, ... 30 s); a child that
keeps dying within seconds of its start is given up on after ``max_quick_deaths`` tries, so a
broken install fails loudly instead of looping. SIGTERM and SIGINT are passed to the child (a
warm shutdown) and end the supervisor with the child's exit code.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger(__name__)


def supervise(command: Sequence[str], *, max_quick_deaths: int = 5, quick_s: float = 10.0) -> int:
    """Run ``command`` until it exits cleanly or we are told to stop; returns the exit code to use."""
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    quick_deaths, backoff = 0, 1.0
    while True:
        started = time.monotonic()
        child = subprocess.Popen(list(command))
        code = child.wait()
        if stopping or code == 0:
            return code
        lived = time.monotonic() - started
        quick_deaths = quick_deaths + 1 if lived < quick_s else 0
        if quick_deaths >= max_quick_deaths:
            log.error(
                "rlrf worker died %d times within %g s of starting (exit %s): giving up",
                quick_deaths,
                quick_s,
                code,
            )
            return code or 1
        backoff = 1.0 if lived >= quick_s else min(30.0, backoff * 2)
        log.warning("rlrf worker exited with %s after %.0f s; starting it again in %.0f s", code, lived, backoff)
        deadline = time.monotonic() + backoff
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.1)
        if stopping:
            return code
