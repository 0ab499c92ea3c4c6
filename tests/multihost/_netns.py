"""Several hosts on one machine: a network namespace per host, joined by veth pairs to a bridge.

A :class:`Cluster` creates a hub namespace holding a Linux bridge and one namespace per host, each
with an ``eth0`` (a veth whose peer is a port of the bridge) and a private address in
``10.250.0.0/24``. Addresses exist only inside these namespaces: nothing is added to the
machine's own network. Processes run in a host with ``ip netns exec``; the test talks to the API
over a Unix socket (a path, not a network address, so it crosses namespaces and is never cut).

Links, per host (``Link``):
- ``cut()``: nftables in that host drops every packet on ``eth0``, in and out, without a reset or
  an ICMP error: what a partition looks like to TCP. ``restore()`` removes the rules.
- ``slow(...)``: ``tc netem`` delay (and rate) where the kernel has netem; otherwise a token-bucket
  rate limit (``tc tbf``), the one shaping qdisc every kernel here has. ``restore()`` removes it.

Everything started is stopped by :meth:`Cluster.close` (process groups SIGTERM, then SIGKILL;
namespaces deleted, which deletes their veths); stale namespaces of a crashed earlier run (their
owning pid gone) are deleted first. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "rlrf-mh"
SUBNET = "10.250.0"


class Unavailable(Exception):
    """Network namespaces cannot be created here (not root, no CAP_SYS_ADMIN, no iproute2)."""


def _run(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=True)


def _netns(name: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return _run("ip", "netns", "exec", name, *args, timeout=timeout)


def probe() -> None:
    """Raise Unavailable unless this process may create a namespace, a veth pair and nft rules."""
    for tool in ("ip", "tc", "nft"):
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} not installed (iproute2, nftables)")
    name = f"{PREFIX}-probe-{os.getpid()}"
    try:
        _run("ip", "netns", "add", name)
    except (subprocess.CalledProcessError, OSError) as exc:
        raise Unavailable(f"ip netns add not permitted: {getattr(exc, 'stderr', exc)}") from exc
    try:
        _netns(name, "ip", "link", "add", "name", "probe0", "type", "veth", "peer", "name", "probe1")
        _netns(name, "nft", "add", "table", "inet", "probe")
    except subprocess.CalledProcessError as exc:
        raise Unavailable(f"veth or nftables not permitted in a namespace: {exc.stderr}") from exc
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)


def remove_stale() -> None:
    """Delete namespaces left by a crashed earlier run (their owner pid is in the name)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=20).stdout
    for line in listed.splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name.split("-")
        mine = name.startswith(PREFIX + "-") and len(parts) >= 4 and parts[2].isdigit()
        if mine and not Path(f"/proc/{parts[2]}").exists():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)


def _has_netem(namespace: str) -> bool:
    try:
        _netns(namespace, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms")
    except subprocess.CalledProcessError:
        return False
    _netns(namespace, "tc", "qdisc", "del", "dev", "lo", "root")
    return True


@dataclass
class Link:
    """The one network link of a host: cut, slowed down or restored by the test."""

    namespace: str
    netem: bool
    hub: str = ""  # the hub namespace and the bridge port of this link: shaped too, for the way in
    port: str = ""
    state: str = "up"

    def cut(self) -> None:
        """Drop every packet in and out of eth0 (no RST, no ICMP): a partition."""
        rules = (
            "table inet cut {\n"
            ' chain in { type filter hook input priority -300; policy accept; iifname "eth0" drop; }\n'
            ' chain out { type filter hook output priority -300; policy accept; oifname "eth0" drop; }\n'
            "}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", self.namespace, "nft", "-f", "-"],
            input=rules,
            text=True,
            capture_output=True,
            timeout=20,
            check=True,
        )
        self.state = "cut"

    def slow(self, *, delay_ms: int = 300, rate_kbit: int = 256) -> str:
        """Slow the link down both ways: eth0 shapes what the host sends, the bridge port what it gets."""
        if self.netem:
            qdisc = ["netem", "delay", f"{delay_ms}ms", "rate", f"{rate_kbit}kbit"]
        else:
            qdisc = ["tbf", "rate", f"{rate_kbit}kbit", "burst", "4kb", "latency", "2s"]
        _netns(self.namespace, "tc", "qdisc", "replace", "dev", "eth0", "root", *qdisc)
        if self.hub:
            _netns(self.hub, "tc", "qdisc", "replace", "dev", self.port, "root", *qdisc)
        self.state = "slow"
        return " ".join(qdisc)

    def restore(self) -> None:
        subprocess.run(
            ["ip", "netns", "exec", self.namespace, "nft", "delete", "table", "inet", "cut"],
            capture_output=True,
            timeout=20,
        )
        for namespace, device in ((self.namespace, "eth0"), (self.hub, self.port)):
            if namespace:
                subprocess.run(
                    ["ip", "netns", "exec", namespace, "tc", "qdisc", "del", "dev", device, "root"],
                    capture_output=True,
                    timeout=20,
                )
        self.state = "up"


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    link: Link
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, argv: list[str], *, env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
        """Run ``argv`` in this host (its own process group, output to ``log``)."""
        with log.open("ab") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, *argv],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def run(self, argv: list[str], *, timeout: float = 20) -> int:
        """Run ``argv`` in this host to completion; its exit status."""
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace, *argv], capture_output=True, timeout=timeout
        ).returncode

    def stop(self, *, grace_s: float = 15) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()


class Cluster:
    """Hosts on one bridge, each in its own network namespace."""

    def __init__(self, names: list[str]) -> None:
        self.id = f"{PREFIX}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.hub = f"{self.id}-hub"
        self.hosts: dict[str, Host] = {}
        self._created: list[str] = []
        try:
            self._build(names)
        except BaseException:
            self.close()
            raise

    def _add_namespace(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self._created.append(name)
        _netns(name, "ip", "link", "set", "lo", "up")

    def _build(self, names: list[str]) -> None:
        self._add_namespace(self.hub)
        _netns(self.hub, "ip", "link", "add", "name", "br0", "type", "bridge")
        _netns(self.hub, "ip", "link", "set", "br0", "up")
        netem = _has_netem(self.hub)
        for index, name in enumerate(names, start=1):
            namespace = f"{self.id}-{name}"
            self._add_namespace(namespace)
            port = f"p{index}"
            # The pair is made in the hub; eth0 then moves into the host's namespace.
            peer = ["peer", "name", "eth0", "netns", namespace]
            _netns(self.hub, "ip", "link", "add", "name", port, "type", "veth", *peer)
            _netns(self.hub, "ip", "link", "set", port, "master", "br0", "up")
            address = f"{SUBNET}.{index}"
            _netns(namespace, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
            _netns(namespace, "ip", "link", "set", "eth0", "up")
            self.hosts[name] = Host(name, namespace, address, Link(namespace, netem, self.hub, port))

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def close(self) -> None:
        for host in self.hosts.values():
            host.stop()
        for name in reversed(self._created):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)
        self._created.clear()


@contextlib.contextmanager
def cluster(names: list[str]) -> Iterator[Cluster]:
    remove_stale()
    built = Cluster(names)
    try:
        yield built
    finally:
        built.close()
