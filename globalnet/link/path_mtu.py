"""How big a QUIC datagram a link sends: 1452 bytes where the path allows it, 1200 otherwise.

What qh3 2.1 does with the two knobs (measured with two sans-IO connections,
`python -m bench.datagram_size`):
- `max_datagram_size` is used as is from the end of the handshake on: full
  packets are `max_datagram_size - 29` bytes (1423 at 1452, 1171 at 1200),
  never validated on the path. On a path that carries only 1280 bytes, a link
  set to 1452 completes its handshake (padded to 1200-1280) and then delivers
  nothing: 0 bytes in 60 simulated seconds, probing on or off. qh3 has no
  black-hole fallback.
- `probe_datagram_size` (client only) sends one 1472-byte PING probe but never
  raises the packet size above `max_datagram_size`, nor lowers it. It buys
  nothing, so links turn it off (one oversized datagram less on every path).

So the size is chosen before the connection starts, from what the kernel knows
about the route to the peer: the MTU of the outgoing route (IP_MTU on a
connected UDP socket; connect() on UDP sends nothing), which includes any path
MTU the kernel has learned. 1452 = a 1500-byte Ethernet MTU minus IPv6 (40) and
UDP (8) headers, the largest size that fits both families on such a path; a
route that cannot carry it gets 1200, the size every QUIC path must carry
(RFC 9000 section 14). A narrower link further along that the kernel does not
know about is not seen: `-max-datagram-size 1200` is the knob for such a path.
"""

from __future__ import annotations

import ipaddress
import socket

#: A 1500-byte Ethernet MTU minus IPv6 + UDP headers.
FULL_DATAGRAM = 1452
#: Every QUIC path carries this (RFC 9000 section 14).
MIN_DATAGRAM = 1200

_IP_MTU = getattr(socket, "IP_MTU", 14)  # Linux values; not exported by every Python
_IPV6_MTU = getattr(socket, "IPV6_MTU", 24)
_IP_HEADER: dict[int, int] = {socket.AF_INET: 20 + 8, socket.AF_INET6: 40 + 8}


def route_mtu(host: str, port: int) -> int | None:
    """The kernel's MTU for the route to host:port (an IP literal), or None if unknown."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return None
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((host, port))
            if family == socket.AF_INET6:
                return int(sock.getsockopt(socket.IPPROTO_IPV6, _IPV6_MTU))
            return int(sock.getsockopt(socket.IPPROTO_IP, _IP_MTU))
    except OSError:
        return None


def choose_datagram_size(mtu: int | None, family: int, limit: int = FULL_DATAGRAM) -> int:
    """`limit` (at most 1452) if a route of this MTU carries it, else 1200."""
    limit = max(MIN_DATAGRAM, min(limit, FULL_DATAGRAM))
    if mtu is None:
        return MIN_DATAGRAM
    return limit if mtu - _IP_HEADER.get(family, 48) >= limit else MIN_DATAGRAM


def datagram_size_for(addr: tuple[str, int] | tuple[str, int, int, int], limit: int = FULL_DATAGRAM) -> int:
    """The datagram size for a link to `addr` (as getaddrinfo or recvfrom give it)."""
    host = addr[0]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if host.startswith("::ffff:") and "." in host:  # an IPv4 peer on a dual-stack socket
        host, family = host[7:], socket.AF_INET
    return choose_datagram_size(route_mtu(host, addr[1]), family, limit)
