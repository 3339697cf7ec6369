"""In-process Nodes (real QUIC and TCP on 127.0.0.1) and a netcat-like console client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from globalnet.config import load_config
from globalnet.node import Node
from tests.identities import next_identity

#: A line no command prints: sent after a command, its error marks the end of the reply.
END_MARK = "zz-end-of-reply"


class Cluster:
    """Nodes running in the test's event loop, each from the same flags gclient takes."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.runs: list[tuple[Node, asyncio.Task[None]]] = []

    async def start(self, name: str, *args: str) -> Node:
        config = load_config(["-data-dir", str(self.base / name), *args])
        node = Node(config, next_identity())
        task = asyncio.create_task(node.run())
        ready = asyncio.create_task(node.ready.wait())
        await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # raises what went wrong
        assert ready.done(), f"{name} did not start"
        self.runs.append((node, task))
        return node

    async def relay(self, name: str, *args: str) -> Node:
        return await self.start(name, "-listen", "127.0.0.1:0", *args)

    async def stop(self) -> None:
        for node, _ in reversed(self.runs):
            node.stop()
        await asyncio.wait_for(asyncio.gather(*(t for _, t in self.runs), return_exceptions=True), 10)


@contextlib.asynccontextmanager
async def cluster(base: Path) -> AsyncIterator[Cluster]:
    c = Cluster(base)
    try:
        yield c
    finally:
        await c.stop()


def pinned(node: Node) -> str:
    assert node.links.listen_address is not None
    host, port = node.links.listen_address
    return f"{host}:{port}#{node.identity.node_id.hex()}"


async def wait_linked(node: Node, *peers: Node, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not all(p.identity.node_id in node.links.links for p in peers):
            await asyncio.sleep(0.02)


class Nc:
    """What `nc 127.0.0.1 PORT` does: lines out, lines in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, greeting: str) -> None:
        self.reader = reader
        self.writer = writer
        self.greeting = greeting

    @classmethod
    async def connect(cls, node: Node) -> Nc:
        assert node.console is not None and node.console.address is not None
        reader, writer = await asyncio.open_connection(*node.console.address)
        greeting = (await asyncio.wait_for(reader.readline(), 5)).decode().rstrip("\n")
        return cls(reader, writer, greeting)

    async def line(self, timeout: float = 10) -> str:
        raw = await asyncio.wait_for(self.reader.readline(), timeout)
        if not raw:
            raise EOFError("console closed the connection")
        return raw.decode().rstrip("\n")

    async def cmd(self, command: str, timeout: float = 30) -> str:
        """Run one command; returns its whole reply (lines other than messages)."""
        self.writer.write(f"{command}\n{END_MARK}\n".encode())
        await self.writer.drain()
        lines = []
        while True:
            line = await self.line(timeout)
            if END_MARK in line:
                return "\n".join(lines)
            if not line.startswith("message from circuit"):
                lines.append(line)

    async def wait_for_line(self, prefix: str, timeout: float = 10) -> str:
        async with asyncio.timeout(timeout):
            while True:
                line = await self.line(timeout)
                if line.startswith(prefix):
                    return line

    def close(self) -> None:
        self.writer.close()
