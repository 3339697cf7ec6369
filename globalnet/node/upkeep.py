"""A node's upkeep of its place in the network: links to its bootstrap peers (re-linked with
back-off), enough links to random relays, peer exchange, onion key rotation, guard
probes, and the peer table on disk. Given the parts it works on, never the node."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import structlog

from ..circuit.guard_store import GuardStore
from ..errors import ErrorKind, GnetError
from ..identity import Identity
from ..link.manager import LinkManager
from ..peertable import PeerTable
from ..wire.pathspec import HopAddr
from ..wire.records import short_id

log = structlog.get_logger("globalnet.node")

CONNECT_RETRY = (1.0, 60.0)  # first and largest back-off between bootstrap attempts
UPKEEP_INTERVAL = 30.0
#: Records sent in one PEERS message, and to how many links (at random) per round: to every
#: link, a relay linked to most of the network verified 16 records from each of them twice a
#: minute, mostly ones it had (make testnet).
PEERS_SAMPLE = 16
PEERS_FANOUT = 8
#: A relay keeps at least this many links up (to random known relays), so
#: PEERS keep flowing and the node stays part of the network.
MIN_LINKS = 4


class NetworkUpkeep:
    def __init__(
        self,
        identity: Identity,
        links: LinkManager,
        peers: PeerTable,
        guards: GuardStore,
        *,
        relaying: bool,
        refresh_guards: Callable[[], None],
    ) -> None:
        self.identity = identity
        self.links = links
        self.peers = peers
        self.guards = guards
        self.relaying = relaying  # a relay keeps MIN_LINKS links up; a client only those it uses
        self._refresh_guards = refresh_guards

    async def keep_connected(self, peer: HopAddr) -> None:
        """Link to a bootstrap peer, retrying with back-off; re-link if it drops."""
        delay = CONNECT_RETRY[0]
        where = f"{peer.host}:{peer.port}"
        while True:
            try:
                link = await self.links.get_link(peer.host, peer.port, peer.node_id)
                link.kept = True  # a bootstrap peer's link stays up while idle
                log.info("linked to peer", peer=short_id(link.peer_id), address=where)
                delay = CONNECT_RETRY[0]
                await link.wait_closed()
                log.info("link to peer lost, reconnecting", peer=short_id(link.peer_id), address=where)
            except GnetError as exc:
                log.warning("cannot link to peer", address=where, reason=str(exc), retry_in=f"{delay:.0f}s")
                if exc.kind is ErrorKind.PIN_MISMATCH:
                    delay = CONNECT_RETRY[1]
            await asyncio.sleep(delay)
            delay = min(delay * 2, CONNECT_RETRY[1])

    async def run(self) -> None:
        """Onion key rotation, peer exchange, enough links, the peer table on disk."""
        first = True
        while True:
            await asyncio.sleep(2.0 if first else UPKEEP_INTERVAL)
            first = False
            if self.identity.onion.rotate_if_due(time.time()):
                self.links.refresh_record()
                log.info("onion key rotated")
            self.peers.expire()
            await self.probe_guards()
            self._refresh_guards()
            links = list(self.links.links.values())
            for link in random.sample(links, min(PEERS_FANOUT, len(links))):
                link.send_peers([r.encode() for r in self.peers.sample(PEERS_SAMPLE)])
            if self.relaying:
                await self._keep_links()
            if self.peers.changed:
                self.save_peers()

    async def probe_guards(self) -> None:
        """Dial guards that are down when their back-off says so: a guard is given up only
        after it stayed unreachable at the link layer (circuit failures never count)."""
        for record in self.guards.due_for_retry():
            host, port = record.addresses[0]
            try:
                await self.links.get_link(host, port, record.node_id)
            except GnetError:
                self.guards.link_failed(record.node_id)
            else:
                self.guards.link_ok(record.node_id)

    async def _keep_links(self) -> None:
        """Link to random known relays until MIN_LINKS links are up (kept ones: idle links
        that nothing keeps close, and counting them would leave a relay with none)."""
        missing = MIN_LINKS - sum(1 for link in self.links.links.values() if link.kept or not link.dialler)
        if missing <= 0:
            return
        candidates = [r for r in self.peers.relays() if r.node_id not in self.links.links]
        for record in self.peers.sample(len(candidates))[: missing * 2]:
            if record.node_id in self.links.links:
                continue
            host, port = record.addresses[0]
            try:
                link = await self.links.get_link(host, port, record.node_id)
                link.kept = True  # one of the MIN_LINKS: stays up while idle (others close: liveness.py)
                missing -= 1
            except GnetError as exc:
                self.peers.failed(record.node_id)
                log.debug("cannot link to known relay", peer=short_id(record.node_id), reason=str(exc))
            if missing <= 0:
                return

    def save_peers(self) -> None:
        try:
            self.peers.save()
        except OSError as exc:
            log.warning("cannot save the peer table", file=str(self.peers.path), reason=exc.strerror)
