"""A client node that measures, run inside a namespace by tests/test_netns.py.

It runs a whole `Node` (no listener) in this process, links to one relay,
waits until it knows the relays, then times what a client does:
- building a 3-hop `rand` circuit to the target (resolve, link to hop 1,
  three handshakes);
- DHT lookups of relays' node records through a `dht` circuit, as a node-id
  hop resolves an unknown id (the first lookup also builds that circuit).
It prints one JSON object on stdout.

    python -m tests.netns_probe --connect HOST:PORT#ID --data-dir DIR \\
        --target HOST:PORT --relays N --lookup ID[,ID...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from globalnet.config import load_config
from globalnet.errors import ErrorKind
from globalnet.logs import setup_logging
from globalnet.node import Node
from globalnet.wire.commands import Proto, RelayConnect
from globalnet.wire.pathspec import HopRandom
from globalnet.wire.records import short_id

BUILDS = 3


async def probe(args: argparse.Namespace) -> dict[str, Any]:
    node = Node(load_config(["-no-listen", "-connect", args.connect, "-data-dir", args.data_dir]))
    runner = asyncio.create_task(node.run())
    out: dict[str, Any] = {"builds_ms": [], "build_hops": [], "lookups": []}
    try:
        async with asyncio.timeout(args.timeout):
            await node.ready.wait()
            while len(node.peers.relays()) < args.relays:
                await asyncio.sleep(0.05)
            out["relays_known"] = len(node.peers.relays())
            host, port = args.target.rsplit(":", 1)
            final = RelayConnect(Proto.TCP, host, int(port))
            for _ in range(BUILDS):
                started = time.perf_counter()
                circuit = await node.open_circuit((HopRandom(), HopRandom(), HopRandom()), final, "probe")
                out["builds_ms"].append(round((time.perf_counter() - started) * 1000, 1))
                out["build_hops"].append([short_id(h) for h in circuit.path])
                circuit.reset(ErrorKind.CLOSED)
                node.forget_circuit(circuit)
            for key in args.lookup.split(","):
                started = time.perf_counter()
                found = await node.dht_lookup(bytes.fromhex(key))
                out["lookups"].append(
                    {"key": key[:8], "found": found is not None, "ms": round((time.perf_counter() - started) * 1000, 1)}
                )
    finally:
        node.stop()
        await runner
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connect", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--relays", type=int, required=True, help="wait until this many relays are known")
    parser.add_argument("--lookup", required=True, help="comma-separated node ids to look up")
    parser.add_argument("--timeout", type=float, default=40.0)
    args = parser.parse_args()
    setup_logging("warning")
    print(json.dumps(asyncio.run(probe(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
