"""Whole nodes (globalnet.node.Node) in the test's event loop, on real QUIC over 127.0.0.1.

Cheaper than one process per node, so tests can run 10-25 nodes; each node
still has its own identity, data dir, links and DHT.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from globalnet.config import load_config
from globalnet.localnet import free_port
from globalnet.node import Node
from tests.identities import seed_identity_file


class Net:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.nodes: list[Node] = []
        self.tasks: dict[Node, asyncio.Task[None]] = {}

    async def start(self, name: str, *args: str, port: int | None = None) -> Node:
        listen = [] if "-no-listen" in args else ["-listen", f"127.0.0.1:{port or free_port(socket.SOCK_DGRAM)}"]
        seed_identity_file(self.base / name)  # solved beforehand: no id puzzle at start
        node = Node(load_config([*listen, "-data-dir", str(self.base / name), *args]))
        self.tasks[node] = asyncio.create_task(node.run())
        await asyncio.wait_for(node.ready.wait(), 10)
        self.nodes.append(node)
        return node

    async def stop(self, node: Node) -> None:
        node.stop()
        await asyncio.wait_for(self.tasks.pop(node), 10)
        self.nodes.remove(node)

    async def stop_all(self) -> None:
        """Every node at once: each one's shutdown (links closed, peers saved, CLOSE frames
        given time to leave) overlaps the others'."""
        await asyncio.gather(*(self.stop(node) for node in list(self.nodes)))


@asynccontextmanager
async def network(base: Path) -> AsyncIterator[Net]:
    net = Net(base)
    try:
        yield net
    finally:
        await net.stop_all()


def pinned(node: Node) -> str:
    assert node.links.listen_address is not None
    host, port = node.links.listen_address
    return f"{host}:{port}#{node.identity.node_id.hex()}"


async def until(predicate, timeout: float, step: float = 0.25) -> bool:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return predicate()


