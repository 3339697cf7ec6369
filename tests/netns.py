"""Hosts in network namespaces, for tests that need several addresses and real delay.

Theory of operation. `NetnsLab` makes one router namespace and, per host,
one namespace joined to the router by a veth pair: the host's end is `eth0`
with 10.<net>.<i>.2/24, the router's end has 10.<net>.<i>.1/24 and is the
host's default route. The router forwards between hosts, so hosts in
10.1/16, 10.2/16, 10.3/16 ... reach each other through it. Every name carries
a random suffix, so two runs on one machine do not collide, and `close()`
kills what the lab started and deletes every namespace it made (the veths
go with them). Only iproute2 (`ip`, `tc`) is used.

Delay: each host's egress (its end of the veth) gets `netem delay D`, so a
packet between two hosts is delayed D one way (2*D round trip). Where the
kernel has no sch_netem (some VM kernels are built without it), the router
forwards every packet through a TUN device instead, and a small process in
the router namespace (`python -m tests.netns delay TUN D`) writes each packet
back D later: the same D one way, from user space. `delay_kind` says which;
set GNET_NETNS_REQUIRE_NETEM=1 to skip instead of falling back.

Loss: `loss` (a fraction) drops that share of host-to-host packets, and
`per_net` gives a /16 its own (delay_ms, loss) for the packets its hosts send
(netem `loss`, or the TUN router drawing per packet from the sender's /16).
"""

from __future__ import annotations

import fcntl
import math
import os
import random
import secrets
import select
import shutil
import struct
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TUN_NAME = "gdelay0"
TUN_TABLE = "100"


class LabUnavailable(Exception):
    """Namespaces (or a delay) cannot be made here; the message says why."""


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=20)


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made on this machine, or None if they can."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    name = f"gnprobe{secrets.token_hex(3)}"
    added = _run("ip", "netns", "add", name, check=False)
    if added.returncode != 0:
        return f"'ip netns add' failed: {added.stderr.strip()}"
    _run("ip", "netns", "del", name, check=False)
    return None


@dataclass
class Host:
    name: str
    ns: str
    net: int  # the second octet: 10.<net>.0.0/16
    address: str

    @property
    def exec(self) -> list[str]:
        """Prefix that runs a command inside this host's namespace."""
        return ["ip", "netns", "exec", self.ns]

    @property
    def network(self) -> str:
        return f"10.{self.net}.0.0/16"


@dataclass
class NetnsLab:
    delay_ms: float = 20.0
    loss: float = 0.0  # share of host-to-host packets dropped (0.01 = 1 %)
    per_net: dict[int, tuple[float, float]] = field(default_factory=dict)  # /16 -> (delay_ms, loss)
    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    hosts: dict[str, Host] = field(default_factory=dict)
    delay_kind: str = "none"
    #: The user-space delay router's process id (None with netem or no delay): benches report its CPU.
    delay_router_pid: int | None = None
    _namespaces: list[str] = field(default_factory=list)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.router = f"gn{self.suffix}r"
        self._ns_add(self.router)
        self._in(self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for key in ("all", "default"):
            self._in(self.router, "sysctl", "-qw", f"net.ipv4.conf.{key}.rp_filter=0")
            self._in(self.router, "sysctl", "-qw", f"net.ipv4.conf.{key}.send_redirects=0")

    # -- building ----------------------------------------------------------
    def _ns_add(self, name: str) -> None:
        done = _run("ip", "netns", "add", name, check=False)
        if done.returncode != 0:
            raise LabUnavailable(f"'ip netns add {name}' failed: {done.stderr.strip()}")
        self._namespaces.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")

    def _in(self, ns: str, *cmd: str) -> subprocess.CompletedProcess[str]:
        return _run("ip", "netns", "exec", ns, *cmd)

    def add_host(self, name: str, net: int) -> Host:
        index = len(self.hosts) + 1
        host = Host(name, f"gn{self.suffix}h{index}", net, f"10.{net}.{index}.2")
        self._ns_add(host.ns)
        veth = f"v{index}"
        _run("ip", "-n", self.router, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host.ns)
        _run("ip", "-n", self.router, "addr", "add", f"10.{net}.{index}.1/24", "dev", veth)
        _run("ip", "-n", self.router, "link", "set", veth, "up")
        self._in(self.router, "sysctl", "-qw", f"net.ipv4.conf.{veth}.rp_filter=0")
        _run("ip", "-n", host.ns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _run("ip", "-n", host.ns, "link", "set", "eth0", "up")
        _run("ip", "-n", host.ns, "route", "add", "default", "via", f"10.{net}.{index}.1")
        self.hosts[name] = host
        return host

    def add_delay(self) -> str:
        """Delay every host-to-host packet by delay_ms one way: netem, else the TUN router."""
        if not self.hosts or (self.delay_ms <= 0 and not self.loss and not self.per_net):
            return self.delay_kind
        netem = [self._try_netem(host) for host in self.hosts.values()]
        if all(ok is None for ok in netem):
            self.delay_kind = "netem"
            return self.delay_kind
        reason = next(r for r in netem if r is not None)
        if os.environ.get("GNET_NETNS_REQUIRE_NETEM") == "1":
            raise LabUnavailable(f"tc netem is unavailable ({reason})")
        self._start_tun_delay()
        self.delay_kind = f"tun (netem unavailable: {reason})"
        return self.delay_kind

    def _try_netem(self, host: Host) -> str | None:
        delay_ms, loss = self.per_net.get(host.net, (self.delay_ms, self.loss))
        done = _run(
            "ip", "netns", "exec", host.ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
            "delay", f"{delay_ms:g}ms", "loss", f"{loss * 100:g}%", check=False,
        )  # fmt: skip
        return None if done.returncode == 0 else done.stderr.strip() or f"tc exited {done.returncode}"

    def _start_tun_delay(self) -> None:
        per_net = [f"{net}={d:g}:{lo:g}" for net, (d, lo) in sorted(self.per_net.items())]
        delayer = [sys.executable, "-m", "tests.netns", "delay", TUN_NAME, str(self.delay_ms), str(self.loss), *per_net]
        proc = self.popen(["ip", "netns", "exec", self.router, *delayer])
        self.delay_router_pid = proc.pid  # `ip netns exec` execs the router: the same process
        deadline = time.monotonic() + 10
        while _run("ip", "-n", self.router, "link", "show", TUN_NAME, check=False).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LabUnavailable("the TUN delay router did not start (no /dev/net/tun?)")
            time.sleep(0.05)
        # a deep queue into the TUN: the delayer reads in batches, and a burst must not be dropped before it
        _run("ip", "-n", self.router, "link", "set", TUN_NAME, "txqueuelen", "10000", "up")
        self._in(self.router, "sysctl", "-qw", f"net.ipv4.conf.{TUN_NAME}.rp_filter=0")
        _run("ip", "-n", self.router, "route", "add", "default", "dev", TUN_NAME, "table", TUN_TABLE)
        for index in range(1, len(self.hosts) + 1):
            # from a host: through the TUN (the delay); back out of the TUN: the main table
            _run("ip", "-n", self.router, "rule", "add", "iif", f"v{index}", "lookup", TUN_TABLE)

    # -- running -----------------------------------------------------------
    def popen(self, cmd: list[str], log: Path | None = None) -> subprocess.Popen[bytes]:
        """A process the lab kills on close()."""
        with open(log or os.devnull, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for ns in reversed(self._namespaces):
            _run("ip", "netns", "del", ns, check=False)
        self._namespaces.clear()


# -- the user-space delay router (runs inside the router namespace) ----------
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUNSETOFFLOAD = 0x400454D0
#: TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6: hand us TCP and UDP
#: segmentation-offload packets whole (a virtio_net_hdr in front says how to split them).
OFFLOADS_TSO_USO = 0x01 | 0x02 | 0x04 | 0x20 | 0x40
OFFLOADS_TSO = 0x01 | 0x02 | 0x04
VNET_HDR = 10
#: Packets read per wake-up at most, so packets due are never held back long by a flood.
READ_BATCH = 256


def run_delay_router(
    name: str, delay_ms: float, loss: float = 0.0, per_net: dict[int, tuple[float, float]] | None = None
) -> None:
    """Read every packet the router sends into TUN `name`; write it back `delay_ms` later.

    A share `loss` of packets is dropped instead; `per_net` overrides (delay_ms,
    loss) for packets whose IPv4 source is in 10.<net>.0.0/16.

    Why no event loop: a timer per packet (asyncio's call_later) cost ~20 us of
    CPU per packet, so the router, not the path under test, capped a bulk
    transfer near 20 MiB/s (make bench-wan). A constant delay keeps each
    (delay, loss) class in arrival order, so one FIFO per class and one poll()
    timeout for the earliest packet due are enough; every wake-up drains all
    that is readable (up to READ_BATCH) and all that is due.

    Without loss, the TUN also takes segmentation offload (TSO, and UDP's USO
    on kernels >= 6.2): a sender's GSO burst (TCP, or QUIC through quinn-udp's
    UDP GSO) crosses as one read and one write, with the virtio_net_hdr that
    says how to split it written back unchanged. It costs per packet what
    the kernel's own forwarding costs, and the burst keeps its timing (netem
    delays a GSO packet whole too). With loss, every packet is read on its
    own, so each is dropped on its own.
    """
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    offload = not loss and not any(lo for _, lo in (per_net or {}).values())
    flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if offload else 0)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
    head = 0
    if offload:
        head = VNET_HDR
        for offloads in (OFFLOADS_TSO_USO, OFFLOADS_TSO, 0):  # USO needs Linux 6.2
            try:
                fcntl.ioctl(fd, TUNSETOFFLOAD, offloads)
                break
            except OSError:
                continue
    default = (delay_ms / 1000, loss)
    shaping = {net: (d / 1000, lo) for net, (d, lo) in (per_net or {}).items()}
    queues: dict[float, deque[tuple[float, bytes]]] = {}
    rng = random.Random()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    read, write, clock = os.read, os.write, time.monotonic
    try:
        while True:
            now = clock()
            due: float | None = None
            for queue in queues.values():
                while queue and queue[0][0] <= now:
                    try:
                        write(fd, queue.popleft()[1])
                    except OSError:
                        pass  # a full queue drops the packet, as a router would
                if queue and (due is None or queue[0][0] < due):
                    due = queue[0][0]
            timeout = None if due is None else max(0, math.ceil((due - now) * 1000))
            if not poller.poll(timeout):
                continue
            now = clock()
            for _ in range(READ_BATCH):
                try:
                    packet = read(fd, 65536 + VNET_HDR)
                except BlockingIOError:
                    break
                ip = len(packet) >= head + 20 and packet[head] >> 4 == 4 and packet[head + 12] == 10
                net = packet[head + 13] if ip else -1
                delay, drop = shaping.get(net, default)
                if drop and rng.random() < drop:
                    continue
                queue = queues.get(delay)
                if queue is None:
                    queue = queues[delay] = deque()
                queue.append((now + delay, packet))
    finally:
        os.close(fd)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "delay":
        nets = {}
        for spec in sys.argv[5:]:  # NET=DELAY_MS:LOSS
            net, _, shape = spec.partition("=")
            d, _, lo = shape.partition(":")
            nets[int(net)] = (float(d), float(lo or 0))
        run_delay_router(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4 else 0.0, nets)
    else:
        sys.exit("usage: python -m tests.netns delay TUN_NAME DELAY_MS [LOSS [NET=DELAY_MS:LOSS ...]]")


#: A TCP server (run with `python -c BYTE_SERVER HOST PORT SIZE` inside a host) that sends SIZE
#: deterministic bytes (bytes(range(256)) repeated) on every connection, then closes.
BYTE_SERVER = """
import socketserver, sys
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = (bytes(range(256)) * (size // 256 + 1))[:size]
class H(socketserver.BaseRequestHandler):
    def handle(self):
        try:
            self.request.sendall(data)
        except OSError:
            pass
class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 256
S((host, port), H).serve_forever()
"""
