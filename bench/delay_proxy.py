"""A UDP forwarder on 127.0.0.1 that holds every datagram for a fixed delay.

`make bench-wan`'s stand-in for netem where the kernel has no netem qdisc:
one proxy in front of each relay's listener, so every link crossing waits
DELAY ms each way, as netem on each node's link would. Run in its own process:

    python -m bench.delay_proxy DELAY_MS FRONT_PORT:BACK_PORT [...]

prints "ready" once listening; stops when stdin closes. Each peer address seen
on the front gets its own socket toward the back, so the relay behind sees
one peer per sender, as without the proxy. Loopback only.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

HOST = "127.0.0.1"


class _Back(asyncio.DatagramProtocol):
    """Toward the relay, for one front peer."""

    def __init__(self, front: _Front, peer: Any) -> None:
        self.front, self.peer = front, peer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.front.later(data, self.peer)


class _Front(asyncio.DatagramProtocol):
    def __init__(self, back_port: int, delay: float) -> None:
        self.back_port, self.delay = back_port, delay
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.DatagramTransport | None = None
        self.peers: dict[Any, _Back] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def later(self, data: bytes, peer: Any) -> None:
        assert self.transport is not None
        self.loop.call_later(self.delay, self.transport.sendto, data, peer)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        back = self.peers.get(addr)
        if back is None:
            back = _Back(self, addr)
            self.peers[addr] = back
            self.loop.create_task(self._open(back))
        self.loop.call_later(self.delay, self._forward, back, data)

    async def _open(self, back: _Back) -> None:
        await self.loop.create_datagram_endpoint(lambda: back, remote_addr=(HOST, self.back_port))

    def _forward(self, back: _Back, data: bytes) -> None:
        if back.transport is not None:
            back.transport.sendto(data)
        else:  # the back socket is still opening: retry shortly
            self.loop.call_later(0.0005, self._forward, back, data)


def _factory(back_port: int, delay: float) -> Callable[[], _Front]:
    return lambda: _Front(back_port, delay)


async def main(delay_ms: float, pairs: list[tuple[int, int]]) -> None:
    loop = asyncio.get_running_loop()
    for front, back in pairs:
        await loop.create_datagram_endpoint(_factory(back, delay_ms / 1000), local_addr=(HOST, front))
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    pairs = [tuple(int(p) for p in arg.split(":")) for arg in sys.argv[2:]]
    asyncio.run(main(float(sys.argv[1]), pairs))  # type: ignore[arg-type]
