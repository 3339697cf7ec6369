"""What the console and the metrics page read from a running node, as a typing.Protocol.

They show the node's insides (links, peers, circuits, guards, services), so the
protocol is wider than a face's usual one; it still names only lower layers and
sibling faces, never the node, so the console imports nothing above itself.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Protocol

from ..bootstrap import BootstrapTracker
from ..circuit.builder import ClientCircuit
from ..circuit.guard_store import GuardStore
from ..dht.participant import Dht
from ..dht.values import ValidValue
from ..identity import Identity
from ..link.manager import LinkManager
from ..messaging import MessageService, Messenger
from ..peertable import PeerTable
from ..policy.exit_policy import ExitPolicy
from ..relay.server import RelayService
from ..service.host import HostedService


class HasListen(Protocol):
    @property
    def listen(self) -> tuple[str, int] | None: ...


class ConsoleNode(Protocol):
    @property
    def identity(self) -> Identity: ...
    @property
    def config(self) -> HasListen: ...
    @property
    def links(self) -> LinkManager: ...
    @property
    def peers(self) -> PeerTable: ...
    @property
    def guards(self) -> GuardStore: ...
    @property
    def relay(self) -> RelayService: ...
    @property
    def exit_policy(self) -> ExitPolicy: ...
    @property
    def dht(self) -> Dht | None: ...
    @property
    def bootstrap(self) -> BootstrapTracker: ...
    @property
    def circuits(self) -> dict[int, ClientCircuit]: ...
    @property
    def services(self) -> list[HostedService]: ...
    @property
    def messages(self) -> MessageService: ...
    @property
    def messenger(self) -> Messenger: ...
    @property
    def console(self) -> Any: ...  # the ConsoleServer, when one runs
    @property
    def proxies(self) -> list[Any]: ...
    @property
    def started(self) -> float: ...

    def statistics(self) -> dict[str, Any]: ...
    def forget_circuit(self, circuit: ClientCircuit) -> None: ...
    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None: ...
    async def dht_lookup(self, key: bytes) -> ValidValue | None: ...
    async def dht_publish(self, key: bytes, value: bytes) -> int: ...
