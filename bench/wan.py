"""`make bench-wan`: circuit build, time to first byte and throughput over 20 ms links,
beside plain TCP through the same links.

Every node runs in a network namespace of its own (client, relay1, relay2,
relay3), each joined by a veth pair to a router namespace (tests/netns.py's
NetnsLab, as `make testnet` uses). Every packet from one node to another waits
20 ms one way (a round trip between two nodes is 40 ms): `netem delay` on each
node's veth where the kernel has sch_netem, else the router forwards every
packet through a TUN device and a small user-space process writes it back
20 ms later (tests/netns.py, `run_delay_router`); `meta.delay` says which, and
the router's CPU per MiB carried is reported (it must not be what is measured).
The addresses (10.1.x.x) exist only inside the namespaces; nothing is routed
out; everything is removed at the end. Root is required.

What one round trip per hop predicts: extending to hop k costs one round trip
from the client to hop k (the handshake to hop k carries RELAY_CONNECT and
its reply comes back with OK), i.e. k x 40 ms, so a 3-hop circuit takes
40 + 80 + 120 = 240 ms once links are up; a design that needs two round trips
per hop (handshake, then a separate extend/connect) takes 480 ms. The target
sits beside the exit, so the first byte follows the last OK: time to first
byte ~ 240 ms as well. A plain TCP connection from the client's namespace to
the target takes one round trip to connect plus one way for the first byte
(~60 ms); it is measured in the same run as the baseline.

Throughput: one download and 8 at once through the tunnel (the circuit's
round trip is 120 ms: three delayed crossings each way), and the same from
plain TCP in the client's namespace to the target through the same router
(one delayed crossing each way, so TCP's round trip is 40 ms); `ratio` is
tunnel / TCP.

The targets run in relay3's namespace; the bench process measures from inside
the client's namespace (setns) and reads results from each node's JSON log.

Without /dev/net/tun or namespaces (no root), `--mode auto` falls back to a
userspace UDP delay proxy on 127.0.0.1 (bench/delay_proxy.py), labelled as
such in the output and JSON: it delays UDP only, so it has no TCP baseline.
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

from bench.measure import (
    MiB,
    Network,
    Targets,
    cpu_seconds,
    download,
    first_byte,
    free_ports,
    metric,
    parallel_download,
)
from globalnet.link.path_mtu import FULL_DATAGRAM
from globalnet.localnet import ROOT

sys.path.insert(0, str(ROOT))
from tests.netns import LabUnavailable, NetnsLab, unavailable_reason

RESULTS = ROOT / "bench" / "results" / "wan.json"
DELAY_MS = 20
CLONE_NEWNET = 0x40000000
NODES = ("client", "relay1", "relay2", "relay3")
RELAY_PORT = 9000


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


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


def cannot_run() -> str:
    """Why the namespace bench cannot run here ('' if it can)."""
    reason = unavailable_reason()
    if reason is None and not os.path.exists("/dev/net/tun") and shutil.which("tc") is None:
        reason = "neither tc netem nor /dev/net/tun is available for the delay"
    return reason or ""


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
        [
            sys.executable,
            "-m",
            "bench.delay_proxy",
            str(args.delay_ms),
            *(f"{f}:{b}" for f, b in zip(fronts, relay_ports)),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
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
    return _result(
        args,
        builds,
        ttfb,
        None,
        started,
        loads,
        FULL_DATAGRAM,
        tput,
        "udp-proxy (fallback: no namespaces here)",
        f"FALLBACK, not comparable with the namespace figures: gclient processes on 127.0.0.1, a userspace UDP delay proxy (bench/delay_proxy.py) in front of each relay: "
        f"one way {args.delay_ms} ms, RTT {2 * args.delay_ms} ms between nodes (no network namespaces with a delay here)",
    )


def _measure(net: Network, connections: int) -> tuple[list[float], list[float]]:
    host = "127.0.0.1"
    first_byte(host, net.tunnel_ports["hello"])  # warm-up: links relay1 > relay2 > relay3 come up
    time.sleep(0.5)
    seen = len(net.circuit_builds())
    ttfb = [first_byte(host, net.tunnel_ports["hello"]) * 1000 for _ in range(connections)]
    time.sleep(0.5)
    return ttfb, net.circuit_builds()[seen:]


def udp_drops(prefix: list[str]) -> int:
    """Datagrams a namespace's kernel dropped for full socket receive buffers so far
    (a relay too slow to read loses packets, and QUIC then backs off)."""
    snmp = subprocess.run([*prefix, "cat", "/proc/net/snmp"], capture_output=True, text=True, check=False).stdout
    rows = [line.split()[1:] for line in snmp.splitlines() if line.startswith("Udp:")]
    if len(rows) < 2 or "RcvbufErrors" not in rows[0]:
        return 0
    return int(rows[1][rows[0].index("RcvbufErrors")])


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        try:
            out[name] = cpu_seconds(pid)
        except OSError:
            pass
    return out


def _throughput(
    args: argparse.Namespace, net: Network, base: tuple[str, int] | None, router_pid: int | None = None
) -> dict[str, Any]:
    """1 and 8 downloads at once through the tunnel, and (where the delay applies to
    TCP too) the same from plain TCP through the same delayed links to the target.
    CPU per MiB of every node (and of a user-space delay router) in each phase."""
    size = args.size_mib * MiB
    each = max(MiB, size // 8)
    out: dict[str, Any] = {}
    pids = dict(net.pids)
    if router_pid is not None:
        pids["router"] = router_pid

    def phase(fn: Any, mib: float) -> tuple[list[float], dict[str, float]]:
        before = _cpu(pids)
        runs = [mib / fn() for _ in range(args.runs)]
        after = _cpu(pids)
        total = mib * args.runs
        return runs, {k: round((after[k] - before[k]) * 1000 / total, 2) for k in after if k in before}

    runs1, cpu1 = phase(lambda: download("127.0.0.1", net.tunnel_ports["source"], size), args.size_mib)
    runs8, cpu8 = phase(lambda: parallel_download("127.0.0.1", net.tunnel_ports["source"], each, 8), 8 * each / MiB)
    out["wan_throughput_1stream"] = metric(
        runs1, "MiB/s", size_mib=args.size_mib, path="3 hops, each link delayed", cpu_ms_per_mib=cpu1
    )
    out["wan_throughput_8streams"] = metric(
        runs8, "MiB/s", mib_each=each / MiB, path="8 circuits at once", cpu_ms_per_mib=cpu8
    )
    if base is not None:
        b1, bcpu1 = phase(lambda: download(base[0], base[1], size), args.size_mib)
        b8, bcpu8 = phase(lambda: parallel_download(base[0], base[1], each, 8), 8 * each / MiB)
        for name, runs, bcpu in (("wan_throughput_1stream", b1, bcpu1), ("wan_throughput_8streams", b8, bcpu8)):
            m = out[name]
            m["baseline_tcp"] = {
                "median": round(statistics.median(runs), 4),
                "runs": [round(r, 4) for r in runs],
                "what": "plain TCP from the client's namespace to the target (one delayed crossing each way)",
            }
            if "router" in bcpu:
                m["baseline_tcp"]["router_cpu_ms_per_mib"] = bcpu["router"]
            m["ratio"] = round(m["median"] / m["baseline_tcp"]["median"], 4) if m["baseline_tcp"]["median"] else None
    return out


def _result(
    args: argparse.Namespace,
    builds: list[float],
    ttfb: list[float],
    base: list[float] | None,
    started: float,
    loads: list[tuple[float, float, float]],
    size: int,
    tput: dict[str, Any],
    delay: str,
    topology: str,
) -> dict[str, Any]:
    rtt = 2 * args.delay_ms
    one_rtt = sum(k * rtt for k in (1, 2, 3))
    metrics = {
        "wan_circuit_build": metric(
            builds,
            "ms",
            hops=3,
            expected_1rtt_per_hop=one_rtt,
            expected_2rtt_per_hop=2 * one_rtt,
            source="client log event 'circuit built'",
        ),
        "wan_ttfb_new_connection": metric(ttfb, "ms", expected_1rtt_per_hop=one_rtt, expected_2rtt_per_hop=2 * one_rtt),
    }
    if base is not None:
        metrics["wan_tcp_ttfb"] = metric(
            base,
            "ms",
            what="plain TCP from the client's namespace to the target: connect + first byte",
            expected=rtt + args.delay_ms,
        )
    metrics.update(tput)
    for m in metrics.values():
        m["link_delay_ms_one_way"] = args.delay_ms
    return {
        "meta": {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "delay": delay,
            "topology": topology,
            "datagram_size": size,
            "load_avg_1_5_15": [[round(x, 2) for x in la] for la in loads],
            "seconds": round(time.monotonic() - started, 1),
        },
        "metrics": metrics,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    lab = NetnsLab(delay_ms=args.delay_ms)
    started = time.monotonic()
    loads = [os.getloadavg()]
    tmp = tempfile.TemporaryDirectory(prefix="gnet-wan-")
    net = targets = None
    try:
        hosts = {node: lab.add_host(node, 1) for node in NODES}
        delay = lab.add_delay() if args.delay_ms > 0 else "none (--delay-ms 0)"
        router = lab.delay_router_pid
        prefixes = {node: h.exec for node, h in hosts.items()}
        targets = Targets("0.0.0.0", prefix=prefixes["relay3"])
        relay_hosts = (hosts["relay1"].address, hosts["relay2"].address, hosts["relay3"].address)
        net = Network(
            Path(tmp.name),
            targets,
            relay_hosts=relay_hosts,
            relay_ports=[RELAY_PORT] * 3,
            prefixes=prefixes,
            target_host="127.0.0.1",
        )
        net.start()
        target = hosts["relay3"].address
        with InNamespace(hosts["client"].ns):
            from globalnet.link.path_mtu import datagram_size_for

            size = datagram_size_for((hosts["relay1"].address, RELAY_PORT))
            ttfb, builds = _measure(net, args.connections)
            base = [first_byte(target, targets.ports["hello"]) * 1000 for _ in range(args.connections)]
            loads.append(os.getloadavg())
            tput = _throughput(args, net, (target, targets.ports["source"]), router)
        loads.append(os.getloadavg())
        drops = {node: udp_drops(prefixes[node]) for node in NODES}
    finally:
        if net is not None:
            net.stop()
        if targets is not None:
            targets.stop()
        lab.close()
        tmp.cleanup()
    kind = "netem" if delay == "netem" else "tun-router" if delay.startswith("tun") else delay
    tput["wan_throughput_1stream"]["udp_rcvbuf_drops_whole_run"] = drops
    return _result(
        args,
        builds,
        ttfb,
        base,
        started,
        loads,
        size,
        tput,
        kind,
        f"client, relay1..3 in network namespaces of their own, joined by a router namespace; delay by {delay}: "
        f"one way {args.delay_ms} ms, RTT {2 * args.delay_ms} ms between nodes; targets beside the exit (relay3)",
    )


def main() -> int:
    p = argparse.ArgumentParser(
        description="circuit build, TTFB and throughput over 20 ms links, in network namespaces, "
        "beside plain TCP through the same router"
    )
    p.add_argument("--delay-ms", type=int, default=DELAY_MS)
    p.add_argument("--connections", type=int, default=10)
    p.add_argument("--size-mib", type=int, default=64, help="one download's size (8 downloads share it)")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument(
        "--mode",
        choices=("auto", "netns", "proxy"),
        default="auto",
        help="netns: namespaces + netem or the TUN delay router (root; skip if impossible); "
        "proxy: 127.0.0.1 + a UDP delay proxy (no TCP baseline); auto: netns, else proxy",
    )
    args = p.parse_args()
    reason = cannot_run()
    if args.mode == "netns" and reason:
        print(f"bench-wan skipped: {reason}")
        return 0
    result = None
    if args.mode != "proxy" and not reason:
        try:
            result = run(args)
        except LabUnavailable as exc:
            if args.mode == "netns":
                print(f"bench-wan skipped: {exc}")
                return 0
            reason = str(exc)
    if result is None:
        print(
            f"bench-wan: FALLBACK: no network namespaces with a delay here ({reason or '--mode proxy'});\n"
            f"  measuring with a userspace UDP delay proxy on 127.0.0.1 instead (no TCP baseline; --mode netns skips instead)"
        )
        result = run_proxy(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'metric':26} {'median':>8} {'expected, 1 RTT/hop':>20} {'2 RTT/hop':>10}  unit    TCP      ratio")
    for name, m in result["metrics"].items():
        exp1 = m.get("expected_1rtt_per_hop", m.get("expected", ""))
        exp2 = m.get("expected_2rtt_per_hop", "")
        tcp = m.get("baseline_tcp", {}).get("median", "")
        ratio = m.get("ratio", "")
        print(f"{name:26} {m['median']:8.1f} {exp1!s:>20} {exp2!s:>10}  {m['unit']:6}  {tcp!s:8} {ratio!s}")
        if "cpu_ms_per_mib" in m:
            print(
                f"{'':26} CPU ms/MiB: {m['cpu_ms_per_mib']}"
                + (f"; router for TCP: {m['baseline_tcp'].get('router_cpu_ms_per_mib')}" if "baseline_tcp" in m else "")
            )
    print(
        result["meta"]["topology"]
        + f"; datagram size {result['meta']['datagram_size']}; load {result['meta']['load_avg_1_5_15']}"
    )
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
