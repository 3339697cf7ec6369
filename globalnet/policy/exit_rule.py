"""One exit allow rule, ``NET[:PORTS]`` (-exit-allow, a service's allow:, a record's
UDP rules): parsed strictly, printed back so that it parses to the same rule."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_RULE_LEN = 4096
_PORT_ITEM_RE = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")
_PREFIX_RE = re.compile(r"[0-9]{1,3}")
ALL_PORTS_COUNT = 65535  # a set of every port is stored as None (a 65535-int set costs megabytes)
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


@dataclass(frozen=True)
class ExitRule:
    """Allow ``network`` on ``ports`` (None = every port)."""

    network: IPNetwork
    ports: frozenset[int] | None = None

    def allows_port(self, port: int) -> bool:
        return self.ports is None or port in self.ports

    def __str__(self) -> str:
        """The rule as text that :func:`parse_exit_rule` reads back."""
        net = self.network
        if net.version == 6:
            net_text = f"[{net.network_address}]/{net.prefixlen}"
        else:
            net_text = str(net)
        return f"{net_text}:{_format_ports(self.ports)}"


def _show(text: str, limit: int = 60) -> str:
    """Quote user text for an error message, shortened so messages stay small."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _format_ports(ports: frozenset[int] | None) -> str:
    if ports is None:
        return "*"
    items: list[str] = []
    ordered = sorted(ports)
    start = prev = ordered[0]
    for port in [*ordered[1:], None]:
        if port is not None and port == prev + 1:
            prev = port
            continue
        items.append(str(start) if start == prev else f"{start}-{prev}")
        if port is not None:
            start = prev = port
    return ",".join(items)


def _parse_ports(text: str, rule: str) -> frozenset[int] | None:
    if text == "*":
        return None
    if not text:
        raise ValueError(
            f"exit rule {_show(rule)}: missing ports after ':' (use '*' for all)"
        )
    ports: set[int] = set()
    for item in text.split(","):
        item = item.strip()
        match = _PORT_ITEM_RE.fullmatch(item)
        if not match:
            raise ValueError(
                f"exit rule {_show(rule)}: bad port item {_show(item)} "
                "(expected PORT or LOW-HIGH, comma separated)"
            )
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        for port in (low, high):
            if not 1 <= port <= 65535:
                raise ValueError(
                    f"exit rule {_show(rule)}: port {port} is out of range (1..65535)"
                )
        if low > high:
            raise ValueError(f"exit rule {_show(rule)}: port range {item} is backwards")
        ports.update(range(low, high + 1))
    return None if len(ports) == ALL_PORTS_COUNT else frozenset(ports)


def _split_rule(text: str) -> tuple[str, str | None, str | None]:
    """Split a rule into (address, prefix length or None, ports or None)."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"exit rule {_show(text)}: missing ']'")
        addr, rest = text[1:close], text[close + 1 :]
        prefix: str | None = None
        if "/" in addr:  # [::1/128]:80
            addr, prefix = addr.split("/", 1)
        elif rest.startswith("/"):  # [::1]/128:80
            prefix, sep, ports = rest[1:].partition(":")
            return addr, prefix, ports if sep else None
        if not rest:
            return addr, prefix, None
        if not rest.startswith(":"):
            raise ValueError(
                f"exit rule {_show(text)}: expected ':PORTS' after the network"
            )
        return addr, prefix, rest[1:]
    if "/" in text:
        addr, rest = text.split("/", 1)
        prefix, sep, ports = rest.partition(":")
        return addr, prefix, ports if sep else None
    if text.count(":") == 1:  # IPv4 address with ports
        addr, ports = text.split(":")
        return addr, None, ports
    return text, None, None  # a bare IPv4 or IPv6 address


def parse_exit_rule(text: str) -> ExitRule:
    """``NET[:PORTS]`` -> ExitRule; ValueError with a clear message otherwise.

    NET is an address (meaning /32 or /128) or address/prefix; IPv6 may be
    bracketed, and must be when ports follow without a prefix
    (``[::1]:80``, ``[::1]/128:80``, ``::1/128:80``). PORTS is ``*`` or a comma
    list of ports and LOW-HIGH ranges.
    """
    if not isinstance(text, str):
        raise TypeError(f"exit rule must be text, not {type(text).__name__}")
    rule = text.strip()
    if not rule:
        raise ValueError(
            "exit rule is empty (expected NET[:PORTS], e.g. 127.0.0.1/32:80)"
        )
    if len(rule) > MAX_RULE_LEN:
        raise ValueError(f"exit rule is longer than {MAX_RULE_LEN} characters")
    if not rule.isascii() or any(ch.isspace() and ch != " " for ch in rule):
        raise ValueError(
            f"exit rule {_show(rule)} contains a character that is not allowed"
        )
    addr_text, prefix_text, ports_text = _split_rule(rule)
    if "%" in addr_text:
        raise ValueError(f"exit rule {_show(rule)}: IPv6 zone ids are not supported")
    try:
        address = ipaddress.ip_address(addr_text)
    except ValueError:
        raise ValueError(
            f"exit rule {_show(rule)}: {_show(addr_text)} is not an IP address "
            "(rules take addresses and networks, not names)"
        ) from None
    if prefix_text is None:
        prefix: int = address.max_prefixlen
    else:
        if not _PREFIX_RE.fullmatch(prefix_text):
            raise ValueError(
                f"exit rule {_show(rule)}: bad prefix length {_show(prefix_text)}"
            )
        prefix = int(prefix_text)
        if prefix > address.max_prefixlen:
            raise ValueError(
                f"exit rule {_show(rule)}: prefix length {prefix} is more than "
                f"{address.max_prefixlen}"
            )
    network = ipaddress.ip_network((address, prefix), strict=False)
    if network.network_address != address:
        raise ValueError(
            f"exit rule {_show(rule)}: {address}/{prefix} has host bits set; "
            f"did you mean {network}?"
        )
    # An IPv4-mapped IPv6 rule is an IPv4 rule: that is how addresses are judged.
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        v4 = network.network_address.ipv4_mapped
        assert v4 is not None
        network = ipaddress.IPv4Network((v4, network.prefixlen - 96))
    ports = _parse_ports(ports_text.strip(), rule) if ports_text is not None else None
    return ExitRule(network, ports)
