"""The DHT transport adapter: authenticated ids, shapes, who may answer."""

from __future__ import annotations

import asyncio

import umsgpack
from kademlia.node import Node as KNode

from globalnet.dht.protocol import REQUEST, RESPONSE, GnetKademliaProtocol, LinkTransport
from globalnet.dht.storage import SignedStorage
from globalnet.dht.values import node_record_value
from globalnet.identity import Identity
from tests.identities import next_identity


class FakeLink:
    def __init__(self, identity: Identity, sent: list[bytes]) -> None:
        self.peer = identity.make_record((("127.0.0.1", 9000),))
        self.sent = sent
        self.is_ready = True

    def send_dht(self, data: bytes) -> None:
        self.sent.append(data)


class FakeLinks:
    def __init__(self) -> None:
        self.links: dict[bytes, FakeLink] = {}


def _protocol() -> tuple[GnetKademliaProtocol, FakeLinks, list[str]]:
    me = next_identity()
    spawned: list[str] = []
    links = FakeLinks()

    def spawn(coro, name):  # type: ignore[no-untyped-def]
        spawned.append(name)
        asyncio.ensure_future(coro)

    proto = GnetKademliaProtocol(KNode(me.node_id), SignedStorage(), 20, 1.0, spawn)
    proto.transport = LinkTransport(links, spawn)  # type: ignore[arg-type]
    return proto, links, spawned


def _request(name: str, *args: object) -> bytes:
    return bytes([REQUEST]) + bytes(20) + umsgpack.packb([name, list(args)])


async def test_a_request_whose_claimed_id_is_not_the_links_is_dropped() -> None:
    proto, links, spawned = _protocol()
    peer, other = next_identity(), next_identity()
    sent: list[bytes] = []
    link = FakeLink(peer, sent)
    links.links[peer.node_id] = link
    proto.receive(link, _request("ping", other.node_id))  # claims to be someone else
    assert proto.dropped == 1 and not spawned
    proto.receive(link, _request("ping", peer.node_id))
    await asyncio.sleep(0.01)
    assert spawned == ["dht request"] and len(sent) == 1 and sent[0][0] == RESPONSE


async def test_malformed_requests_are_dropped() -> None:
    proto, _links, spawned = _protocol()
    peer = next_identity()
    link = FakeLink(peer, [])
    for junk in (
        b"",
        b"\x00" + bytes(20),
        b"\x00" + bytes(20) + b"\xc1",  # not msgpack
        _request("shutdown", peer.node_id),  # not an RPC we serve
        _request("find_node", peer.node_id, b"short"),
        _request("store", peer.node_id, bytes(20), "not bytes"),
        _request("store", peer.node_id, bytes(20), bytes(5000)),  # oversized
        b"\x07" + bytes(20) + umsgpack.packb(["ping", [peer.node_id]]),
    ):
        proto.receive(link, junk)  # type: ignore[arg-type]
    assert proto.dropped == 8 and not spawned


async def test_store_keeps_only_signed_values() -> None:
    proto, _links, _spawned = _protocol()
    owner = next_identity()
    key, value = node_record_value(owner.make_record((("127.0.0.1", 1),)))
    assert proto.rpc_store(("127.0.0.1", 9000), owner.node_id, key, value) is True
    assert proto.rpc_store(("127.0.0.1", 9000), owner.node_id, key, value[:-1] + bytes([value[-1] ^ 1])) is False
    assert proto.rpc_store(("127.0.0.1", 9000), owner.node_id, bytes(20), b"\x02unsigned") is False


async def test_an_answer_from_a_node_we_did_not_ask_is_ignored() -> None:
    proto, links, _spawned = _protocol()
    asked, intruder = next_identity(), next_identity()
    asked_link, intruder_link = FakeLink(asked, []), FakeLink(intruder, [])
    links.links[asked.node_id] = asked_link
    transport = proto.transport
    assert isinstance(transport, LinkTransport)
    transport.learn(asked.node_id, ("127.0.0.1", 9000))
    future = proto.ping(("127.0.0.1", 9000), proto.source_node.id)
    request = asked_link.sent[0]
    msg_id = request[1:21]
    answer = bytes([RESPONSE]) + msg_id + umsgpack.packb(asked.node_id)
    proto.receive(intruder_link, answer)  # type: ignore[arg-type]
    assert not future.done()
    proto.receive(asked_link, answer)  # type: ignore[arg-type]
    assert (await future) == (True, asked.node_id)


async def test_malformed_answers_count_as_no_answer() -> None:
    proto, links, _spawned = _protocol()
    peer = next_identity()
    link = FakeLink(peer, [])
    links.links[peer.node_id] = link
    node = KNode(peer.node_id, "127.0.0.1", 9000)
    call = asyncio.ensure_future(proto.call_find_node(node, KNode(bytes(20))))
    await asyncio.sleep(0)
    msg_id = link.sent[0][1:21]
    proto.receive(link, bytes([RESPONSE]) + msg_id + umsgpack.packb([["x", 1, 2]] * 3))  # type: ignore[arg-type]
    ok, _ = await call
    assert ok is False and proto.dropped == 1
