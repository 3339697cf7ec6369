"""The debug console's TCP server: lines in, text out, for `nc 127.0.0.1 PORT`.

Theory of operation. The asyncio shell around `commands.Console`. Each client
is one node-owned task that reads a line, runs it and writes the reply: a
client's lines run in order, clients run side by side. No client can cost the
node more than a bound:
- at most MAX_CLIENTS at once (the next one is told so and closed);
- a line longer than MAX_LINE, or a line that is not text (not UTF-8, or
  control characters), ends that client after one line saying why;
- replies and messages waiting for a client that does not read are capped
  at MAX_OUTPUT, and a reply must drain within WRITE_TIMEOUT: past either,
  the client is dropped;
- a client silent for IDLE_TIMEOUT is closed.
Messages for this node (MessageService) are written to every client.

Who may connect: the console binds 127.0.0.1 unless `-console HOST:PORT`
names another address. Binding a non-loopback address is the configuration
that lets other hosts in (the node warns at start); otherwise a peer that is
not loopback is refused on accept, whatever the socket was bound to.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from .. import __version__
from .commands import Console
from .node_api import ConsoleNode
from .view import NodeConsoleView

log = structlog.get_logger("globalnet.console")

MAX_LINE = 4096
MAX_CLIENTS = 16
MAX_OUTPUT = 256 * 1024
WRITE_TIMEOUT = 10.0
IDLE_TIMEOUT = 3600.0

Spawn = Callable[[Coroutine[Any, Any, None], str], None]


def is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def admission(peer: Any, allow_remote: bool, clients: int, max_clients: int) -> str | None:
    """Why a new connection is refused, or None to accept it."""
    host = peer[0] if isinstance(peer, (tuple, list)) and peer else None
    if not allow_remote and (not isinstance(host, str) or not is_loopback(host)):
        return "not a loopback address"
    if clients >= max_clients:
        return f"too many console clients ({max_clients}); try again later"
    return None


def is_text(line: str) -> bool:
    """No control characters (C0, DEL, C1; tab allowed): what a person types or pastes into nc."""
    return not any((ord(ch) < 0x20 and ch != "\t") or 0x7F <= ord(ch) < 0xA0 for ch in line)


class ConsoleClient:
    def __init__(self, server: ConsoleServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.closed = False

    def write(self, text: str) -> bool:
        """Queue one reply (or message) line(s); drops the client if it is not reading."""
        if self.closed:
            return False
        self.writer.write(text.encode("utf-8") + b"\n")
        if self.writer.transport.get_write_buffer_size() > self.server.max_output:
            self.drop("it does not read its output")
            return False
        return True

    def drop(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            log.info("console client dropped", reason=reason)
            self.writer.transport.abort()

    async def serve(self) -> None:
        try:
            self.write(self.server.greeting)
            while not self.closed:
                line = await self._read_line()
                if line is None:
                    break
                out = await self.server.console.execute(line)
                if out is not None and not self.write(out.text):
                    break
                if out is not None and out.close:
                    break
                await self._drain()
                await asyncio.sleep(0)  # thousands of pipelined commands must not starve the node
        finally:
            self.closed = True
            self.server.clients.discard(self)
            self.writer.close()

    async def _read_line(self) -> str | None:
        try:
            async with asyncio.timeout(self.server.idle_timeout):
                raw = await self.reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            self.write(f"error: line longer than {MAX_LINE} bytes; closing")
            await self._drain()
            self.drop("line too long")
            return None
        except asyncio.IncompleteReadError as exc:  # EOF: run a last line without newline
            raw = exc.partial
            if not raw:
                return None
        except TimeoutError:
            self.write("closing: idle for too long")
            return None
        except (ConnectionError, OSError):
            return None
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            line = "\x00"
        if not is_text(line):
            self.write("error: this console reads text lines; closing")
            await self._drain()
            self.drop("binary input")
            return None
        return line

    async def _drain(self) -> None:
        if self.closed:
            return
        try:
            async with asyncio.timeout(self.server.write_timeout):
                await self.writer.drain()
        except TimeoutError:
            self.drop("it does not read its output")
        except (ConnectionError, OSError):
            self.drop("connection lost")


class ConsoleServer:
    def __init__(
        self,
        console: Console,
        spawn: Spawn,
        greeting: str,
        allow_remote: bool = False,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.console = console
        self.spawn = spawn
        self.greeting = greeting
        self.allow_remote = allow_remote
        self.max_clients = max_clients
        self.max_output = MAX_OUTPUT
        self.write_timeout = WRITE_TIMEOUT
        self.idle_timeout = IDLE_TIMEOUT
        self.clients: set[ConsoleClient] = set()
        self.address: tuple[str, int] | None = None
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._accept, host, port, limit=MAX_LINE)
        sockname = self._server.sockets[0].getsockname()
        self.address = (sockname[0], sockname[1])
        return self.address

    def address_text(self) -> str:
        if self.address is None:
            return "-"
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        refusal = admission(writer.get_extra_info("peername"), self.allow_remote, len(self.clients), self.max_clients)
        if refusal is not None:
            if refusal.startswith("not a loopback"):
                log.warning("console connection refused", reason=refusal)
            else:
                log.info("console connection refused", reason=refusal)
            if not refusal.startswith("not a loopback"):
                writer.write(f"error: {refusal}\n".encode())
            writer.close()
            return
        client = ConsoleClient(self, reader, writer)
        self.clients.add(client)
        log.debug("console client connected", clients=len(self.clients))
        self.spawn(client.serve(), "console client")

    def show_message(self, circuit_id: int, text: str) -> None:
        """A message for this node (text already escaped to one line): show it to every client."""
        for client in list(self.clients):
            client.write(f"message from circuit {circuit_id}: {text}")

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for client in list(self.clients):
            client.write("the node is stopping")
            client.closed = True
            client.writer.close()


async def start_console(node: ConsoleNode, host: str, port: int) -> ConsoleServer:
    """The console of a running node, on host:port, showing the node's messages."""
    greeting = (
        f"GlobalNet node {node.identity.node_id.hex()} (gclient {__version__}). "
        "Type 'help' for the commands, 'quit' to leave."
    )
    server = ConsoleServer(Console(NodeConsoleView(node)), node.spawn, greeting, allow_remote=not is_loopback(host))
    await server.start(host, port)
    node.messages.listeners.append(server.show_message)
    if server.allow_remote:
        log.warning("the console accepts other hosts: whoever reaches it controls this node", console=server.address_text())
    return server
