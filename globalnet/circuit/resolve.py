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
from ..policy.before_dns import name_refusal
from ..policy.exit_policy import ExitPolicy
from ..wire.commands import Proto, RelayConnect
from ..wire.pathspec import Hop, HopAddr, HopId, HopRandom
from ..wire.records import NodeRecord, short_id
from .builder import HopTarget
from .guards import GuardEvent, GuardStore
from .paths import choose_relays, network_of

log = structlog.get_logger("globalnet.circuit")

RELAY_WAIT = 30.0
RecordLookup = Callable[[bytes], Awaitable[NodeRecord | None]]


def exit_allows(final: RelayConnect) -> Callable[[NodeRecord], bool] | None:
    """A predicate for the last hop of a path whose target is `final`."""
    if final.proto is not Proto.TCP:
        return None
    try:
        # `localhost` is loopback at every exit (resolved from its hosts file): choose by that
        address = ipaddress.ip_address("127.0.0.1" if final.host.lower() == "localhost" else final.host)
    except ValueError:
        address = None

    def allows(record: NodeRecord) -> bool:
        if not record.is_exit:
            return False
        policy = ExitPolicy.from_summary(record.exit_policy)
        if address is None:  # a name: an exit that would refuse it unresolved is no use
            return name_refusal(policy, final.host, final.port) is None
        return policy.check(address, final.port).allowed

    return allows


class PathResolver:
    def __init__(self, peers: PeerTable, lookup: RecordLookup | None = None, guards: GuardStore | None = None) -> None:
        self.peers = peers
        self.lookup = lookup
        self.guards = guards

    async def resolve(
        self,
        hops: tuple[Hop, ...],
        final: RelayConnect,
        wait: float = RELAY_WAIT,
        avoid: set[bytes] | None = None,
        layer2: bool = False,
    ) -> list[HopTarget]:
        """Concrete hops for `hops`; `rand` never picks a node in `avoid`.

        A `rand` first hop of a path of two hops or more is one of our guards;
        with `layer2` (service and DHT circuits) a `rand` second hop is a vanguard.
        A first hop the user pinned (address or node id) is used as written.
        """
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
        nets = {network_of_target(t) for t in fixed.values()}
        deadline = time.monotonic() + wait
        announced = 0.0
        while True:
            try:
                relays = self.peers.relays()
                # the exit first (the scarce one), then the guard and vanguard, then the rest
                exits = [(i, slot) for i, slot in zip(rand_slots, slots) if slot is not None]
                chosen = dict(zip((i for i, _ in exits), choose_relays(relays, [s for _, s in exits], exclude, nets)))
                used = exclude | {r.node_id for r in chosen.values()}
                layered = self._layers(hops, relays, used, layer2)
                used |= {t.node_id for t in layered.values() if t.node_id}
                taken_nets = nets | {network_of_target(t) for t in layered.values()} | {network_of(r) for r in chosen.values()}
                free = [i for i in rand_slots if i not in layered and i not in chosen]
                chosen.update(zip(free, choose_relays(relays, [None] * len(free), used, taken_nets)))
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
        fixed.update(layered)
        for i, record in chosen.items():
            host, port = record.addresses[0]
            fixed[i] = HopTarget(host, port, record.node_id)
        return [fixed[i] for i in range(len(hops))]

    def _layers(
        self, hops: tuple[Hop, ...], relays: list[NodeRecord], exclude: set[bytes], layer2: bool
    ) -> dict[int, HopTarget]:
        """The guard (slot 0) and vanguard (slot 1) of this path, where they apply.

        No guard is available only when none is known yet or every guard is
        excluded (a service's own access point): then `rand` applies as before.
        """
        store = self.guards
        if store is None or len(hops) < 2 or not isinstance(hops[0], HopRandom):
            return {}
        now = time.time()
        store.guards.refresh_addresses(relays)
        for event in store.guards.maintain(relays, now):
            log_guard_event(event)
        layered: dict[int, HopTarget] = {}
        guard = store.guards.choose(now, exclude)
        if guard is not None:
            layered[0] = HopTarget(guard.host, guard.port, guard.node_id)
        if layer2 and len(hops) >= 3 and isinstance(hops[1], HopRandom):
            for event in store.vanguards.maintain(relays, now):
                log_guard_event(event)
            live = {r.node_id for r in relays}
            skip = exclude | {t.node_id for t in layered.values() if t.node_id}
            skip |= {g.node_id for g in store.vanguards.guards if g.node_id not in live}
            vanguard = store.vanguards.choose(now, skip)
            if vanguard is not None:
                layered[1] = HopTarget(vanguard.host, vanguard.port, vanguard.node_id)
        if store.changed:
            try:
                store.save()
            except OSError as exc:
                log.warning("cannot save the guard set", reason=exc.strerror)
        return layered

    def link_result(self, node_id: bytes | None, ok: bool) -> None:
        """The node reports whether a link to a first hop came up (only that moves a guard)."""
        if self.guards is None or node_id is None:
            return
        if ok:
            self.guards.guards.link_succeeded(node_id)
        else:
            self.guards.guards.link_failed(node_id, time.time())
            guard = self.guards.guards.get(node_id)
            if guard is not None:
                log.info("guard unreachable", guard=guard.short, failures=guard.failures)


    async def _by_id(self, node_id: bytes, index: int) -> HopTarget:
        record = self.peers.get(node_id)
        if record is None and self.lookup is not None:
            record = await self.lookup(node_id)
        if record is None or not record.addresses:
            raise GnetError(ErrorKind.NO_ROUTE, f"hop {index + 1} ({short_id(node_id)}): unknown node, no address found")
        host, port = record.addresses[0]
        return HopTarget(host, port, node_id)



def log_guard_event(event: GuardEvent) -> None:
    """Info: when and why a guard joins or leaves the set (short ids only, no addresses)."""
    log.info(f"{event.layer} {event.change}", node=short_id(event.node_id), reason=event.reason)


def network_of_target(target: HopTarget) -> str:
    try:
        ip = ipaddress.ip_address(target.host)
    except ValueError:
        return target.host
    return str(ipaddress.ip_network(f"{ip}/{16 if ip.version == 4 else 32}", strict=False))


__all__ = ["RELAY_WAIT", "PathResolver", "exit_allows", "network_of"]
