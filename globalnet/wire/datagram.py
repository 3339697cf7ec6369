"""The body of a DATAGRAM frame: one UDP datagram inside the last hop's AEAD layer.

    port u16 | host str8 | payload

Toward the exit, host:port is the destination; toward the client it is the
source of the reply. An empty host (port 0) means "the circuit's own target",
the one its RELAY_CONNECT udp named (a tunnel), so a tunnel pays no address
bytes per datagram. A datagram travels whole in one frame or not at all: a
payload over MAX_DATAGRAM is never split, the sender drops and counts it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ProtocolError
from .buffer import Reader, str8, u16
from .framing import MAX_DATA_BODY

MAX_HOST = 253
#: The largest payload a DATAGRAM frame carries with any address.
MAX_DATAGRAM = MAX_DATA_BODY - 2 - 1 - MAX_HOST


@dataclass(frozen=True)
class Datagram:
    host: str
    port: int
    payload: bytes


def encode_datagram(host: str, port: int, payload: bytes) -> bytes:
    if len(payload) > MAX_DATAGRAM:
        raise ValueError(f"a datagram payload has at most {MAX_DATAGRAM} bytes")
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    return u16(port) + str8(host, MAX_HOST) + payload


def decode_datagram(body: bytes) -> Datagram:
    r = Reader(body)
    port = r.pull_u16()
    host = r.pull_str8(MAX_HOST)
    payload = r.pull_bytes(r.remaining())
    if len(payload) > MAX_DATAGRAM:
        raise ProtocolError("datagram payload over the limit")
    if bool(host) != bool(port):
        raise ProtocolError("a datagram names a host without a port or a port without a host")
    return Datagram(host, port, payload)
