"""CPU per chunk of a bridge's hot path, in one process: no QUIC, no sockets.

`make bench` measures a relay's whole CPU per MiB (mostly qh3), which swings
with the machine's load. This isolates what GlobalNet itself does per chunk
on a bridge (RelayHop.stream_data / from_downstream around BridgeCore: XOR,
queue cap, forward) with fake streams, best of 5, so a refactor of the hot
path can be compared before/after even on a busy machine:

    .venv/bin/python -m bench.hot_path [--tree PATH]   # PATH: another checkout to compare
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any, ClassVar

CHUNK = 1350  # about one QUIC packet's stream data
CALLS = 200_000


class _FakeStream:
    finished_receiving = False
    handler: Any = None

    class link:  # stands in for HopStream.link
        @staticmethod
        def label() -> str:
            return "bench"

    def send(self, data: bytes | bytearray, end: bool = False) -> None:
        pass

    def buffered(self) -> int:
        return 0

    def reset(self, kind: object) -> None:
        pass


async def _measure() -> float:
    from globalnet.crypto import Keystream
    from globalnet.identity import Identity
    from globalnet.relay import server
    from globalnet.relay.bridge import BridgeCore

    class _Relay:
        identity = Identity.generate()
        setup_timeout = 10.0
        hops: ClassVar[set[Any]] = set()
        bytes_relayed = 0

        @staticmethod
        def spawn(coro: Any, name: str) -> None:
            coro.close()

    hop = server.RelayHop(_Relay(), _FakeStream())  # type: ignore[arg-type]
    hop.downstream = _FakeStream()  # type: ignore[assignment]
    hop.bridge = BridgeCore(Keystream(os.urandom(32)), Keystream(os.urandom(32)), 1 << 40)
    chunk = os.urandom(CHUNK)
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(CALLS):
            hop.stream_data(chunk, False)
            hop.from_downstream(chunk, False)
        best = min(best, time.process_time() - start)
    from globalnet.errors import ErrorKind

    hop.close(ErrorKind.CLOSED, "bench over")
    return best / (2 * CALLS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", default=None, help="import globalnet from this checkout instead")
    args = p.parse_args()
    if args.tree:
        sys.path.insert(0, args.tree)
    per_chunk = asyncio.run(_measure())
    print(f"bridge hot path: {per_chunk * 1e9:.0f} ns per {CHUNK}-byte chunk = {per_chunk / CHUNK * (1 << 20) * 1000:.2f} ms CPU per MiB")


if __name__ == "__main__":
    main()
