"""TCP targets for `make bench`, in a process of their own (so their CPU is not
the measuring process's): prints one JSON line with the ports, serves until
stdin closes.

- source: reads a line 'N\\n', sends N bytes as fast as the socket takes them,
  closes.
- echo:   echoes every byte (the ping-pong RTT).
- hello:  sends one byte as soon as a connection is accepted (time to first
  byte), then waits for the peer to close.

Only 127.0.0.1 (or the address given, inside the bench's own namespace).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys

CHUNK = bytes(range(256)) * 1024  # 256 KiB, reused: the bench measures transport, not data generation


async def source(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        n = int(await reader.readline())
        view = memoryview(CHUNK)
        while n > 0:
            take = min(n, len(CHUNK))
            writer.write(view[:take])
            n -= take
            await writer.drain()
        await writer.drain()
    except (ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while chunk := await reader.read(1 << 16):
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        writer.write(b"!")
        await writer.drain()
        await reader.read()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(host: str) -> None:
    ports = {}
    servers = []
    for name, handler in (("source", source), ("echo", echo), ("hello", hello)):
        server = await asyncio.start_server(handler, host, 0)
        servers.append(server)
        ports[name] = server.sockets[0].getsockname()[1]
    print(json.dumps(ports), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the bench closes our stdin
    for server in servers:
        server.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"))
