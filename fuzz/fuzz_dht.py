"""DHT messages: the frames of DHT circuits (wire/dhtframes.py) and the RPCs on links (dht/protocol.py).

A link-carried RPC goes through the real `GnetKademliaProtocol.receive` with a
real routing table and signed storage; only the link under it is a stand-in
(it records what would be sent back).
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from fuzz.harness import check, guarded, instrumented, main

with instrumented():
    import umsgpack
    from kademlia.node import Node as KNode

    from globalnet.dht.protocol import MSG_ID, REQUEST, RESPONSE, GnetKademliaProtocol, LinkTransport, _contacts_ok
    from globalnet.dht.storage import SignedStorage
    from globalnet.errors import GnetError
    from globalnet.wire.dhtframes import (
        DhtData,
        DhtRetr,
        DhtStatus,
        DhtStore,
        decode_data,
        decode_request,
        encode_data,
        encode_request,
    )
    from globalnet.wire.framing import FrameType

ALLOWED = (GnetError,)
PEER_ID = bytes(range(1, 21))
OUR_ID = bytes(20)
MSG = bytes(MSG_ID)


@dataclass
class _Peer:
    node_id: bytes
    addresses: tuple[tuple[str, int], ...] = (("127.0.0.1", 9001),)


@dataclass
class _Link:
    peer: _Peer
    is_ready: bool = True
    sent: list[bytes] = field(default_factory=list)

    def send_dht(self, data: bytes) -> None:
        self.sent.append(data)


@dataclass
class _Links:
    links: dict[bytes, _Link]


def _rpc(name: str, *args: Any) -> bytes:
    return umsgpack.packb([name, [PEER_ID, *args]])


SEEDS = [
    b"\x00" + bytes([REQUEST]) + MSG + _rpc("ping"),
    b"\x00" + bytes([REQUEST]) + MSG + _rpc("find_node", b"k" * 20),
    b"\x00" + bytes([REQUEST]) + MSG + _rpc("find_value", b"k" * 20),
    b"\x00" + bytes([REQUEST]) + MSG + _rpc("store", b"k" * 20, b"\x01value"),
    b"\x00" + bytes([RESPONSE]) + MSG + umsgpack.packb([[b"k" * 20, "127.0.0.1", 9000]]),
    b"\x01" + umsgpack.packb([[b"k" * 20, "127.0.0.1", 9000]]),
    b"\x02" + encode_request(DhtStore(1, b"k" * 20, b"\x01v"))[1] + b"\x00",
    b"\x02" + encode_request(DhtRetr(1, b"k" * 20))[1],
    b"\x03" + encode_data(DhtData(1, DhtStatus(0), b"payload")),
]


def _run(coro: Coroutine[Any, Any, None], name: str) -> None:
    """The protocol's spawn: serve requests to completion, drop hand-overs (they would dial)."""
    if name != "dht request":
        coro.close()
        return
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise AssertionError("a DHT request handler waited for something")


def _protocol() -> tuple[GnetKademliaProtocol, _Link]:
    link = _Link(_Peer(PEER_ID))
    proto = GnetKademliaProtocol(KNode(OUR_ID), SignedStorage(), 20, 5.0, _run)
    proto.transport = LinkTransport(_Links({PEER_ID: link}), _run)  # type: ignore[arg-type]
    return proto, link


def one_input(data: bytes) -> None:
    """First byte: 0 an RPC on a link, 1 a response shape check, 2 a DHT request frame, 3 a DHT_DATA frame."""
    if not data:
        return
    mode, body = data[0] % 4, data[1:]
    if mode == 0:
        proto, link = _protocol()
        proto.receive(link, body)  # type: ignore[arg-type]
        for reply in link.sent:
            check(reply[0] == RESPONSE and len(reply) < 65536, "a DHT reply out of bounds")
    elif mode == 1:
        try:
            value = umsgpack.unpackb(body)
        except Exception:  # noqa: BLE001 -- the protocol drops undecodable bodies the same way
            return
        _contacts_ok(value)
    elif mode == 2:
        ftype = FrameType.DHT_STORE if len(body) % 2 else FrameType.DHT_RETR
        req = decode_request(ftype, body)
        check(isinstance(req, (DhtStore, DhtRetr)), "not a request")
    else:
        decode_data(body)


if __name__ == "__main__":
    main(guarded(one_input, ALLOWED), SEEDS)
