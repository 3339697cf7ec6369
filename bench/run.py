"""`make bench`: a 3-hop tunnel of real gclient processes on 127.0.0.1, side by
side with plain loopback TCP to the same targets, in one run.

Prints a table and writes JSON (bench/results/latest.json): one object per
metric with `median`, `runs`, `unit`, and, where TCP has an equivalent,
`baseline_tcp` and `ratio` (tunnel / TCP). The machine's load average before
and after is in `meta`, because other work on the machine moves every figure.

How each figure is taken:
- throughput: the client downloads N bytes from a target through the tunnel;
  MiB/s = N / (first request byte .. last byte received).
- relay CPU: utime+stime of each relay process (/proc/PID/stat) across the
  single-connection downloads, divided by the MiB of payload relayed.
  `relay_cpu_ms_per_mib` is relay2, a pure bridge (XOR + forward); relay1 is a
  bridge too, relay3 is the exit (AEAD frames + TCP), listed separately.
- relay RSS: the largest VmRSS of a relay process sampled every 50 ms while
  the 8 connections run.
- concurrency (1 / 8 / 32 / 128 circuits at once, `--concurrency-mib` MiB in
  all at each level, one circuit per connection): aggregate MiB/s, relay2's
  (a bridge's) CPU per MiB, and the largest relay RSS, per level.
- RTT: one byte to an echo target and back, on one connection, TCP_NODELAY.
- time to first byte: connect() to the tunnel port until the first byte of a
  target that speaks first; every connection builds its own circuit.
- circuit build: measured where it happens: the client logs `circuit built`
  with `ms` (first hop stream opened .. the exit's RELAY_CONNECT_OK, the
  exit's TCP connect to the target included) at debug level in its JSON log,
  for the same connections as the time to first byte.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import hs_bench, udp_bench
from bench.measure import (
    MiB,
    Network,
    RssSampler,
    Targets,
    cpu_seconds,
    download,
    first_byte,
    metric,
    parallel_download,
    ping_pong,
    rss_mib,
)
from globalnet.crypto import BACKEND_NAME
from globalnet.localnet import ROOT

RESULTS = ROOT / "bench" / "results" / "latest.json"

#: The issue's targets: (metric, comparison, value).
TARGETS: dict[str, tuple[str, float]] = {
    "relay_cpu_ms_per_mib": ("<=", 20.0),
    "tunnel_throughput_1conn": (">=", 15.0),
    "tunnel_throughput_8conn": (">=", 25.0),
    "rtt_pingpong": ("<=", 2.0),
    "ttfb_new_connection": ("<=", 20.0),
    "circuit_build": ("<=", 15.0),
    "relay_rss": ("<=", 60.0),
    # hidden services: keep at least the figures measured before the descriptors were encrypted
    "hs_throughput_1conn": (">=", 16.3),
    "hs_first_connect": ("<=", 65.0),
    # issue 13 (congestion control and speed)
    "concurrency_1_throughput": (">=", 60.0),
    "concurrency_8_throughput": (">=", 50.0),
    "concurrency_128_throughput": (">=", 40.0),
    "concurrency_128_bridge_cpu": ("<=", 12.0),
}
CONCURRENCY = (1, 8, 32, 128)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False).stdout.strip()
    except OSError:
        return ""


def with_baseline(m: dict[str, Any], base_runs: list[float], higher_is_better: bool) -> dict[str, Any]:
    base = metric(base_runs, m["unit"])
    m["baseline_tcp"] = {"median": base["median"], "runs": base["runs"]}
    if base["median"]:
        m["ratio"] = round(m["median"] / base["median"], 4)
        m["ratio_meaning"] = "tunnel / tcp" + (" (1.0 = as fast as TCP)" if higher_is_better else " (times slower than TCP)")
    return m


def run(args: argparse.Namespace) -> dict[str, Any]:
    size = args.size_mib * MiB
    size8 = args.size8_mib * MiB
    loads = [os.getloadavg()]
    started = time.monotonic()
    metrics: dict[str, Any] = {}
    targets = Targets()
    tmp = tempfile.TemporaryDirectory(prefix="gnet-bench-")
    net = Network(Path(tmp.name), targets)
    try:
        net.start()
        pids = net.pids
        relays = ["relay1", "relay2", "relay3"]
        host = "127.0.0.1"
        tp = net.tunnel_ports
        # warm up: links relay1>relay2>relay3 come up with the first circuit
        download(host, tp["source"], 1 * MiB)
        first_byte(host, tp["hello"])

        # -- one connection, 100 MiB, with relay CPU ------------------------
        print(f"one connection, {args.size_mib} MiB x {args.runs} ...", flush=True)
        tput: list[float] = []
        cpu: dict[str, list[float]] = {name: [] for name in [*relays, "client"]}
        for _ in range(args.runs):
            before = {n: cpu_seconds(pids[n]) for n in cpu}
            took = download(host, tp["source"], size)
            after = {n: cpu_seconds(pids[n]) for n in cpu}
            tput.append(args.size_mib / took)
            for n, runs in cpu.items():
                runs.append((after[n] - before[n]) * 1000 / args.size_mib)
            loads.append(os.getloadavg())
        base = [args.size_mib / download(host, targets.ports["source"], size) for _ in range(args.runs)]
        metrics["tunnel_throughput_1conn"] = with_baseline(metric(tput, "MiB/s", size_mib=args.size_mib), base, True)
        metrics["relay_cpu_ms_per_mib"] = metric(cpu["relay2"], "ms CPU per MiB relayed", what="relay2: a bridge (XOR + forward), user+sys CPU")
        metrics["relay_cpu_ms_per_mib_relay1"] = metric(cpu["relay1"], "ms CPU per MiB relayed", what="relay1: a bridge, next to the client")
        metrics["exit_cpu_ms_per_mib"] = metric(cpu["relay3"], "ms CPU per MiB relayed", what="relay3: the exit (AEAD frames, TCP)")
        metrics["client_cpu_ms_per_mib"] = metric(cpu["client"], "ms CPU per MiB", what="the client (AEAD, 2 XOR layers, TCP)")

        # -- eight connections at once ---------------------------------------
        print(f"8 connections, {args.size8_mib} MiB each x {args.runs} ...", flush=True)
        with RssSampler([pids[n] for n in relays]) as sampler:
            agg = [8 * args.size8_mib / parallel_download(host, tp["source"], size8, 8) for _ in range(args.runs)]
        loads.append(os.getloadavg())
        base = [8 * args.size8_mib / parallel_download(host, targets.ports["source"], size8, 8) for _ in range(args.runs)]
        metrics["tunnel_throughput_8conn"] = with_baseline(metric(agg, "MiB/s", size_mib_each=args.size8_mib), base, True)
        peaks = [sampler.peak[pids[n]] for n in relays]
        metrics["relay_rss"] = metric(peaks, "MiB", what="largest VmRSS of each relay (relay1, relay2, relay3) during the 8-connection load; median = the middle one",
                                      max=round(max(peaks), 2), hwm=[round(rss_mib(pids[n])[1], 2) for n in relays])

        # -- 1 / 8 / 32 / 128 circuits at once ----------------------------------
        total = args.concurrency_mib
        print(f"concurrency {'/'.join(map(str, CONCURRENCY))} circuits, {total} MiB in all each ...", flush=True)
        for n in CONCURRENCY:
            each = max(64 * 1024, total * MiB // n)
            with RssSampler([pids[r] for r in relays]) as sampler:
                before = cpu_seconds(pids["relay2"])
                took = parallel_download(host, tp["source"], each, n)
                bridge = (cpu_seconds(pids["relay2"]) - before) * 1000 / (n * each / MiB)
            metrics[f"concurrency_{n}_throughput"] = metric([n * each / MiB / took], "MiB/s", circuits=n, mib_each=round(each / MiB, 3))
            metrics[f"concurrency_{n}_bridge_cpu"] = metric([round(bridge, 2)], "ms CPU per MiB relayed", what="relay2, a bridge")
            metrics[f"concurrency_{n}_rss"] = metric([max(sampler.peak[pids[r]] for r in relays)], "MiB", what="largest relay VmRSS")
            loads.append(os.getloadavg())

        # -- ping-pong ---------------------------------------------------------
        print(f"ping-pong, {args.rounds} rounds x {args.runs} ...", flush=True)
        rtt = [statistics.median(ping_pong(host, tp["echo"], args.rounds)) * 1000 for _ in range(args.runs)]
        base = [statistics.median(ping_pong(host, targets.ports["echo"], args.rounds)) * 1000 for _ in range(args.runs)]
        metrics["rtt_pingpong"] = with_baseline(metric(rtt, "ms", rounds_per_run=args.rounds, hops=3), base, False)

        # -- new connections: time to first byte, circuit build ---------------
        print(f"time to first byte, {args.connections} new connections ...", flush=True)
        seen = len(net.circuit_builds())
        ttfb = []
        for _ in range(args.connections):
            ttfb.append(first_byte(host, tp["hello"]) * 1000)
            time.sleep(0.02)
        time.sleep(0.3)  # let the client's log catch up
        builds = net.circuit_builds()[seen:]
        base = [first_byte(host, targets.ports["hello"]) * 1000 for _ in range(args.connections)]
        metrics["ttfb_new_connection"] = with_baseline(metric(ttfb, "ms", what="connect() to first byte; a new 3-hop circuit each"), base, False)
        if builds:
            metrics["circuit_build"] = metric(builds, "ms", hops=3, source="client log event 'circuit built' (debug, JSON)")
        else:  # a client that does not log the event (an older build)
            metrics["circuit_build"] = {"median": None, "runs": [], "unit": "ms", "hops": 3, "note": "no 'circuit built' events in the client's log"}
        loads.append(os.getloadavg())
        net.stop()
        print(f"hidden services: first connect, new connections, {args.hs_size_mib} MiB x {args.runs} ...", flush=True)
        metrics.update(hs_bench.measure(Path(tmp.name), targets, args.runs, args.hs_size_mib, args.connections))
        loads.append(os.getloadavg())
    finally:
        net.stop()
        targets.stop()
        tmp.cleanup()
    print("UDP: round-trip time and loss through a udp: tunnel ...", flush=True)
    metrics.update(udp_bench.measure(args.runs))
    loads.append(os.getloadavg())
    for name, (op, value) in TARGETS.items():
        m = metrics.get(name)
        if m is not None and m["median"] is not None:
            m["target"] = f"{op} {value:g}"
            m["target_met"] = m["median"] <= value if op == "<=" else m["median"] >= value
    return {
        "meta": {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "commit": git_commit(),
            "python": platform.python_version(),
            "crypto": BACKEND_NAME,
            "cpus": os.cpu_count(),
            "load_avg_1_5_15": [[round(x, 2) for x in la] for la in loads],
            "load_note": "os.getloadavg() at start, after each phase; other work on the machine lowers every figure",
            "seconds": round(time.monotonic() - started, 1),
            "network": "3 relays + client as gclient processes on 127.0.0.1; targets in their own process",
        },
        "metrics": metrics,
    }


def table(result: dict[str, Any]) -> str:
    rows = [("metric", "median", "unit", "TCP", "ratio", "target", "")]
    for name, m in result["metrics"].items():
        base = m.get("baseline_tcp", m.get("baseline_udp", {})).get("median")
        rows.append((
            name, "n/a" if m["median"] is None else f"{m['median']:.2f}", m["unit"], "" if base is None else f"{base:.2f}",
            f"{m['ratio']:.3f}" if "ratio" in m else "", m.get("target", ""),
            "" if "target_met" not in m else ("met" if m["target_met"] else "MISSED"),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    meta = result["meta"]
    lines.append(f"load avg (1/5/15 min) during the run: {meta['load_avg_1_5_15']}; {meta['seconds']} s; crypto {meta['crypto']}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--size-mib", type=int, default=100, help="one connection's download")
    p.add_argument("--size8-mib", type=int, default=16, help="each of the 8 connections' download")
    p.add_argument("--rounds", type=int, default=300, help="ping-pong rounds per run")
    p.add_argument("--concurrency-mib", type=int, default=64, help="MiB downloaded in all at each concurrency level")
    p.add_argument("--connections", type=int, default=15, help="new connections for time to first byte")
    p.add_argument("--hs-size-mib", type=int, default=50, help="one connection's download from a hidden service")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
