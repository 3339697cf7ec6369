"""Real nodes (real QUIC on 127.0.0.1) inside the test's own event loop.

For tests that need to look inside a relay (what a bridge forwards) or to
speak the protocol wrongly on purpose; the process-level tests use
globalnet.localnet instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from globalnet.circuit.builder import ClientCircuit, HopTarget, build_circuit
from globalnet.endpoint.pump import StreamPump
from globalnet.identity import Identity
from globalnet.link.manager import LinkManager, LinkSettings
from globalnet.policy.exit_policy import ExitPolicy
from globalnet.policy.exit_rule import parse_exit_rule
from globalnet.relay.server import RelayService
from globalnet.wire.commands import Proto, RelayConnect
from tests.identities import next_identity


@dataclass
class InprocNode:
    identity: Identity
    links: LinkManager
    relay: RelayService | None
    port: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @property
    def hop(self) -> HopTarget:
        return HopTarget("127.0.0.1", self.port, self.identity.node_id)

    def close(self) -> None:
        for t in list(self.tasks):
            t.cancel()
        self.links.close()


async def start_relay(exit_allow: str | None = None) -> InprocNode:
    identity = next_identity()
    node = InprocNode(identity, None, None)  # type: ignore[arg-type]
    node.links = LinkManager(identity, lambda: identity.make_record((("127.0.0.1", node.port),)), LinkSettings(dial_timeout=5))
    _, node.port = await node.links.listen("127.0.0.1", 0)
    node.links.refresh_record()
    policy = ExitPolicy(True, [parse_exit_rule(exit_allow)]) if exit_allow else ExitPolicy(False)
    node.relay = RelayService(identity, node.links, policy, node.spawn)
    node.relay.setup_timeout = 1.0
    node.spawn(node.links.run_keepalive(), "keepalive")
    return node


def start_client() -> InprocNode:
    identity = next_identity()
    return InprocNode(identity, LinkManager(identity, lambda: identity.make_record(())), None)


async def open_circuit(client: InprocNode, relays: list[InprocNode], host: str, port: int) -> ClientCircuit:
    first = await client.links.get_link("127.0.0.1", relays[0].port, relays[0].identity.node_id)
    return await build_circuit(first, [r.hop for r in relays[1:]], RelayConnect(Proto.TCP, host, port))


async def attach_socket(circuit: ClientCircuit) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Task[None]]:
    """Give the circuit a real local TCP connection; return the application's end of it."""
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.get_running_loop().create_future()

    async def on_accept(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.set_result((r, w))

    server = await asyncio.start_server(on_accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    app_reader, app_writer = await asyncio.open_connection("127.0.0.1", port)
    reader, writer = await accepted
    server.close()
    assert circuit.core.session is not None
    pump = StreamPump(circuit.core.session, circuit, reader, writer)
    circuit.attach(pump)
    return app_reader, app_writer, asyncio.ensure_future(pump.run())
