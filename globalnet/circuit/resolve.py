"""Turning a path spec's hops into concrete relays.

Explicit hops (`host:port[#id]`) pass through; a bare node id is looked up in
the peer table, then (if a resolver is given) in the DHT; `rand` hops are
chosen from the peer table by `paths.choose_relays`, the last one an exit that
allows the target. While the node still knows too few relays, resolution
waits (bounded) and says so in the log, instead of failing at once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable

import structlog

from ..errors import ErrorKind, GnetError
from ..peertable import PeerTable
from ..policy.exit_policy import ExitPolicy, udp_policy_from_summary
from ..wire.commands import Proto, RelayConnect
from ..wire.pathspec import Hop, HopAddr, HopId, HopRandom
from ..wire.records import NodeRecord, short_id
from .builder import HopTarget
from .paths import choose_relays, network_of

log = structlog.get_logger("globalnet.circuit")

RELAY_WAIT = 30.0
RecordLookup = Callable[[bytes], Awaitable[NodeRecord | None]]


def exit_allows(final: RelayConnect) -> Callable[[NodeRecord], bool] | None:
    """A predicate for the last hop of a path whose target is `final`."""
    if final.proto not in (Proto.TCP, Proto.UDP):
        return None
    announced: Callable[[str], ExitPolicy] = (
        ExitPolicy.from_summary if final.proto is Proto.TCP else udp_policy_from_summary
    )
    try:
        # `localhost` is loopback at every exit (resolved from its hosts file): choose by that
        address = ipaddress.ip_address("127.0.0.1" if final.host.lower() == "localhost" else final.host)
    except ValueError:
        address = None

    def allows(record: NodeRecord) -> bool:
        if not record.is_exit:
            return False
        policy = announced(record.exit_policy)
        if address is None:
            return policy.may_exit_to_port(final.port)
        return policy.check(address, final.port).allowed

    return allows


class PathResolver:
    def __init__(self, peers: PeerTable, lookup: RecordLookup | None = None) -> None:
        self.peers = peers
        self.lookup = lookup

    async def resolve(
        self, hops: tuple[Hop, ...], final: RelayConnect, wait: float = RELAY_WAIT, avoid: set[bytes] | None = None
    ) -> list[HopTarget]:
        """Concrete hops for `hops`; `rand` never picks a node in `avoid`."""
        fixed: dict[int, HopTarget] = {}
        for i, hop in enumerate(hops):
            if isinstance(hop, HopAddr):
                fixed[i] = HopTarget(hop.host, hop.port, hop.node_id)
            elif isinstance(hop, HopId):
                fixed[i] = await self._by_id(hop.node_id, i)
        rand_slots = [i for i, hop in enumerate(hops) if isinstance(hop, HopRandom)]
        if not rand_slots:
            return [fixed[i] for i in range(len(hops))]
        exit_check = exit_allows(final)
        slots = [exit_check if i == len(hops) - 1 else None for i in rand_slots]
        exclude = {self.peers.own_id} | {t.node_id for t in fixed.values() if t.node_id} | (avoid or set())
        avoid = {network_of_target(t) for t in fixed.values()}
        deadline = time.monotonic() + wait
        announced = 0.0
        while True:
            try:
                chosen = choose_relays(self.peers.relays(), slots, exclude, avoid)
                break
            except GnetError as exc:
                now = time.monotonic()
                if now >= deadline:
                    raise GnetError(ErrorKind.NO_ROUTE, f"gave up waiting for relays: {exc.detail}") from None
                if now - announced >= 5.0:
                    log.info(
                        "waiting for relays",
                        known=len(self.peers.relays()),
                        need=len(rand_slots) + len(fixed),
                        reason=exc.detail,
                    )
                    announced = now
                await asyncio.sleep(0.25)
        for i, record in zip(rand_slots, chosen):
            host, port = record.addresses[0]
            fixed[i] = HopTarget(host, port, record.node_id)
        return [fixed[i] for i in range(len(hops))]

    async def _by_id(self, node_id: bytes, index: int) -> HopTarget:
        record = self.peers.get(node_id)
        if record is None and self.lookup is not None:
            record = await self.lookup(node_id)
        if record is None or not record.addresses:
            raise GnetError(ErrorKind.NO_ROUTE, f"hop {index + 1} ({short_id(node_id)}): unknown node, no address found")
        host, port = record.addresses[0]
        return HopTarget(host, port, node_id)


def network_of_target(target: HopTarget) -> str:
    try:
        ip = ipaddress.ip_address(target.host)
    except ValueError:
        return target.host
    return str(ipaddress.ip_network(f"{ip}/{16 if ip.version == 4 else 32}", strict=False))


__all__ = ["PathResolver", "exit_allows", "network_of", "RELAY_WAIT"]
