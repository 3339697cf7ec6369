"""kademlia's RPC protocol carried over our links instead of UDP.

The package's `KademliaProtocol` (routing table, RPC handlers) is kept; what
changes is where its datagrams go and what we believe of them:
- `LinkTransport.sendto` puts each RPC on the peer's link (dialled on demand),
  so every DHT message is encrypted and its sender authenticated;
- an incoming request whose claimed node id is not the link's authenticated
  id is dropped (the package trusts claimed ids);
- stores are validated (signed values only, see values.py);
- responses are checked for shape before the crawler sees them, and a
  response is accepted only from the node it was asked of;
- the reply timeout is ours (the package fixes it at 5 s).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
import umsgpack
from kademlia.node import Node as KNode
from kademlia.protocol import KademliaProtocol

from ..errors import GnetError
from ..link.manager import LinkManager
from ..link.quic_link import Link
from ..wire.records import has_id_work
from .routing import ClosestRoutingTable
from .storage import SignedStorage
from .values import KEY_SIZE, MAX_VALUE

log = structlog.get_logger("globalnet.dht")

REQUEST, RESPONSE = 0x00, 0x01
MSG_ID = 20
MAX_CONTACTS = 20
MAX_HOST = 253
#: Requests a peer may have us working on at once; more are dropped.
MAX_INFLIGHT_PER_PEER = 32

Address = tuple[str, int]
Spawn = Callable[[Coroutine[Any, Any, None], str], None]


def _is_id(v: object) -> bool:
    return isinstance(v, bytes) and len(v) == KEY_SIZE


def _contacts_ok(v: object) -> bool:
    return (
        isinstance(v, list)
        and len(v) <= MAX_CONTACTS
        and all(
            isinstance(c, (list, tuple))
            and len(c) == 3
            and _is_id(c[0])
            and isinstance(c[1], str)
            and 0 < len(c[1]) <= MAX_HOST
            and isinstance(c[2], int)
            and 0 < c[2] < 65536
            for c in v
        )
    )


_REQUEST_SHAPES: dict[str, Callable[[list[Any]], bool]] = {
    "ping": lambda a: len(a) == 1,
    "find_node": lambda a: len(a) == 2 and _is_id(a[1]),
    "find_value": lambda a: len(a) == 2 and _is_id(a[1]),
    "store": lambda a: len(a) == 3 and _is_id(a[1]) and isinstance(a[2], bytes) and len(a[2]) <= MAX_VALUE,
}


class LinkTransport:
    """Stands where kademlia expects a UDP transport: sendto() goes over links."""

    def __init__(self, links: LinkManager, spawn: Spawn) -> None:
        self.links = links
        self.spawn = spawn
        self.address_ids: dict[Address, bytes] = {}  # what node lives at an advertised address
        self.expected: dict[bytes, bytes] = {}  # msg id -> node id we asked

    def learn(self, node_id: bytes, address: Address) -> None:
        if len(self.address_ids) > 65536:
            self.address_ids.clear()
        self.address_ids[address] = node_id

    def sendto(self, data: bytes, address: Address) -> None:
        node_id = self.address_ids.get(address)
        if data[0] == REQUEST and node_id is not None:
            self.expected[data[1 : 1 + MSG_ID]] = node_id
            if len(self.expected) > 65536:
                self.expected.pop(next(iter(self.expected)))
        link = self.links.links.get(node_id) if node_id else None
        if link is not None and link.is_ready:
            link.send_dht(data)
            return
        self.spawn(self._dial_and_send(data, address, node_id), "dht dial")

    async def _dial_and_send(self, data: bytes, address: Address, node_id: bytes | None) -> None:
        try:
            link = await self.links.get_link(address[0], address[1], node_id)
        except GnetError as exc:
            log.debug("dht peer unreachable", address=address, reason=str(exc))
            return  # the RPC times out and the crawler drops the node
        link.send_dht(data)

    def close(self) -> None:
        pass


class GnetKademliaProtocol(KademliaProtocol):
    def __init__(self, source_node: KNode, storage: SignedStorage, ksize: int, timeout: float, spawn: Spawn) -> None:
        super().__init__(source_node, storage, ksize)
        self.router = ClosestRoutingTable(self, ksize, source_node)
        self._wait_timeout = timeout
        self.spawn = spawn
        self._inflight: dict[bytes, int] = {}
        self.dropped = 0
        self.refused_contacts = 0  # contacts in answers whose ids carried no proof of work

    # -- receiving (from links) ----------------------------------------------
    def receive(self, link: Link, message: bytes) -> None:
        """One DHT message from an authenticated link."""
        assert isinstance(self.transport, LinkTransport)
        peer = link.peer
        if peer is None or len(message) < 1 + MSG_ID + 1:
            self.dropped += 1
            return
        msg_id, body = message[1 : 1 + MSG_ID], message[1 + MSG_ID :]
        try:
            data = umsgpack.unpackb(body)
        except Exception:  # noqa: BLE001 — umsgpack raises many types on junk; a bad RPC is dropped, never fatal
            self.dropped += 1
            return
        address = peer.addresses[0] if peer.addresses else None
        if message[0] == RESPONSE:
            expected = self.transport.expected.pop(msg_id, None)
            if expected is not None and expected != peer.node_id:
                self.dropped += 1  # an answer from a node we did not ask
                return
            self._accept_response(msg_id, data, address)
            return
        if message[0] != REQUEST or address is None:
            self.dropped += 1  # only relays (nodes with an address) take part in the DHT
            return
        if not (isinstance(data, list) and len(data) == 2 and isinstance(data[0], str) and isinstance(data[1], list)):
            self.dropped += 1
            return
        name, args = data
        shape = _REQUEST_SHAPES.get(name)
        if shape is None or not args or not shape(args) or args[0] != peer.node_id:
            self.dropped += 1  # malformed, or a claimed id that is not the link's
            return
        if self._inflight.get(peer.node_id, 0) >= MAX_INFLIGHT_PER_PEER:
            self.dropped += 1
            return
        self.transport.learn(peer.node_id, address)
        self._inflight[peer.node_id] = self._inflight.get(peer.node_id, 0) + 1
        self.spawn(self._serve(peer.node_id, msg_id, data, address), "dht request")

    async def _serve(self, peer_id: bytes, msg_id: bytes, data: list[Any], address: Address) -> None:
        try:
            await self._accept_request(msg_id, data, address)
        finally:
            left = self._inflight.get(peer_id, 1) - 1
            if left:
                self._inflight[peer_id] = left
            else:
                self._inflight.pop(peer_id, None)

    def _accept_response(self, msg_id: bytes, data: Any, address: Any) -> None:
        entry = self._outstanding.pop(msg_id, None)
        if entry is None:
            return
        future, timer = entry
        timer.cancel()
        if not future.done():  # the caller may have given up (a cancelled crawl)
            future.set_result((True, data))

    def _timeout(self, msg_id: bytes) -> None:
        entry = self._outstanding.pop(msg_id, None)
        if entry is not None and not entry[0].done():
            entry[0].set_result((False, None))

    # -- handlers ------------------------------------------------------------
    def rpc_store(self, sender: Address, nodeid: bytes, key: bytes, value: bytes) -> bool:
        self.welcome_if_new(KNode(nodeid, sender[0], sender[1]))
        assert isinstance(self.storage, SignedStorage)
        return self.storage.put(key, value)

    def welcome_if_new(self, node: KNode) -> None:
        """Add a node we heard from; if it is new, hand it the values it should hold (paper 2.5).

        Replaces the package's version, which hands values over again on every
        message from a node waiting in a full bucket's replacement list (it
        stays "new"), and each answered store is such a message: a store storm
        that grows until the node leaves that list (found by bench/dht_sim.py).
        It also placed a key at sha1(key); our keys are ids already.
        """
        if node.ip is None or node.id == self.source_node.id:
            return
        assert isinstance(self.transport, LinkTransport)
        self.transport.learn(node.id, (node.ip, node.port))
        if not self.router.is_new_node(node):
            return
        bucket = self.router.buckets[self.router.get_bucket_for(node)]
        if node.id not in bucket.replacement_nodes:
            for key, value in self.storage:
                if self._should_hand_over(node, KNode(key)):
                    self.spawn(self._hand_over(node, key, value), "dht hand-over")
        self.router.add_contact(node)

    def _should_hand_over(self, node: KNode, keynode: KNode) -> bool:
        """The newcomer is among the k closest to the key and we are the closest we know of."""
        neighbors = self.router.find_neighbors(keynode)
        if not neighbors:
            return True
        return node.distance_to(keynode) < neighbors[-1].distance_to(keynode) and self.source_node.distance_to(
            keynode
        ) < neighbors[0].distance_to(keynode)

    async def _hand_over(self, node: KNode, key: bytes, value: bytes) -> None:
        await self.call_store(node, key, value)

    # -- calls: responses are checked before the crawler sees them ------------
    async def call_find_node(self, node_to_ask: KNode, node_to_find: KNode) -> tuple[bool, Any]:
        self._learn(node_to_ask)
        result = await self.find_node((node_to_ask.ip, node_to_ask.port), self.source_node.id, node_to_find.id)
        return self.handle_call_response(self._checked(result, _contacts_ok), node_to_ask)

    async def call_find_value(self, node_to_ask: KNode, node_to_find: KNode) -> tuple[bool, Any]:
        self._learn(node_to_ask)
        result = await self.find_value((node_to_ask.ip, node_to_ask.port), self.source_node.id, node_to_find.id)

        def ok(v: object) -> bool:
            if isinstance(v, dict):
                return set(v) == {"value"} and isinstance(v["value"], bytes) and len(v["value"]) <= MAX_VALUE
            return _contacts_ok(v)

        return self.handle_call_response(self._checked(result, ok), node_to_ask)

    async def call_ping(self, node_to_ask: KNode) -> tuple[bool, Any]:
        self._learn(node_to_ask)
        result = await self.ping((node_to_ask.ip, node_to_ask.port), self.source_node.id)
        return self.handle_call_response(self._checked(result, lambda v: v == node_to_ask.id), node_to_ask)

    async def call_store(self, node_to_ask: KNode, key: bytes, value: bytes) -> tuple[bool, Any]:
        self._learn(node_to_ask)
        result = await self.store((node_to_ask.ip, node_to_ask.port), self.source_node.id, key, value)
        return self.handle_call_response(self._checked(result, lambda v: isinstance(v, bool)), node_to_ask)

    def _learn(self, node: KNode) -> None:
        assert isinstance(self.transport, LinkTransport)
        if node.ip is not None:
            self.transport.learn(node.id, (node.ip, node.port))

    def _checked(self, result: tuple[bool, Any], ok: Callable[[Any], bool]) -> tuple[bool, Any]:
        if result[0] and not ok(result[1]):
            self.dropped += 1
            return (False, None)  # a malformed answer counts as no answer
        if result[0] and isinstance(result[1], list):
            worked = [c for c in result[1] if has_id_work(c[0])]
            if len(worked) != len(result[1]):
                self.refused_contacts += len(result[1]) - len(worked)
                log.debug("dht answer listed ids without proof of work", dropped=len(result[1]) - len(worked))
                return (True, worked)  # ids without the puzzle never reach a crawl or the table
        return result


def new_msg_id() -> bytes:
    return os.urandom(MSG_ID)
