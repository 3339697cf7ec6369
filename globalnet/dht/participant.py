"""The node's DHT: kademlia's Server and crawlers, our transport, signed values.

`publish(key, value)` and `lookup(key)` are the interface the rest of the node
uses. Gaps of the package covered here: `set()` reported success when every
store failed (we count real acknowledgements); a lookup returned the most
common value (we return the valid value with the highest sequence number, and
keep crawling past peers that answered with invalid values); values lived as
long as they were republished (we drop them at their own expiry and
republish only what has not expired).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import Any

import structlog
from kademlia.crawling import NodeSpiderCrawl, RPCFindResponse, ValueSpiderCrawl
from kademlia.network import Server
from kademlia.node import Node as KNode

from ..errors import ProtocolError
from ..link.manager import LinkManager
from ..wire.records import NodeRecord
from .protocol import GnetKademliaProtocol, LinkTransport, Spawn
from .storage import SignedStorage
from .values import ValidValue, validate_value

log = structlog.get_logger("globalnet.dht")

KSIZE = 20
ALPHA = 3
RPC_TIMEOUT = 3.0
LOOKUP_TIMEOUT = 20.0
REFRESH_INTERVAL = 600.0


class SignedValueCrawl(ValueSpiderCrawl):
    """A value crawl that validates what it finds and keeps the highest sequence."""

    async def _nodes_found(self, responses: dict[bytes, Any]) -> Any:
        toremove = []
        found: list[ValidValue] = []
        for peerid, response in responses.items():
            response = RPCFindResponse(response)
            if not response.happened():
                toremove.append(peerid)
            elif response.has_value():
                try:
                    found.append(validate_value(self.node.id, response.get_value()))
                except ProtocolError:
                    toremove.append(peerid)  # a forged or stale value: that peer is no help
            else:
                peer = self.nearest.get_node(peerid)
                self.nearest_without_value.push(peer)
                self.nearest.push(response.get_node_list())
        self.nearest.remove(toremove)
        if found:
            best = max(found, key=lambda v: v.seq)
            peer = self.nearest_without_value.popleft()
            if peer:
                await self.protocol.call_store(peer, self.node.id, best.value)
            return best
        if self.nearest.have_contacted_all():
            return None
        return await self.find()


class Dht:
    #: The crawler lookups use (a subclass may count rounds: bench/dht_sim.py).
    value_crawl: type[SignedValueCrawl] = SignedValueCrawl

    def __init__(self, node_id: bytes, links: LinkManager, spawn: Spawn, rpc_timeout: float = RPC_TIMEOUT) -> None:
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
        node = KNode(key)
        nearest = self.protocol.router.find_neighbors(node)
        if not nearest:
            return []
        crawl = NodeSpiderCrawl(self.protocol, node, nearest, KSIZE, ALPHA)
        return list(await asyncio.wait_for(crawl.find(), LOOKUP_TIMEOUT))

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
        """The valid value with the highest sequence number, or None."""
        local = self.storage.get_valid(key)
        node = KNode(key)
        nearest = self.protocol.router.find_neighbors(node)
        found: ValidValue | None = None
        if nearest:
            crawl = self.value_crawl(self.protocol, node, nearest, KSIZE, ALPHA)
            try:
                found = await asyncio.wait_for(crawl.find(), LOOKUP_TIMEOUT)
            except TimeoutError:
                found = None
        candidates = [v for v in (local, found) if v is not None]
        return max(candidates, key=lambda v: v.seq) if candidates else None

    async def refresh(self) -> None:
        """Kademlia upkeep: refresh lonely buckets (random-id lookups), republish."""
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
            await self.publish(key, value)
        for key, value in list(self.storage.iter_older_than(REFRESH_INTERVAL)):
            if key not in self.own:
                await self.publish(key, value)

    def statistics(self) -> dict[str, int]:
        return {"dht_contacts": self.contacts(), "dht_values": len(self.storage), "dht_dropped": self.protocol.dropped}
