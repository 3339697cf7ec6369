"""`make memory`: what an idle relay costs in memory (RSS, PSS, anonymous), in real processes.

    python -m bench.node_memory [--relays N] [--idle SECONDS] [--out FILE]

A seed relay and N relays that link to it, all real `gclient` processes on
127.0.0.1 (`python -m globalnet`, as make testnet starts them), logging at
info level like a user's node. After SECONDS of idling (links up, DHT joined,
nothing relayed) it reads /proc/PID/smaps_rollup of every relay and prints the
median relay's numbers, and what the process imported that an idle relay
should not (faces, prometheus_client, rich; `cryptography` on the C backend).

Why PSS beside RSS: RSS counts every page of the shared libraries (libpython,
OpenSSL, qh3, libsodium: ~17 MiB) in full in every process; PSS divides them
among the processes that share them. On a machine running many nodes, a node
costs about its PSS, which tends to its anonymous memory as nodes are added.
The summary goes to bench/results/node_memory.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.measure import memory_mib
from globalnet.localnet import ROOT, LocalNet

#: Modules an idle relay has no use for: loaded means a face or a dependency came in eagerly
#: (tests/test_idle_relay.py checks a running relay against the same list).
NOT_FOR_IDLE = ("globalnet.socks", "globalnet.tunnel", "globalnet.udp_tunnel", "globalnet.console.server",
                "globalnet.metrics.registry", "globalnet.metrics.server", "prometheus_client", "rich",
                "globalnet.site.cache", "globalnet.site.mirror", "globalnet.site.remote", "globalnet.site.sessions",
                "globalnet.messaging", "globalnet.service.host", "globalnet.service.client",
                "tomllib", "difflib", "ctypes", "html")  # fmt: skip


def imported_by_a_node() -> list[str]:
    """What `python -m globalnet` imports before it runs a relay (same entry, in a child process)."""
    import subprocess

    code = (
        "import sys, globalnet; globalnet.prepare_node_process()\n"
        "import globalnet.cli, globalnet.node, globalnet.crypto\n"
        "print(globalnet.crypto.BACKEND_NAME, len([m for m in sys.modules.values() if m]))\n"
        "print(' '.join(n for n, m in sys.modules.items() if m))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    head, names = out.stdout.split("\n", 1)
    loaded = set(names.split())
    backend, count = head.split()
    unexpected = [m for m in NOT_FOR_IDLE if m in loaded]
    if backend == "cext" and "cryptography" in loaded:
        unexpected.append("cryptography")
    return [f"backend={backend}", f"modules={count}", *(f"unexpected={m}" for m in unexpected)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--relays", type=int, default=3, help="idle relays measured besides the seed (default 3)")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds to idle before measuring (default 30)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "node_memory.json"))
    ns = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="gnet-memory-"))
    net = LocalNet(base, log_level="info")
    try:
        seed = net.relay("seed")
        relays = [net.relay(f"relay{i}", "-connect", seed.address) for i in range(ns.relays)]
        for relay in relays:
            relay.wait_for("node started", timeout=120)
        time.sleep(ns.idle)
        dead = net.dead()
        if dead is not None:
            print(f"node_memory: {dead.name} exited; see {base}", file=sys.stderr)
            return 1
        per_relay = [memory_mib(r.proc.pid) for r in relays if r.proc is not None]
        seed_memory = memory_mib(seed.proc.pid) if seed.proc is not None else {}
    finally:
        net.stop_all()
    median = {key: round(statistics.median(m[key] for m in per_relay), 1) for key in per_relay[0]}
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "what": f"idle relay after {ns.idle:g} s, linked to a seed; median of {len(per_relay)} relays; MiB",
        "command": "python -m bench.node_memory " + " ".join(sys.argv[1:]),
        "median": median,
        "relays": per_relay,
        "seed": {"links": ns.relays, **seed_memory},  # the seed holds a link to every relay
        "imports": imported_by_a_node(),
    }
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"idle relay (median of {len(per_relay)}): RSS {median['rss']} MiB, PSS {median['pss']} MiB, "
          f"anonymous {median['anon']} MiB, shared libraries {median['shared']} MiB")  # fmt: skip
    print(f"seed with {ns.relays} links: " + ", ".join(f"{k} {v}" for k, v in seed_memory.items()))
    print("imports: " + ", ".join(result["imports"]))  # type: ignore[arg-type]
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
