"""The address ranges an exit refuses by default, and how an address is judged against them
(an IPv6 address that carries an IPv4 one is judged by the IPv4 inside).

Listed per family rather than read from ``ipaddress``'s ``is_*`` properties alone: those
differ between Python versions and call some special addresses global (``ff02::1`` is
"global" in 3.11).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from globalnet.policy.exit_rule import IPAddress, IPNetwork

_net4 = ipaddress.IPv4Network
_net6 = ipaddress.IPv6Network

# Ranges an exit refuses by default, most specific first (the first match
# names the reason and is the range an allow rule must lie inside).
# IPv4: RFC 6890 special-purpose registry plus multicast and class E.
_DENIED_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_net4("0.0.0.0/32"), "an unspecified address"),
    (_net4("0.0.0.0/8"), "a 'this network' address"),
    (_net4("10.0.0.0/8"), "a private address"),
    (_net4("100.64.0.0/10"), "a shared (CGNAT) address"),
    (_net4("127.0.0.0/8"), "a loopback address"),
    (_net4("169.254.0.0/16"), "a link-local address"),
    (_net4("172.16.0.0/12"), "a private address"),
    (_net4("192.0.0.0/24"), "an IETF protocol address"),
    (_net4("192.0.2.0/24"), "a documentation address"),
    (_net4("192.88.99.0/24"), "a reserved (6to4 relay) address"),
    (_net4("192.168.0.0/16"), "a private address"),
    (_net4("198.18.0.0/15"), "a benchmarking address"),
    (_net4("198.51.100.0/24"), "a documentation address"),
    (_net4("203.0.113.0/24"), "a documentation address"),
    (_net4("224.0.0.0/4"), "a multicast address"),
    (_net4("255.255.255.255/32"), "a broadcast address"),
    (_net4("240.0.0.0/4"), "a reserved address"),
)
# IPv6: everything outside 2000::/3 (global unicast) is refused; inside it,
# the special-purpose blocks are. Mapped/NAT64/6to4 are unwrapped before this.
_DENIED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_net6("::/128"), "an unspecified address"),
    (_net6("::1/128"), "a loopback address"),
    (_net6("64:ff9b:1::/48"), "a local-use NAT64 address"),
    (_net6("100::/64"), "a discard-only address"),
    (_net6("2001::/23"), "an IETF protocol address"),
    (_net6("2001:db8::/32"), "a documentation address"),
    (_net6("3fff::/20"), "a documentation address"),
    (_net6("fc00::/7"), "a private (unique local) address"),
    (_net6("fe80::/10"), "a link-local address"),
    (_net6("fec0::/10"), "a site-local address"),
    (_net6("ff00::/8"), "a multicast address"),
    # The rest of the space outside 2000::/3, as IANA's reserved blocks.
    (_net6("::/8"), "a reserved address"),
    (_net6("100::/8"), "a reserved address"),
    (_net6("200::/7"), "a reserved address"),
    (_net6("400::/6"), "a reserved address"),
    (_net6("800::/5"), "a reserved address"),
    (_net6("1000::/4"), "a reserved address"),
    (_net6("4000::/2"), "a reserved address"),
    (_net6("8000::/2"), "a reserved address"),
    (_net6("c000::/3"), "a reserved address"),
    (_net6("e000::/4"), "a reserved address"),
    (_net6("f000::/5"), "a reserved address"),
    (_net6("f800::/6"), "a reserved address"),
    (_net6("fe00::/9"), "a reserved address"),
)
_NAT64 = _net6("64:ff9b::/96")
_SIX_TO_FOUR = _net6("2002::/16")


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address that an IPv6 address stands for, if it carries one."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return None


def show_address(address: IPAddress) -> str:
    """``::ffff:127.0.0.1`` rather than 3.11's ``::ffff:7f00:1`` in messages."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def denied_range(address: IPAddress) -> tuple[IPNetwork, str] | None:
    """The default-denied range containing ``address`` and its description."""
    table: Iterable[tuple[IPNetwork, str]]
    table = _DENIED_V4 if isinstance(address, ipaddress.IPv4Address) else _DENIED_V6
    for network, what in table:
        if address in network:
            return network, what
    # Belt and braces: whatever this Python's ipaddress calls non-global.
    if not address.is_global or address.is_multicast:
        return ipaddress.ip_network(address), "not a public address"
    return None


def inside_denied(network: IPNetwork) -> bool:
    """Is the whole network inside one default-denied range?"""
    table: Iterable[tuple[IPNetwork, str]] = _DENIED_V4 if network.version == 4 else _DENIED_V6
    return any(network.subnet_of(denied) for denied, _ in table)  # type: ignore[arg-type]
