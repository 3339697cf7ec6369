"""The measurements `make bench` and `make bench-wan` share: plain blocking
sockets in the measuring process (cheap, predictable), a node network of real
`gclient` processes, and per-process CPU and memory read from /proc.

Nothing here dials anything but the addresses it is given (127.0.0.1, or the
bench's own network namespaces).
"""

from __future__ import annotations

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from globalnet.localnet import GCLIENT_CMD, ROOT, NodeProcess, free_port, node_id_of

MiB = 1024 * 1024
_TICK = os.sysconf("SC_CLK_TCK")


# -- one process ----------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15)


def rss_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MiB."""
    rss = hwm = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm


def memory_mib(pid: int) -> dict[str, float]:
    """RSS, PSS, anonymous and shared-clean memory of a process in MiB, from /proc/PID/smaps_rollup.

    RSS counts every shared-library page the process touched in full; PSS
    divides them among the processes sharing them, so on a machine running
    many nodes a node costs about its PSS (its anonymous memory plus a share
    of the libraries).
    """
    with open(f"/proc/{pid}/smaps_rollup") as f:
        kb = {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", f.read(), re.MULTILINE)}
    return {name: round(kb.get(key, 0) / 1024, 1)
            for name, key in (("rss", "Rss"), ("pss", "Pss"), ("anon", "Anonymous"), ("shared", "Shared_Clean"))}  # fmt: skip


class RssSampler:
    """Samples the RSS of some processes every 50 ms while a load runs."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.peak = {pid: 0.0 for pid in self.pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids:
                try:
                    self.peak[pid] = max(self.peak[pid], rss_mib(pid)[0])
                except OSError:
                    pass
            self._stop.wait(0.05)

    def __enter__(self) -> RssSampler:  # noqa: PYI034
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- the application side: plain TCP -----------------------------------------
def _connect(host: str, port: int, timeout: float = 60.0) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def download(host: str, port: int, size: int) -> float:
    """Ask the source target for `size` bytes; return the seconds until all arrived."""
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    started = time.perf_counter()
    with _connect(host, port) as sock:
        sock.sendall(f"{size}\n".encode())
        got = 0
        while got < size:
            n = sock.recv_into(view)
            if n == 0:
                break
            got += n
    took = time.perf_counter() - started
    if got != size:
        raise RuntimeError(f"download through {host}:{port} ended after {got} of {size} bytes")
    return took


def parallel_download(host: str, port: int, size_each: int, connections: int) -> float:
    """`connections` downloads at once; seconds until the last finished."""
    errors: list[BaseException] = []

    def one() -> None:
        try:
            download(host, port, size_each)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} of {connections} downloads failed: {errors[0]}")
    return time.perf_counter() - started


def ping_pong(host: str, port: int, rounds: int, warmup: int = 20) -> list[float]:
    """One byte there and back, `rounds` times on one connection; seconds each."""
    out = []
    with _connect(host, port) as sock:
        for i in range(warmup + rounds):
            started = time.perf_counter()
            sock.sendall(b"x")
            if sock.recv(1) != b"x":
                raise RuntimeError("echo target closed")
            if i >= warmup:
                out.append(time.perf_counter() - started)
    return out


def first_byte(host: str, port: int) -> float:
    """Seconds from connect() to the first byte of a target that speaks first."""
    started = time.perf_counter()
    with _connect(host, port) as sock:
        if sock.recv(1) != b"!":
            raise RuntimeError(f"no first byte from {host}:{port}")
        took = time.perf_counter() - started
    return took


# -- targets -------------------------------------------------------------------
class Targets:
    """bench/targets.py in a subprocess (optionally inside a namespace)."""

    def __init__(self, host: str = "127.0.0.1", prefix: Sequence[str] = ()) -> None:
        self.host = host
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "bench.targets", host],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
        )
        assert self.proc.stdout is not None
        self.ports: dict[str, int] = json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- the node network ----------------------------------------------------------
def free_ports(n: int, kind: int = socket.SOCK_DGRAM) -> list[int]:
    """n distinct free ports on 127.0.0.1 (each checked like localnet.free_port,
    none repeated: a port released by one check can come back from the next)."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port(kind)
        if port not in ports:
            ports.append(port)
    return ports


class BenchNode(NodeProcess):
    """A gclient process, optionally run inside a network namespace."""

    prefix: list[str]

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child keeps it)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        cmd = [*self.prefix, *GCLIENT_CMD, "-data-dir", str(self.data_dir),
               "--log-json", "--log-level", "debug", *self.args]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        log.close()


@dataclass
class Network:
    """Three relays (the third an exit for the targets' address) and a client
    with one tunnel per target, every tunnel through relay1 > relay2 > relay3."""

    base: Path
    targets: Targets
    relay_hosts: tuple[str, str, str] = ("127.0.0.1", "127.0.0.1", "127.0.0.1")
    prefixes: dict[str, list[str]] = field(default_factory=dict)  # node name -> command prefix (netns)
    target_host: str = ""  # where the exit reaches the targets (default: the targets' own address)
    relay_ports: list[int] = field(default_factory=list)  # default: free ports (loopback) or 9001..9003
    dial_ports: list[int] = field(default_factory=list)  # what circuits dial (e.g. a delay proxy); default: relay_ports
    relays: list[BenchNode] = field(default_factory=list)
    client: BenchNode | None = None
    tunnel_ports: dict[str, int] = field(default_factory=dict)

    def _node(self, name: str, args: list[str], port: int | None) -> BenchNode:
        data_dir = self.base / name
        data_dir.mkdir(parents=True, exist_ok=True)
        node = BenchNode(name, args, data_dir, listen_port=port)
        node.prefix = self.prefixes.get(name, [])
        node.node_id = node_id_of(data_dir)
        node.start()
        return node

    def start(self) -> None:
        t = self.targets
        target_host = self.target_host or t.host
        if not self.relay_ports:
            loopback = self.relay_hosts[0].startswith("127.")
            self.relay_ports = free_ports(3) if loopback else [9001, 9002, 9003]
        for i, host in enumerate(self.relay_hosts, 1):
            port = self.relay_ports[i - 1]
            extra = ["-exit", "-exit-allow", f"{target_host}/32"] if i == 3 else []
            self.relays.append(self._node(f"relay{i}", ["-listen", f"{host}:{port}", *extra], port))
        for r in self.relays:
            r.wait_for("node started")
        dial = self.dial_ports or self.relay_ports
        pinned = [f"{h}:{p}#{r.node_id}" for h, p, r in zip(self.relay_hosts, dial, self.relays)]
        args = ["-no-listen", "-connect", pinned[0]]
        local = free_ports(len(t.ports), socket.SOCK_STREAM)
        for name, tport in t.ports.items():
            # the client's tunnel listeners are on 127.0.0.1 of the client's namespace
            self.tunnel_ports[name] = local.pop() if not self.prefixes.get("client") else 8000 + len(self.tunnel_ports)
            args += ["-tunnel", f"{self.tunnel_ports[name]}>{pinned[0]}>{pinned[1]}>{pinned[2]}>{target_host}:{tport}"]
        self.client = self._node("client", args, None)
        for name in t.ports:
            self.client.wait_for("tunnel listening", listen=f"127.0.0.1:{self.tunnel_ports[name]}")
        self.client.wait_for("linked to peer")

    @property
    def pids(self) -> dict[str, int]:
        nodes = [*self.relays, *( [self.client] if self.client else [])]
        return {n.name: n.proc.pid for n in nodes if n.proc is not None}

    def circuit_builds(self) -> list[float]:
        """Circuit build durations (ms) the client logged, oldest first."""
        assert self.client is not None
        return [float(ev["ms"]) for ev in self.client.events() if ev.get("event") == "circuit built"]  # type: ignore[arg-type]

    def stop(self) -> None:
        for node in [*( [self.client] if self.client else []), *reversed(self.relays)]:
            node.stop()


# -- bookkeeping ---------------------------------------------------------------
def metric(runs: Sequence[float], unit: str, **extra: Any) -> dict[str, Any]:
    return {"median": round(statistics.median(runs), 4), "runs": [round(r, 4) for r in runs], "unit": unit, **extra}


def timed_runs(n: int, fn: Callable[[], float]) -> list[float]:
    return [fn() for _ in range(n)]
