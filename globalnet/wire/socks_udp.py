"""SOCKS5 UDP request headers (RFC 1928 section 7), sans-IO.

Every datagram between a SOCKS client and the proxy's UDP relay port carries

    RSV u16 (0) | FRAG u8 | ATYP u8 | DST.ADDR | DST.PORT u16 | DATA

in both directions (toward the proxy DST is the destination; back to the
client it is the source of the reply). We never reassemble: a datagram with
FRAG != 0 is a fragment and is dropped, as most proxies do (the RFC allows
an implementation that does not support fragmentation to drop them).
Decoding is bounded by the datagram itself; anything malformed raises
ProtocolError and the caller drops that datagram only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..errors import ProtocolError
from .buffer import Reader, u8, u16

ATYP_IPV4 = 0x01
ATYP_NAME = 0x03
ATYP_IPV6 = 0x04
#: The largest UDP payload a socket can carry (IPv4: 65535 - 20 - 8).
MAX_UDP_DATAGRAM = 65507
MAX_NAME = 253


@dataclass(frozen=True)
class UdpRequest:
    """One datagram from the SOCKS client: where it goes and what it carries."""

    host: str
    port: int
    data: bytes
    frag: int = 0

    @property
    def is_fragment(self) -> bool:
        return self.frag != 0


def decode_udp_request(datagram: bytes) -> UdpRequest:
    """Parse a client's datagram; ProtocolError says what is wrong with it."""
    if len(datagram) > MAX_UDP_DATAGRAM:
        raise ProtocolError("datagram larger than UDP allows")
    r = Reader(datagram)
    if r.pull_u16() != 0:
        raise ProtocolError("reserved field is not zero")
    frag = r.pull_u8()
    atyp = r.pull_u8()
    if atyp == ATYP_IPV4:
        host = str(ipaddress.IPv4Address(r.pull_bytes(4)))
    elif atyp == ATYP_IPV6:
        host = str(ipaddress.IPv6Address(r.pull_bytes(16)))
    elif atyp == ATYP_NAME:
        length = r.pull_u8()
        if length == 0:
            raise ProtocolError("empty destination name")
        raw = r.pull_bytes(length)
        if length > MAX_NAME:  # 254/255 would not fit a DATAGRAM frame (found by fuzz_datagram)
            raise ProtocolError(f"destination name of {length} bytes (at most {MAX_NAME})")
        try:
            host = raw.decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError("destination name is not ASCII") from None
        if not host.isprintable() or " " in host:
            raise ProtocolError("destination name has control characters or spaces")
    else:
        raise ProtocolError(f"unknown address type {atyp:#x}")
    port = r.pull_u16()
    if port == 0:
        raise ProtocolError("destination port 0")
    data = r.pull_bytes(r.remaining())
    return UdpRequest(host, port, data, frag)


def encode_udp_header(host: str, port: int) -> bytes:
    """The header for a datagram to (or from) host:port, FRAG 0."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raw = host.encode("ascii")
        if not 0 < len(raw) <= MAX_NAME:
            raise ValueError("a destination name has 1 to 253 characters") from None
        return u16(0) + u8(0) + u8(ATYP_NAME) + u8(len(raw)) + raw + u16(port)
    atyp = ATYP_IPV4 if address.version == 4 else ATYP_IPV6
    return u16(0) + u8(0) + u8(atyp) + address.packed + u16(port)


def encode_udp_datagram(host: str, port: int, data: bytes) -> bytes:
    return encode_udp_header(host, port) + data
