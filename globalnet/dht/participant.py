"""The node's DHT: kademlia's Server and crawlers, our transport, signed values.

`publish(key, value)` and `lookup(key)` are the interface the rest of the node
uses. Gaps of the package covered here: `set()` reported success when every
store failed (we count real acknowledgements); a lookup returned the most
common value (we return the valid value with the highest sequence number, and
keep crawling past peers that answered with invalid values); values lived as
long as they were republished (we drop them at their own expiry and
republish only what has not expired).

Lookups and the node searches of `publish` run over LOOKUP_PATHS (3)
node-disjoint paths (lookup.py, S/Kademlia): a liar on one path cannot hide
a value the others reach, and the newest valid value wins.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Collection, Iterable
from typing import Any

import structlog
from kademlia.crawling import NodeSpiderCrawl
from kademlia.network import Server
from kademlia.node import Node as KNode

from ..errors import ProtocolError
from ..link.manager import LinkManager
from ..wire.records import NodeRecord
from .lookup import PATHS as LOOKUP_PATHS
from .lookup import Contact, DisjointLookup, Query
from .protocol import GnetKademliaProtocol, LinkTransport, Spawn
from .storage import SignedStorage
from .values import ValidValue, validate_value

log = structlog.get_logger("globalnet.dht")

KSIZE = 20
ALPHA = 3
RPC_TIMEOUT = 3.0
LOOKUP_TIMEOUT = 20.0
REFRESH_INTERVAL = 600.0


class Dht:
    #: The lookup core (a subclass may count what it asks: bench/dht_sim.py).
    lookup_core: type[DisjointLookup] = DisjointLookup

    def __init__(
        self,
        node_id: bytes,
        links: LinkManager,
        spawn: Spawn,
        rpc_timeout: float = RPC_TIMEOUT,
        lookup_paths: int = LOOKUP_PATHS,
    ) -> None:
        self.lookup_paths = lookup_paths
        self.storage = SignedStorage()
        self.server = Server(ksize=KSIZE, alpha=ALPHA, node_id=node_id, storage=self.storage)
        self.transport = LinkTransport(links, spawn)
        self.protocol = GnetKademliaProtocol(self.server.node, self.storage, KSIZE, rpc_timeout, spawn)
        self.protocol.transport = self.transport
        self.server.protocol = self.protocol
        self.server.transport = self.transport
        self.links = links
        self.own: dict[bytes, bytes] = {}  # what this node publishes and keeps republishing
        links.on_dht = self.protocol.receive

    @property
    def node_id(self) -> bytes:
        return bytes(self.server.node.id)

    def add_contact(self, record: NodeRecord) -> None:
        """A relay we know (verified record): a Kademlia contact."""
        if record.addresses and record.node_id != self.node_id:
            host, port = record.addresses[0]
            self.protocol.welcome_if_new(KNode(record.node_id, host, port))

    def contacts(self) -> int:
        return sum(len(b) for b in self.protocol.router.buckets)

    async def bootstrap(self, records: Iterable[NodeRecord]) -> int:
        for record in records:
            self.add_contact(record)
        nearest = self.protocol.router.find_neighbors(self.server.node, ALPHA)
        if nearest:
            await asyncio.wait_for(NodeSpiderCrawl(self.protocol, self.server.node, nearest, KSIZE, ALPHA).find(), LOOKUP_TIMEOUT)
        return self.contacts()

    async def closest(self, key: bytes) -> list[KNode]:
        """The k closest live nodes to `key`, found over disjoint paths."""
        core = await self._run(key, want_value=False)
        return [KNode(c.node_id, c.host, c.port) for c in core.closest(KSIZE)]

    def new_lookup(self, key: bytes, want_value: bool) -> DisjointLookup:
        """The lookup core for `key`, seeded with our k closest contacts (a subclass may watch it)."""
        seeds = [Contact(n.id, n.ip, n.port) for n in self.protocol.router.find_neighbors(KNode(key))]
        return self.lookup_core(
            key, seeds, self.node_id, self.lookup_paths, KSIZE, ALPHA, want_value, self.protocol.router.policy
        )

    async def _run(self, key: bytes, want_value: bool) -> DisjointLookup:
        """Drive a lookup core over our RPCs until every path ends (or LOOKUP_TIMEOUT)."""
        core = self.new_lookup(key, want_value)
        target = KNode(key)
        pending: dict[asyncio.Future[tuple[bool, Any]], Query] = {}
        call = self.protocol.call_find_value if want_value else self.protocol.call_find_node
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT):
                while True:
                    for query in core.next_queries():
                        peer = KNode(query.contact.node_id, query.contact.host, query.contact.port)
                        pending[asyncio.ensure_future(call(peer, target))] = query
                    if not pending:
                        return core
                    finished, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for future in finished:
                        self._feed(core, pending.pop(future), future.result())
        except TimeoutError:
            return core  # whatever the paths found so far
        finally:
            for future in pending:
                future.cancel()

    @staticmethod
    def _feed(core: DisjointLookup, query: Query, answer: tuple[bool, Any]) -> None:
        ok, data = answer
        if not ok:
            core.answer_failed(query)
        elif isinstance(data, dict):
            try:
                core.answer_value(query, validate_value(core.key, data["value"]))
            except ProtocolError:
                core.answer_failed(query)  # a forged or stale value: that node is no help
        else:
            core.answer_nodes(query, (Contact(bytes(c[0]), c[1], c[2]) for c in data))

    async def publish(self, key: bytes, value: bytes, keep: bool = False) -> int:
        """Store on the k closest nodes; returns how many acknowledged (0 = failed)."""
        validate_value(key, value)
        if keep:
            self.own[key] = value
        nodes = await self.closest(key)
        target = KNode(key)
        stored = 0
        if not nodes or self.server.node.distance_to(target) < max(n.distance_to(target) for n in nodes):
            stored += int(self.storage.put(key, value))
        results = await asyncio.gather(*(self.protocol.call_store(n, key, value) for n in nodes))
        stored += sum(1 for ok, answer in results if ok and answer is True)
        return stored

    async def lookup(self, key: bytes) -> ValidValue | None:
        """The valid value with the highest sequence number over all paths (and our storage), or None."""
        local = self.storage.get_valid(key)
        found = (await self._run(key, want_value=True)).result()
        candidates = [v for v in (local, found) if v is not None]
        return max(candidates, key=lambda v: v.seq) if candidates else None

    async def refresh(self, skip: Collection[bytes] = ()) -> None:
        """Kademlia upkeep: refresh lonely buckets (random-id lookups), republish (but the keys in `skip`)."""
        ids = self.protocol.get_refresh_ids() or [os.urandom(20)]
        for rid in ids[:8]:
            try:
                await self.closest(rid)
            except TimeoutError:
                pass
        self.storage.cull()
        for key, value in list(self.own.items()):
            try:
                validate_value(key, value)
            except ProtocolError:
                del self.own[key]  # expired: the owner must publish a fresh one
                continue
            if key not in skip:
                await self.publish(key, value)
        for key, value in list(self.storage.iter_older_than(REFRESH_INTERVAL)):
            if key not in self.own:
                await self.publish(key, value)

    def statistics(self) -> dict[str, int]:
        router = self.protocol.router
        return {
            "dht_contacts": self.contacts(),
            "dht_values": len(self.storage),
            "dht_dropped": self.protocol.dropped,
            "dht_refused_ids": router.refused_work + self.protocol.refused_contacts,  # no proof of work
            "dht_held_back": router.held_back,  # over a diversity limit: kept as replacements
        }
