"""Hidden services in `make bench`: first connect, time to first byte of a new connection,
throughput, with real gclient processes on 127.0.0.1.

Network: 6 relays, a service node hosting two services (`hello` -> the target
that speaks first, `source` -> the bulk source), and for each run a fresh
client process with one tunnel per service.
- first connect: a fresh client's first connection to `hello.gnet`: connect()
  to its tunnel port until the first byte, so descriptor lookup (through a
  circuit), decryption, rendezvous (two circuits to the access point and the
  service's join) and the end-to-end handshake are all in it;
- ttfb_new_connection: the same, once the descriptor is cached (every
  connection still makes its own rendezvous);
- throughput: one connection downloading N bytes from `source.gnet`.
Loopback TCP to the same targets is the baseline, as in bench/run.py.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from bench.measure import BenchNode, MiB, Targets, download, first_byte, free_ports, metric, node_id_of

RELAYS = 6


def _node(base: Path, name: str, args: list[str], port: int | None = None) -> BenchNode:
    data_dir = base / name
    data_dir.mkdir(parents=True, exist_ok=True)
    node = BenchNode(name, args, data_dir, listen_port=port)
    node.prefix = []
    node.node_id = node_id_of(data_dir)
    node.start()
    return node


def _retry_first_byte(port: int, deadline: float) -> float:
    """first_byte, retried while the client still learns relays (the tunnel resets early tries)."""
    while True:
        try:
            return first_byte("127.0.0.1", port)
        except (OSError, RuntimeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def measure(base: Path, targets: Targets, runs: int, size_mib: int, connections: int) -> dict[str, Any]:
    nodes: list[BenchNode] = []
    try:
        ports = free_ports(RELAYS)
        for i, port in enumerate(ports):
            connect = [] if i == 0 else ["-connect", f"127.0.0.1:{ports[0]}#{nodes[0].node_id}"]
            nodes.append(_node(base, f"hs-relay{i}", ["-listen", f"127.0.0.1:{port}", *connect], port))
        seed = f"127.0.0.1:{ports[0]}#{nodes[0].node_id}"
        host = _node(base, "hs-service", [
            "-no-listen", "-connect", seed,
            "-service", f"hello=127.0.0.1:{targets.ports['hello']}",
            "-service", f"source=127.0.0.1:{targets.ports['source']}",
        ])
        nodes.append(host)
        host.wait_for("service descriptor published", timeout=120, service="hello")
        host.wait_for("service descriptor published", timeout=120, service="source")
        addresses = {name: (base / "hs-service" / "services" / name / "hostname").read_text().strip() for name in ("hello", "source")}
        first: list[float] = []
        ttfb: list[float] = []
        tput: list[float] = []
        for run in range(runs):
            tunnel = dict(zip(("hello", "source"), free_ports(2, socket.SOCK_STREAM)))
            client = _node(base, f"hs-client{run}", [
                "-no-listen", "-connect", seed,
                *(a for name, port in tunnel.items() for a in ("-tunnel", f"{port}>{addresses[name]}")),
            ])
            nodes.append(client)
            for port in tunnel.values():
                client.wait_for("tunnel listening", listen=f"127.0.0.1:{port}")
            client.wait_for("learning relays", timeout=60, known=RELAYS)
            time.sleep(1.0)  # the DHT join settles (a real user starts the node before browsing)
            first.append(_retry_first_byte(tunnel["hello"], time.monotonic() + 60) * 1000)
            for _ in range(connections):
                ttfb.append(first_byte("127.0.0.1", tunnel["hello"]) * 1000)
            download("127.0.0.1", tunnel["source"], MiB)  # warm-up
            tput.append(size_mib / download("127.0.0.1", tunnel["source"], size_mib * MiB))
            client.stop()
        base_ttfb = [first_byte("127.0.0.1", targets.ports["hello"]) * 1000 for _ in range(connections)]
        base_tput = [size_mib / download("127.0.0.1", targets.ports["source"], size_mib * MiB) for _ in range(runs)]
    finally:
        for node in reversed(nodes):
            node.stop()
    return {
        "hs_first_connect": metric(first, "ms", what="a fresh client's first connection: descriptor lookup + decryption + rendezvous + handshake, to first byte"),
        "hs_ttfb_new_connection": {
            **metric(ttfb, "ms", what="a new connection, descriptor cached: rendezvous + handshake, to first byte"),
            "baseline_tcp": metric(base_ttfb, "ms"),
        },
        "hs_throughput_1conn": {
            **metric(tput, "MiB/s", size_mib=size_mib, what="one connection through the rendezvous (6 hops + end-to-end layer)"),
            "baseline_tcp": metric(base_tput, "MiB/s"),
        },
    }


def main() -> int:
    """`python -m bench.hs_bench`: only this part, merged into bench/results/latest.json."""
    import argparse
    import json
    import os
    import tempfile

    from bench.run import RESULTS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--size-mib", type=int, default=50)
    p.add_argument("--connections", type=int, default=10)
    args = p.parse_args()
    load = os.getloadavg()
    targets = Targets()
    try:
        with tempfile.TemporaryDirectory(prefix="gnet-hs-bench-") as tmp:
            metrics = measure(Path(tmp), targets, args.runs, args.size_mib, args.connections)
    finally:
        targets.stop()
    result = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"meta": {}, "metrics": {}}
    result["metrics"].update(metrics)
    result["meta"]["hs_load_avg_before_after"] = [[round(x, 2) for x in load], [round(x, 2) for x in os.getloadavg()]]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for name, m in metrics.items():
        base = m.get("baseline_tcp", {}).get("median")
        print(f"{name}: {m['median']} {m['unit']}" + (f" (TCP {base})" if base is not None else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
