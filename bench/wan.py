"""`make bench-wan`: circuit build and time to first byte with 20 ms links.

Every node runs in a network namespace of its own (client, relay1, relay2,
relay3), each joined by a veth pair to a bridge in a fifth namespace, with
`netem delay 20ms` on every node's side of its veth: every packet between two
nodes waits 20 ms, one way (a round trip between any two nodes is 40 ms).
The namespaces, links and addresses (10.203.0.0/24, which exists only inside
them; nothing is routed out) are created here and removed at the end. Root is
required; without it the bench says so and exits 0.

What one round trip per hop predicts: extending to hop k costs one round trip
from the client to hop k (the handshake to hop k carries RELAY_CONNECT and
its reply comes back with OK), i.e. k x 40 ms, so a 3-hop circuit takes
40 + 80 + 120 = 240 ms once links are up; a design that needs two round trips
per hop (handshake, then a separate extend/connect) takes 480 ms. The target
sits beside the exit, so the first byte follows the last OK: time to first
byte ~ 240 ms as well. A plain TCP connection from the client's namespace to
the target takes one round trip to connect plus one way for the first byte
(~60 ms); it is measured in the same run as the baseline.

The targets run in relay3's namespace; the bench process measures from inside
the client's namespace (setns) and reads results from each node's JSON log.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.measure import MiB, Network, Targets, download, first_byte, free_ports, metric, parallel_download
from globalnet.link.path_mtu import FULL_DATAGRAM
from globalnet.localnet import ROOT

RESULTS = ROOT / "bench" / "results" / "wan.json"
DELAY_MS = 20
SUBNET = "10.203.0"
CLONE_NEWNET = 0x40000000
NODES = ("client", "relay1", "relay2", "relay3")


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


class Namespaces:
    """client/relay1/relay2/relay3 namespaces on one bridge, netem on each link."""

    def __init__(self, delay_ms: int, netem: bool = True) -> None:
        tag = f"gnb{os.getpid() % 100000}"
        self.hub = f"{tag}-hub"
        self.names = {node: f"{tag}-{node}" for node in NODES}
        self.addr = {node: f"{SUBNET}.{i}" for i, node in enumerate(NODES, 1)}
        self.delay_ms = delay_ms
        self.netem = netem
        self.created: list[str] = []

    def create(self) -> None:
        sh("ip", "netns", "add", self.hub)
        self.created.append(self.hub)
        sh("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.hub, "link", "set", "br0", "up")
        for i, node in enumerate(NODES):
            ns = self.names[node]
            sh("ip", "netns", "add", ns)
            self.created.append(ns)
            port = f"h{i}"
            sh("ip", "-n", self.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", self.hub, "link", "set", port, "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.addr[node]}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            if self.netem:
                sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", f"{self.delay_ms}ms")

    def remove(self) -> None:
        for ns in reversed(self.created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self.created.clear()

    def prefix(self, node: str) -> list[str]:
        return ["ip", "netns", "exec", self.names[node]]


class InNamespace:
    """Run this thread (the measuring one) inside a namespace, then come back."""

    def __init__(self, name: str) -> None:
        self.path = f"/var/run/netns/{name}"
        self.libc = ctypes.CDLL(None, use_errno=True)

    def __enter__(self) -> InNamespace:  # noqa: PYI034
        self.home = os.open("/proc/self/ns/net", os.O_RDONLY)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if self.libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns failed")
        finally:
            os.close(fd)
        return self

    def __exit__(self, *exc: object) -> None:
        self.libc.setns(self.home, CLONE_NEWNET)
        os.close(self.home)


def cannot_run(netem: bool = True) -> str:
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (run `sudo make bench-wan`)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is not installed"
    probe = f"gnbprobe{os.getpid() % 100000}"
    try:
        sh("ip", "netns", "add", probe)
        try:
            sh("ip", "-n", probe, "link", "add", "p0", "type", "veth", "peer", "name", "p1")
            if netem:
                sh("ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "p0", "root", "netem", "delay", "1ms")
        finally:
            subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    except subprocess.CalledProcessError as exc:
        return f"cannot create a namespace with a veth and netem here: {exc.stderr.decode().strip() or exc}"
    return ""


def run_proxy(args: argparse.Namespace) -> dict[str, Any]:
    """The same measurement on 127.0.0.1 with bench/delay_proxy.py in front of
    each relay (every link crossing waits DELAY ms each way), for kernels
    without netem. No TCP baseline: the proxy delays UDP only."""
    started = time.monotonic()
    loads = [os.getloadavg()]
    tmp = tempfile.TemporaryDirectory(prefix="gnet-wan-")
    ports = free_ports(6)
    relay_ports, fronts = ports[:3], ports[3:]
    proxy = subprocess.Popen(
        [sys.executable, "-m", "bench.delay_proxy", str(args.delay_ms), *(f"{f}:{b}" for f, b in zip(fronts, relay_ports))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
    )
    assert proxy.stdout is not None
    proxy.stdout.readline()
    targets = Targets()
    net = Network(Path(tmp.name), targets, relay_ports=relay_ports, dial_ports=fronts)
    try:
        net.start()
        ttfb, builds = _measure(net, args.connections)
        loads.append(os.getloadavg())
        tput = _throughput(args, net, None)
        loads.append(os.getloadavg())
    finally:
        net.stop()
        targets.stop()
        if proxy.stdin:
            proxy.stdin.close()
        proxy.wait(5)
        tmp.cleanup()
    return _result(args, builds, ttfb, None, started, loads, FULL_DATAGRAM, tput,
                   f"gclient processes on 127.0.0.1, a userspace UDP delay proxy (bench/delay_proxy.py) in front of each relay: "
                   f"one way {args.delay_ms} ms, RTT {2 * args.delay_ms} ms between nodes (the kernel has no netem)")


def _measure(net: Network, connections: int) -> tuple[list[float], list[float]]:
    host = "127.0.0.1"
    first_byte(host, net.tunnel_ports["hello"])  # warm-up: links relay1 > relay2 > relay3 come up
    time.sleep(0.5)
    seen = len(net.circuit_builds())
    ttfb = [first_byte(host, net.tunnel_ports["hello"]) * 1000 for _ in range(connections)]
    time.sleep(0.5)
    return ttfb, net.circuit_builds()[seen:]


def _throughput(args: argparse.Namespace, net: Network, base: tuple[str, int] | None) -> dict[str, Any]:
    """1 and 8 downloads at once through the tunnel, and (where the delay applies to
    TCP too) the same from plain TCP through the same delayed links to the target."""
    size = args.size_mib * MiB
    each = max(MiB, size // 8)
    out: dict[str, Any] = {}
    runs1 = [args.size_mib / download("127.0.0.1", net.tunnel_ports["source"], size) for _ in range(args.runs)]
    runs8 = [8 * each / MiB / parallel_download("127.0.0.1", net.tunnel_ports["source"], each, 8) for _ in range(args.runs)]
    out["wan_throughput_1stream"] = metric(runs1, "MiB/s", size_mib=args.size_mib, path="3 hops, each link delayed")
    out["wan_throughput_8streams"] = metric(runs8, "MiB/s", mib_each=each / MiB, path="8 circuits at once")
    if base is not None:
        b1 = [args.size_mib / download(base[0], base[1], size) for _ in range(args.runs)]
        b8 = [8 * each / MiB / parallel_download(base[0], base[1], each, 8) for _ in range(args.runs)]
        for name, runs in (("wan_throughput_1stream", b1), ("wan_throughput_8streams", b8)):
            m = out[name]
            m["baseline_tcp"] = {"median": round(statistics.median(runs), 4), "runs": [round(r, 4) for r in runs],
                                 "what": "plain TCP from the client's namespace to the target (one delayed crossing each way)"}
            m["ratio"] = round(m["median"] / m["baseline_tcp"]["median"], 4) if m["baseline_tcp"]["median"] else None
    return out


def _result(args: argparse.Namespace, builds: list[float], ttfb: list[float], base: list[float] | None,
            started: float, loads: list[tuple[float, float, float]], size: int, tput: dict[str, Any],
            topology: str) -> dict[str, Any]:
    rtt = 2 * args.delay_ms
    one_rtt = sum(k * rtt for k in (1, 2, 3))
    metrics = {
        "wan_circuit_build": metric(builds, "ms", hops=3, expected_1rtt_per_hop=one_rtt, expected_2rtt_per_hop=2 * one_rtt,
                                    source="client log event 'circuit built'"),
        "wan_ttfb_new_connection": metric(ttfb, "ms", expected_1rtt_per_hop=one_rtt, expected_2rtt_per_hop=2 * one_rtt),
    }
    if base is not None:
        metrics["wan_tcp_ttfb"] = metric(base, "ms", what="plain TCP from the client's namespace to the target: connect + first byte",
                                         expected=rtt + args.delay_ms)
    metrics.update(tput)
    for m in metrics.values():
        m["link_delay_ms_one_way"] = args.delay_ms
    return {
        "meta": {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "topology": topology,
            "datagram_size": size,
            "load_avg_1_5_15": [[round(x, 2) for x in la] for la in loads],
            "seconds": round(time.monotonic() - started, 1),
        },
        "metrics": metrics,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    ns = Namespaces(args.delay_ms, netem=not args.no_netem)
    started = time.monotonic()
    loads = [os.getloadavg()]
    tmp = tempfile.TemporaryDirectory(prefix="gnet-wan-")
    ns.create()
    net = targets = None
    try:
        targets = Targets("0.0.0.0", prefix=ns.prefix("relay3"))
        relay_hosts = (ns.addr["relay1"], ns.addr["relay2"], ns.addr["relay3"])
        net = Network(Path(tmp.name), targets, relay_hosts=relay_hosts,
                      prefixes={n: ns.prefix(n) for n in NODES}, target_host="127.0.0.1")
        net.start()
        with InNamespace(ns.names["client"]):
            from globalnet.link.path_mtu import datagram_size_for

            size = datagram_size_for((ns.addr["relay1"], 9000))
            ttfb, builds = _measure(net, args.connections)
            base = [first_byte(ns.addr["relay3"], targets.ports["hello"]) * 1000 for _ in range(args.connections)]
            loads.append(os.getloadavg())
            tput = _throughput(args, net, (ns.addr["relay3"], targets.ports["source"]))
        loads.append(os.getloadavg())
    finally:
        if net is not None:
            net.stop()
        if targets is not None:
            targets.stop()
        ns.remove()
        tmp.cleanup()
    delay = f"netem delay {args.delay_ms} ms on each node's veth (one way {args.delay_ms} ms, RTT {2 * args.delay_ms} ms between nodes)" if ns.netem else "no delay (--no-netem)"
    return _result(args, builds, ttfb, base, started, loads, size, tput,
                   f"client, relay1..3 in network namespaces of their own on one bridge; {delay}")


def main() -> int:
    p = argparse.ArgumentParser(description="circuit build and TTFB over 20 ms links, in network namespaces")
    p.add_argument("--delay-ms", type=int, default=DELAY_MS)
    p.add_argument("--connections", type=int, default=10)
    p.add_argument("--size-mib", type=int, default=32, help="one download's size (8 downloads share it)")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--mode", choices=("auto", "netns", "proxy"), default="auto",
                   help="netns: namespaces + netem (root; skip if impossible); proxy: 127.0.0.1 + delay proxy; auto: netns, else proxy")
    p.add_argument("--no-netem", action="store_true", help="namespaces without delay: checks the set-up on a kernel without netem")
    args = p.parse_args()
    if args.no_netem:
        args.delay_ms = 0
    reason = cannot_run(netem=not args.no_netem)
    if args.mode == "netns" and reason:
        print(f"bench-wan skipped: {reason}")
        return 0
    if args.mode == "auto" and reason:
        print(f"bench-wan: no network namespaces with netem here ({reason});\n"
              f"  measuring with a userspace delay proxy on 127.0.0.1 instead (--mode netns skips instead)")
        result = run_proxy(args)
    elif args.mode == "proxy":
        result = run_proxy(args)
    else:
        result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'metric':26} {'median':>8} {'expected, 1 RTT/hop':>20} {'2 RTT/hop':>10}  unit    TCP      ratio")
    for name, m in result["metrics"].items():
        exp1 = m.get("expected_1rtt_per_hop", m.get("expected", ""))
        exp2 = m.get("expected_2rtt_per_hop", "")
        tcp = m.get("baseline_tcp", {}).get("median", "")
        ratio = m.get("ratio", "")
        print(f"{name:26} {m['median']:8.1f} {exp1!s:>20} {exp2!s:>10}  {m['unit']:6}  {tcp!s:8} {ratio!s}")
    print(result["meta"]["topology"] + f"; datagram size {result['meta']['datagram_size']}; load {result['meta']['load_avg_1_5_15']}")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
