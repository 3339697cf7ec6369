"""Opening a client circuit the way every face wants it: a `rand` first hop is one of our
entry guards (and, for hidden-service and DHT circuits, a `rand` second hop one of our
second-layer guards), a path with `rand` hops is retried with other relays, and only a
failure to link to a guard counts against it.

The node owns one :class:`GuardedCircuitOpener` and hands it what it needs by value
(links, peers, guards, the resolver) and two callbacks (the relays no circuit of ours may
pass through, and what to do with a circuit once built), so nothing here knows the node.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from ..errors import ErrorKind, GnetError
from ..link.manager import LinkManager
from ..peertable import PeerTable
from ..wire.commands import RelayConnect
from ..wire.pathspec import Hop, HopAddr, HopId, HopRandom
from ..wire.records import NodeRecord
from .builder import HOP_TIMEOUT, ClientCircuit, HopTarget, build_circuit
from .guard_store import GuardStore
from .resolve import NoExitError, PathResolver, network_of_target

log = structlog.get_logger("globalnet.circuit")

#: Tries for a circuit with `rand` hops before the error reaches the user.
CIRCUIT_ATTEMPTS = 5
#: Failures worth another path (a relay on it could not be reached); others reach the user at once.
_RETRIED = (ErrorKind.NO_ROUTE, ErrorKind.TIMEOUT, ErrorKind.LINK_LOST, ErrorKind.HANDSHAKE_FAILED)


def _pin(record: NodeRecord) -> HopAddr:
    host, port = record.addresses[0]
    return HopAddr(host, port, record.node_id)


class GuardedCircuitOpener:
    """Builds circuits through explicit, node-id or `rand` hops, guards first (see the module doc)."""

    def __init__(
        self,
        links: LinkManager,
        peers: PeerTable,
        guards: GuardStore,
        resolver: PathResolver,
        *,
        never_through: Callable[[], set[bytes]],
        refresh_guards: Callable[[], None],
        on_built: Callable[[ClientCircuit, float], None],
    ) -> None:
        self.links = links
        self.peers = peers
        self.guards = guards
        self.resolver = resolver
        self._never_through = never_through  # e.g. the access points of the services we host
        self._refresh_guards = refresh_guards  # the guard sets from the relays known now
        self._on_built = on_built  # (circuit, seconds it took)

    async def open(
        self,
        hops: tuple[Hop, ...],
        final: RelayConnect,
        purpose: str,
        avoid: set[bytes] | None,
        vanguards: bool,
        final_wait: float | None = None,
    ) -> ClientCircuit:
        """A path with `rand` hops is retried with other relays when a relay on it cannot be
        reached (that relay is marked failed in the peer table); an explicit path is tried
        once, so its error names the hop the user wrote, and so is a path whose named hop is
        the one that could not be reached (the caller chooses another, e.g. the next access point)."""
        attempts = CIRCUIT_ATTEMPTS if any(isinstance(h, HopRandom) for h in hops) else 1
        named = {h.node_id for h in hops if isinstance(h, (HopId, HopAddr)) and h.node_id is not None}
        for attempt in range(attempts):
            try:
                return await self._open_once(hops, final, purpose, (avoid or set()) | self._never_through(), vanguards, final_wait)
            except GnetError as exc:
                if exc.node_id is not None and exc.node_id in self.guards.middle:
                    # a second-layer guard the path could not reach: the next attempt tries the
                    # reachable ones first; only a direct probe's verdict can replace it (guards.py)
                    self.guards.link_failed(exc.node_id)
                elif exc.node_id is not None and exc.node_id not in self.guards.records:
                    self.peers.failed(exc.node_id)  # a guard is judged by guards.py, not by the peer table
                if attempt + 1 >= attempts or exc.kind not in _RETRIED or exc.node_id in named:
                    raise  # other relays cannot help a hop the caller named (e.g. an access point that died)
                log.debug("circuit attempt failed, trying other relays", purpose=purpose, reason=str(exc))
        raise AssertionError("unreachable")

    async def _open_once(
        self, hops: tuple[Hop, ...], final: RelayConnect, purpose: str, avoid: set[bytes], vanguards: bool, final_wait: float | None
    ) -> ClientCircuit:
        targets = await self._resolve_with_guards(hops, final, avoid, vanguards)
        first = targets[0]
        try:
            link = await self.links.get_link(first.host, first.port, first.node_id)
        except GnetError as exc:
            if first.node_id is not None:
                self.guards.link_failed(first.node_id)
            raise GnetError(exc.kind, f"hop 1 ({first.describe()}): {exc.detail or exc.kind.describe}", first.node_id) from None
        if first.node_id is not None:
            self.guards.link_ok(first.node_id)
        started = time.monotonic()
        try:
            circuit = await build_circuit(link, targets[1:], final, purpose, final_wait or HOP_TIMEOUT)
        except GnetError:
            if first.node_id is not None and not link.is_ready:
                # the guard's link died under the circuit: that is the guard unreachable (a link
                # failure), unlike a circuit refused or cut further on, which never counts
                self.guards.link_failed(first.node_id)
            raise
        self._on_built(circuit, time.monotonic() - started)
        return circuit

    async def _resolve_with_guards(
        self, hops: tuple[Hop, ...], final: RelayConnect, avoid: set[bytes], vanguards: bool
    ) -> list[HopTarget]:
        """Pin a `rand` first hop to an entry guard (and, with `vanguards`, a `rand` second hop
        to a second-layer guard), then resolve the rest. A guard that cannot be the first hop
        of this path (e.g. it is the only exit for the target) gives way to the next guard."""
        if not hops or not isinstance(hops[0], HopRandom):
            return await self.resolver.resolve(hops, final, avoid=avoid)
        for waited in (False, True):
            self._refresh_guards()
            named = {h.node_id for h in hops if isinstance(h, (HopId, HopAddr)) and h.node_id is not None}
            entries = [g for g in self.guards.entry_guards() if g.node_id not in avoid | named]
            fallback: list[HopTarget] | None = None
            for guard in entries:  # in the guards' order (reachable first, shuffled)
                try:
                    path = await self.resolver.resolve(self._guarded_hops(hops, guard, avoid, vanguards), final, avoid=avoid, wait=0.0)
                except NoExitError:
                    raise  # no exit allows the target at all: no other guard changes that
                except GnetError:
                    continue  # this guard cannot start this path (e.g. it is the only fitting exit)
                if len({network_of_target(t) for t in path}) == len(path):
                    return path  # every hop in its own /16
                fallback = fallback or path  # e.g. the only fitting exit shares this guard's /16: try the next guard
            if fallback is not None:
                return fallback
            if entries:
                # no guard fits with the relays known now: wait for more, keeping our first guard
                return await self.resolver.resolve(self._guarded_hops(hops, entries[0], avoid, vanguards), final, avoid=avoid)
            if waited:
                break
            await self.resolver.resolve(hops, final, avoid=avoid)  # knows no relay yet: wait until it does
        raise GnetError(ErrorKind.NO_ROUTE, "no entry guard could be chosen")

    def _guarded_hops(self, hops: tuple[Hop, ...], guard: NodeRecord, avoid: set[bytes], vanguards: bool) -> tuple[Hop, ...]:
        pinned: list[Hop] = [_pin(guard), *hops[1:]]
        if vanguards and len(hops) > 2 and isinstance(hops[1], HopRandom):
            named = {h.node_id for h in hops if isinstance(h, (HopId, HopAddr)) and h.node_id is not None}
            middles = self.guards.middle_guards(exclude=avoid | named | {guard.node_id})
            if middles:
                pinned[1] = _pin(middles[0])
        return tuple(pinned)
