"""Functions the sandbox tests run inside worker processes (importable by spawned children)."""

from __future__ import annotations

import ctypes
import os
import time
from typing import Any


def echo(context: Any, item: Any) -> tuple[Any, Any, int]:
    return context, item, os.getpid()


def misbehave(context: Any, item: str) -> str:
    if item == "hang":  # a slow SVG: the worker renders (burns CPU) past the limit
        end = time.monotonic() + 3600
        while time.monotonic() < end:
            pass
    elif item.startswith("nap:"):
        time.sleep(float(item.split(":")[1]))
    elif item == "stall":  # a worker that does not run (frozen, starved): not the item's fault
        time.sleep(3600)
    elif item == "segfault":
        ctypes.string_at(0)
    elif item == "abort":
        os.abort()
    elif item == "exit":
        os._exit(3)
    elif item.startswith("allocate:"):
        block = bytearray(int(item.split(":")[1]) * 1024 * 1024)
        return f"allocated {len(block)}"
    elif item == "raise":
        raise ValueError("a bug in our code")
    return f"ok {item}"
