"""TCP targets for the tests: servers on 127.0.0.1 that check what they got."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

from bench.targets import echo

CHUNK = 1 << 16


def pattern_chunks(n: int, seed: int = 7) -> Iterator[bytes]:
    """n reproducible pseudo-random bytes, in chunks (both ends can make them)."""
    rng = random.Random(seed)
    for i in range(0, n, CHUNK):
        yield rng.randbytes(min(CHUNK, n - i))


def pattern(n: int, seed: int = 7) -> bytes:
    return b"".join(pattern_chunks(n, seed))


class SinkServer:
    """Reads until EOF, records SHA-256 and size; replies with the hex digest."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.digests: list[str] = []
        self.resets = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        h = hashlib.sha256()
        got = bytearray()
        try:
            while chunk := await reader.read(1 << 16):
                h.update(chunk)
                if len(got) < 1 << 20:
                    got += chunk[: (1 << 20) - len(got)]
            self.received.append(bytes(got))
            self.digests.append(h.hexdigest())
            writer.write(h.hexdigest().encode())
            await writer.drain()
        except ConnectionError:
            self.resets += 1
            self.received.append(bytes(got))
        finally:
            writer.close()


class SourceServer:
    """Reads one line 'N\\n', then sends pattern(N) and closes."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            for chunk in pattern_chunks(int(line)):
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()


class EchoServer:
    """The bench's echo (bench/targets.py), so tests and bench measure one server."""

    handle = staticmethod(echo)


@asynccontextmanager
async def serve(handler: object) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler.handle, "127.0.0.1", 0)  # type: ignore[attr-defined]
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


class UdpEchoServer:
    """A UDP echo server on 127.0.0.1 in a thread of its own (answers every datagram to its sender)."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.received = 0
        self.senders: set[tuple[str, int]] = set()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except OSError:
                return
            self.received += 1
            self.senders.add(addr)
            try:
                self.sock.sendto(data, addr)
            except OSError:
                continue

    def stop(self) -> None:
        self.sock.close()
