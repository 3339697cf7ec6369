"""Circuit commands carried in the Noise handshake payloads of each hop.

The client's first handshake message to a hop carries RELAY_CONNECT; the hop's
reply carries RELAY_CONNECT_OK or RELAY_CONNECT_FAIL. So choosing what a hop
does costs no extra round trip (Tor's ntor needs one for the handshake and
another for EXTEND).

RELAY_CONNECT: cmd 0x01 | proto u8 | node id 20 (zeros: none) | port u16 | host str8
RELAY_CONNECT_OK: cmd 0x02 | record blob16 (the next node's signed record for `peer`, else empty)
RELAY_CONNECT_FAIL: cmd 0x03 | code u8 | reason str8
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import ErrorKind, ProtocolError
from .buffer import Reader, blob16, str8, u8, u16
from .records import MAX_RECORD_SIZE, NODE_ID_SIZE

NO_NODE_ID = bytes(NODE_ID_SIZE)
PROLOGUE = b"gnet/1"


def prologue_for(node_id: bytes) -> bytes:
    """The Noise prologue of a hop's handshake: binds it to the hop's node id."""
    return PROLOGUE + node_id

MAX_HOST = 253


class Proto(enum.IntEnum):
    PEER = 1  # extend the circuit to another node (bridge mode after OK)
    TCP = 2  # open a TCP connection from this hop (exit)
    UDP = 3
    SERVICE = 4
    DHT = 5
    MESSAGE = 6  # this hop is the destination: deliver MESSAGE frames to its consoles


#: RELAY_CONNECT service sub-commands (in the host field).
SERVICE_REGISTER = "register"  # a service's circuit to its access point (frames after OK)
SERVICE_RENDEZVOUS = "renzv"  # RENZV_CONNECT: a client asks the access point for a service
# (as `renzv:<proof hex>:<pow nonce hex>:<effort>`, see service/access_point.py)
SERVICE_JOIN = "join"  # the service answers a rendezvous (node id field = the cookie)


def bridges(command: "RelayConnect") -> bool:
    """Does the hop that accepts `command` become a bridge (XOR layer) rather than an endpoint?"""
    return command.proto is Proto.PEER or (
        command.proto is Proto.SERVICE and command.host.split(":")[0] in (SERVICE_RENDEZVOUS, SERVICE_JOIN)
    )


class Cmd(enum.IntEnum):
    RELAY_CONNECT = 0x01
    RELAY_CONNECT_OK = 0x02
    RELAY_CONNECT_FAIL = 0x03


@dataclass(frozen=True)
class RelayConnect:
    proto: Proto
    host: str = ""
    port: int = 0
    node_id: bytes | None = None

    def encode(self) -> bytes:
        node_id = self.node_id if self.node_id is not None else NO_NODE_ID
        if len(node_id) != NODE_ID_SIZE:
            raise ValueError("node id must be 20 bytes")
        return u8(Cmd.RELAY_CONNECT) + u8(self.proto) + node_id + u16(self.port) + str8(self.host, MAX_HOST)


@dataclass(frozen=True)
class RelayConnectOk:
    record: bytes = b""

    def encode(self) -> bytes:
        return u8(Cmd.RELAY_CONNECT_OK) + blob16(self.record, MAX_RECORD_SIZE)


@dataclass(frozen=True)
class RelayConnectFail:
    kind: ErrorKind
    reason: str

    def encode(self) -> bytes:
        return u8(Cmd.RELAY_CONNECT_FAIL) + u8(self.kind) + str8(self.reason.encode()[:200].decode("utf-8", "ignore"))


Reply = RelayConnectOk | RelayConnectFail


def decode_relay_connect(data: bytes) -> RelayConnect:
    r = Reader(data)
    if r.pull_u8() != Cmd.RELAY_CONNECT:
        raise ProtocolError("expected RELAY_CONNECT")
    proto_raw = r.pull_u8()
    try:
        proto = Proto(proto_raw)
    except ValueError:
        raise ProtocolError(f"unknown proto {proto_raw}") from None
    node_id = r.pull_bytes(NODE_ID_SIZE)
    port = r.pull_u16()
    host = r.pull_str8(MAX_HOST)
    r.expect_end()
    return RelayConnect(proto, host, port, None if node_id == NO_NODE_ID else node_id)


def decode_reply(data: bytes) -> Reply:
    r = Reader(data)
    cmd = r.pull_u8()
    if cmd == Cmd.RELAY_CONNECT_OK:
        record = r.pull_blob16(MAX_RECORD_SIZE)
        r.expect_end()
        return RelayConnectOk(record)
    if cmd == Cmd.RELAY_CONNECT_FAIL:
        kind = ErrorKind.from_wire(r.pull_u8())
        reason = r.pull_str8()
        r.expect_end()
        return RelayConnectFail(kind, reason)
    raise ProtocolError(f"expected RELAY_CONNECT_OK or _FAIL, got {cmd:#x}")
