"""Hostile console clients: each is dropped (or refused), and the node answers the next one normally."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from globalnet.node import Node
from tests.console_net import Nc, cluster


async def still_fine(node: Node) -> None:
    """A well-behaved client still gets the greeting and real answers."""
    nc = await Nc.connect(node)
    assert node.identity.node_id.hex() in nc.greeting
    assert (await nc.cmd("stats")).startswith(f"node      {node.identity.node_id.hex()}")
    nc.close()


async def until_dropped(reader: asyncio.StreamReader) -> bytes:
    """Everything the console said before it closed the connection."""
    data = b""
    try:
        while chunk := await reader.read(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


async def test_a_very_long_line_drops_that_client(tmp_path: Path) -> None:
    async with asyncio.timeout(20), cluster(tmp_path) as c:
        node = await c.start("n", "-no-listen", "-console", "0")
        nc = await Nc.connect(node)
        nc.writer.write(b"send " + b"a" * 100_000)  # no newline, ever
        said = await until_dropped(nc.reader)
        assert b"error: line longer than 4096 bytes; closing" in said
        await still_fine(node)


async def test_binary_junk_drops_that_client(tmp_path: Path) -> None:
    async with asyncio.timeout(20), cluster(tmp_path) as c:
        node = await c.start("n", "-no-listen", "-console", "0")
        for junk in (bytes(range(256)) * 12 + b"\n", b"stats\x00\n", b"\xff\xfe\xfd\n", b"\x1b[2Jstats\n",
                     b"help\n" + os.urandom(2000).replace(b"\n", b"") + b"\n"):
            nc = await Nc.connect(node)
            nc.writer.write(junk)
            said = await until_dropped(nc.reader)
            assert said.endswith(b"error: this console reads text lines; closing\n")
        await still_fine(node)
        async with asyncio.timeout(5):  # and no client is left behind
            while node.console.clients:
                await asyncio.sleep(0.02)


async def test_thousands_of_commands_are_all_answered(tmp_path: Path) -> None:
    async with asyncio.timeout(30), cluster(tmp_path) as c:
        node = await c.start("n", "-no-listen", "-console", "0")
        nc = await Nc.connect(node)
        n = 5000
        nc.writer.write(b"list circuits\njson list links\nnonsense\n" * n + b"quit\n")
        bystander = asyncio.ensure_future(still_fine(node))  # served while the flood runs
        lines = (await until_dropped(nc.reader)).decode().splitlines()
        await bystander
        assert lines.count("no circuits") == n
        assert lines.count('{"ok": true, "command": "list links", "result": []}') == n
        assert lines.count("error: unknown command 'nonsense'; type 'help'") == n
        assert lines[-1] == "bye"


async def test_a_client_that_never_reads_is_dropped(tmp_path: Path) -> None:
    async with asyncio.timeout(30), cluster(tmp_path) as c:
        node = await c.start("n", "-no-listen", "-console", "0")
        assert node.console is not None
        node.console.write_timeout = 0.5
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, node.console.address)
        _, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"help\n" * 20_000)  # about 25 MB of replies, none of them read
        async with asyncio.timeout(10):
            while not node.console.clients:
                await asyncio.sleep(0.01)
            while node.console.clients:
                await asyncio.sleep(0.05)
        await still_fine(node)
        writer.close()


async def test_messages_to_a_client_that_never_reads_are_bounded(tmp_path: Path) -> None:
    async with asyncio.timeout(20), cluster(tmp_path) as c:
        node = await c.start("n", "-no-listen", "-console", "0")
        assert node.console is not None
        node.console.max_output = 16 * 1024
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, node.console.address)
        _, writer = await asyncio.open_connection(sock=sock)
        async with asyncio.timeout(5):
            while not node.console.clients:
                await asyncio.sleep(0.01)
        for i in range(20_000):  # messages for the node, shown to every console; past the kernel's buffers
            node.console.show_message(1, f"message {i} " + "x" * 4000)
            if not node.console.clients:
                break
            await asyncio.sleep(0)
        assert not node.console.clients
        await still_fine(node)
        writer.close()


async def test_client_limit_and_idle_timeout(tmp_path: Path) -> None:
    async with asyncio.timeout(20), cluster(tmp_path) as c:
        node = await c.start("n", "-no-listen", "-console", "0")
        assert node.console is not None
        node.console.max_clients = 3
        first = [await Nc.connect(node) for _ in range(3)]
        reader, writer = await asyncio.open_connection(*node.console.address)
        assert (await until_dropped(reader)) == b"error: too many console clients (3); try again later\n"
        writer.close()
        for nc in first:
            nc.close()
        async with asyncio.timeout(5):
            while node.console.clients:
                await asyncio.sleep(0.02)
        node.console.idle_timeout = 0.3
        idle = await Nc.connect(node)
        assert (await until_dropped(idle.reader)) == b"closing: idle for too long\n"
        node.console.idle_timeout = 60
        await still_fine(node)


async def test_console_binds_loopback_by_default(tmp_path: Path) -> None:
    async with asyncio.timeout(20), cluster(tmp_path) as c:
        node = await c.start("n", "-no-listen", "-console", "0")
        assert node.console is not None and node.console.address is not None
        assert node.console.address[0] == "127.0.0.1" and not node.console.allow_remote
        # another loopback address is still loopback: accepted
        reader, writer = await asyncio.open_connection(node.console.address[0], node.console.address[1],
                                                       local_addr=("127.0.0.2", 0))
        assert b"GlobalNet node" in await reader.readline()
        writer.close()


async def test_a_web_page_posting_to_the_console_runs_nothing(tmp_path: Path) -> None:
    """A page can make the browser POST text to 127.0.0.1:PORT; the body's lines must not run as commands."""
    async with asyncio.timeout(20), cluster(tmp_path) as c:
        node = await c.start("n", "-no-listen", "-console", "0")
        for first in (b"POST / HTTP/1.1\r\n", b"GET /?stats HTTP/1.0\r\n"):
            nc = await Nc.connect(node)
            nc.writer.write(first + b"Host: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nstats\n")
            said = await until_dropped(nc.reader)
            assert said.endswith(b"does not speak HTTP (a web page may be trying to reach it); closing\n")
            assert b"node      " not in said  # `stats` never ran
        await still_fine(node)
