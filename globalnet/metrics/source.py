"""What the metrics face reads from a node: one snapshot and the traffic totals.

Why a Protocol and plain rows: the status page must show nothing the console
would not show its owner, and the narrowest way to be sure is to hand this
face only the fields it renders (short peer ids, counts, no addresses, no
destinations, no keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class MetricsSettings:
    host: str = "127.0.0.1"
    port: int = 9100
    history_seconds: float = 300.0  # how far back the bandwidth graphs go
    sample_every: float = 2.0


@dataclass(frozen=True)
class LinkRow:
    peer: str  # short node id
    age: float
    rtt_ms: float | None
    streams: int
    bytes_in: int
    bytes_out: int


@dataclass(frozen=True)
class CircuitRow:
    id: int
    purpose: str
    hops: int
    state: str
    age: float


@dataclass(frozen=True)
class NodeStatus:
    node_id: str
    role: str  # "relay", "relay + exit", "client"
    version: str
    uptime: float
    bootstrap: dict[str, Any]
    relays_known: int
    guards: tuple[str, ...] = ()
    links: tuple[LinkRow, ...] = ()
    circuits: tuple[CircuitRow, ...] = ()
    circuits_by_role: dict[str, int] = field(default_factory=dict)  # client, bridge, exit, message
    bytes_relayed: int = 0
    socks_replies: dict[int, int] = field(default_factory=dict)  # reply code -> count
    rss_bytes: int | None = None
    dht_contacts: int = 0


class MetricsSource(Protocol):
    def snapshot(self) -> NodeStatus: ...

    def traffic(self) -> tuple[int, int]:
        """Stream bytes (in, out) over every link, ever: monotonic."""
        ...
