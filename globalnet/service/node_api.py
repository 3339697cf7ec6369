"""What the service layer and the faces above it need from the node, as typing.Protocols.

Defined here (below the faces) so neither service/ nor a face imports the node:
each names only what it uses, and node.Node satisfies all of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from ..circuit.builder import ClientCircuit
from ..circuit.opener import CircuitOpener
from ..circuit.resolve import PathResolver
from ..dht.values import ValidValue
from ..link.manager import LinkManager
from ..peertable import PeerTable
from ..relay.server import RelayService
from ..wire.commands import RelayConnect
from ..wire.pathspec import TargetTcp
from .access_point_failures import AccessPointFailures

#: A face (SOCKS, -tunnel) waits this many times longer for a service connection than for a
#: circuit to the internet: a descriptor lookup, two circuits (ours to an access point, the
#: service's join), a handshake, and perhaps the next access point when a rendezvous breaks
#: (service/client.py). With the default 30 s, 60 s; Tor allows 120 s for any SOCKS request.
SERVICE_TIMEOUT_FACTOR = 2.0


class ServiceClientNode(CircuitOpener, Protocol):
    """Reaching a hidden service: its descriptor from the DHT, then circuits."""

    service_descriptors: dict[bytes, Any]
    access_point_failures: AccessPointFailures  # tried last next time

    @property
    def client_auth_key(self) -> bytes | None: ...  # our key for services that admit only listed clients

    async def dht_lookup(self, key: bytes) -> ValidValue | None: ...


class HasDataDir(Protocol):
    @property
    def data_dir(self) -> Path: ...


class ServiceHostNode(CircuitOpener, Protocol):
    """Hosting a hidden service: access points, descriptors, the relay side of sessions."""

    @property
    def config(self) -> HasDataDir: ...
    @property
    def relay(self) -> RelayService: ...
    @property
    def peers(self) -> PeerTable: ...
    @property
    def links(self) -> LinkManager: ...

    def service_published(self, name: str) -> None: ...

    async def dht_publish(self, key: bytes, value: bytes) -> int: ...


class ServiceOpener(CircuitOpener, Protocol):
    """What a face (SOCKS, tunnels, messages) uses: circuits, hidden services, why a path waits."""

    @property
    def resolver(self) -> PathResolver: ...

    async def open_service(
        self, address: str, then: TargetTcp | None, purpose: str, command: RelayConnect | None = None
    ) -> ClientCircuit: ...
