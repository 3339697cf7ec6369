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
#: The peer table counts as settled (no longer learning) when no relay was new for this long.
SETTLED_AFTER = 2.0


class NoExitError(GnetError):
    """No known exit allows the target, and the node is no longer learning relays.

    `port` and `exits` are safe to log at info (no host)."""

    def __init__(self, port: int, exits: int, known: int) -> None:
        super().__init__(
            ErrorKind.EXIT_POLICY, f"no exit allows port {port} ({exits} exits considered among {known} known relays)"
        )
        self.port = port
        self.exits = exits
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
        #: Why the last path choice had to wait (no host named), for the error a
        #: caller gives when its own timeout ends the wait first.
        self.waiting_reason = ""

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
        avoid_networks = {network_of_target(t) for t in fixed.values()}
        deadline = time.monotonic() + wait
        announced = 0.0
        while True:
            relays = self.peers.relays()
            try:
                chosen = choose_relays(relays, slots, exclude, avoid_networks)
                self.waiting_reason = ""
                break
            except GnetError as exc:
                self.waiting_reason = f"still waiting for relays: {exc.detail}"
                if exit_check is not None and slots[-1] is exit_check:
                    self._refuse_if_no_exit(relays, slots, exclude, avoid_networks, exit_check, final.port)
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

    def _refuse_if_no_exit(
        self,
        relays: list[NodeRecord],
        slots: list[Callable[[NodeRecord], bool] | None],
        exclude: set[bytes],
        avoid: set[str],
        exit_check: Callable[[NodeRecord], bool],
        port: int,
    ) -> None:
        """Answer at once (NoExitError) when waiting cannot help: the table has stopped
        growing, holds enough relays for the path without the exit rule, and holds
        exits, none of which allows the target."""
        if time.time() - self.peers.last_new < SETTLED_AFTER:
            return  # still learning relays: one of the next may allow it
        # every known exit, whatever this path pins (a guard may be an exit): the verdict is about the target
        exits = [r for r in relays if r.is_exit and r.node_id != self.peers.own_id]
        if not exits or any(exit_check(r) for r in exits):
            return
        try:
            choose_relays(relays, [None] * len(slots), exclude, avoid)
        except GnetError:
            return  # too few relays yet, whatever the exit rule
        raise NoExitError(port, len(exits), len(relays))

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


__all__ = ["RELAY_WAIT", "NoExitError", "PathResolver", "exit_allows", "network_of"]
