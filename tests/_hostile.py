"""Hostile SVGs written by the tests, and probes that prove nothing was opened or connected to."""

from __future__ import annotations

import base64
import ctypes
import os
import socket
import struct
import threading
import zlib
from pathlib import Path

NS = 'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
GOOD = f'<svg {NS} viewBox="0 0 10 10"><circle cx="5" cy="5" r="4" fill="#c33"/></svg>'


def billion_laughs() -> str:
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)
    )
    return f'<?xml version="1.0"?><!DOCTYPE svg [{entities}]><svg {NS}><text>&lol9;</text></svg>'


def xxe(target: str) -> str:
    return f'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "{target}">]><svg {NS}><text>&x;</text></svg>'


def image_href(href: str) -> str:
    return f'<svg {NS} viewBox="0 0 10 10"><image href="{href}" width="10" height="10"/></svg>'


def use_bomb(levels: int = 12) -> str:
    defs = ['<g id="l0"><path d="M0 0h1v1z"/></g>']
    for i in range(1, levels):
        defs.append(f'<g id="l{i}">' + "".join(f'<use href="#l{i - 1}" x="{k}"/>' for k in range(10)) + "</g>")
    return f'<svg {NS} viewBox="0 0 100 100"><defs>{"".join(defs)}</defs><use href="#l{levels - 1}"/></svg>'


def deep_nesting(depth: int = 100_000) -> str:
    return f"<svg {NS}>" + "<g>" * depth + '<rect width="5" height="5"/>' + "</g>" * depth + "</svg>"


def huge_path(megabytes: float = 5) -> str:
    segments = int(megabytes * 1024 * 1024 / 10)
    return f'<svg {NS} viewBox="0 0 100 100"><path d="M0 0' + " L1 1 L2 0" * segments + '"/></svg>'


def huge_filter_region() -> str:
    return (
        f'<svg {NS} viewBox="0 0 100 100"><filter id="f" x="-1e6" y="-1e6" width="2e6" height="2e6" '
        'filterUnits="userSpaceOnUse"><feGaussianBlur stdDeviation="1e4"/><feMorphology radius="1e4"/></filter>'
        '<rect width="50" height="50" filter="url(#f)"/></svg>'
    )


def png_bomb_data_uri(side: int = 100_000) -> str:
    """A PNG whose header claims side x side pixels, with a tiny compressed body."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1024, 9)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(png).decode()


# probes ------------------------------------------------------------------------------------
_IN_ACCESS, _IN_OPEN = 0x1, 0x20


class OpenWatch:
    """inotify on one file: reports whether any process opened or read it since creation."""

    def __init__(self, path: Path) -> None:
        self._libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self._fd = self._libc.inotify_init1(os.O_NONBLOCK)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        if self._libc.inotify_add_watch(self._fd, str(path).encode(), _IN_ACCESS | _IN_OPEN) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch failed for {path}")

    def touched(self) -> bool:
        try:
            return len(os.read(self._fd, 65536)) > 0
        except BlockingIOError:
            return False

    def close(self) -> None:
        os.close(self._fd)


class LoopbackListener:
    """A TCP listener on 127.0.0.1 that records every connection made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()
