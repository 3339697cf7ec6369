"""The exit ACL (DESIGN.md, "Exit policy"): may this exit connect to addr:port?

Theory of operation
-------------------
Exit is off by default; a node that is not an exit refuses every TCP target.

An enabled exit first classifies the destination. Addresses that must never
be reached by default (loopback, private, link-local, multicast, unspecified,
reserved, documentation, CGNAT 100.64/10, ...) are listed in one table below,
per family, rather than read from ``ipaddress``'s ``is_*`` properties alone:
those differ between Python versions and call some special addresses global
(``ff02::1`` is "global" in 3.11). An IPv6 address that carries an IPv4 one
(IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) is
judged by the IPv4 address inside, so ``::ffff:127.0.0.1`` is loopback.

* A default-denied address is allowed only by an allow rule that contains
  the address and the port AND lies inside the denied range, so that a broad
  rule such as ``0.0.0.0/0:80`` never opens loopback or the LAN by accident;
  opening 127.0.0.1 takes ``127.0.0.1/32`` (or ``127.0.0.0/8``).
* A public address is allowed on every port when no rule is given; as soon
  as any rule is given the policy is an allow-list, and only a matching rule
  (address and port) allows it.

The policy is sans-IO and never resolves a name: the relay resolves the
target, then checks every resolved address here, and connects to the address
it checked (no DNS rebinding between check and connect).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "ExitDecision",
    "ExitPolicy",
    "ExitRule",
    "parse_exit_rule",
    "record_summary",
    "target_name_problem",
    "udp_policy_from_summary",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_RULE_LEN = 4096
MAX_SUMMARY_LEN = 255  # fits the node record's exit-policy field
_PORT_ITEM_RE = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")
_PREFIX_RE = re.compile(r"[0-9]{1,3}")
ALL_PORTS_COUNT = 65535  # a set of every port is stored as None (a 65535-int set costs megabytes)
#: One DNS label as exits accept it: letters, digits, '-' inside, and '_'
#: (seen in real host names, e.g. service records' targets).
_TARGET_LABEL_RE = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
MAX_TARGET_NAME = 253

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
_MAPPED = _net6("::ffff:0:0/96")
_NAT64 = _net6("64:ff9b::/96")
_SIX_TO_FOUR = _net6("2002::/16")


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


@dataclass(frozen=True)
class ExitDecision:
    allowed: bool
    reason: str


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


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
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


def _show_address(address: IPAddress) -> str:
    """``::ffff:127.0.0.1`` rather than 3.11's ``::ffff:7f00:1`` in messages."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def _denied_range(address: IPAddress) -> tuple[IPNetwork, str] | None:
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


def _inside_denied(network: IPNetwork) -> bool:
    """Is the whole network inside one default-denied range?"""
    table: Iterable[tuple[IPNetwork, str]] = _DENIED_V4 if network.version == 4 else _DENIED_V6
    return any(network.subnet_of(denied) for denied, _ in table)  # type: ignore[arg-type]


class ExitPolicy:
    """Whether this node, as an exit, may connect to an address and port."""

    __slots__ = ("_allow", "_enabled")

    def __init__(self, enabled: bool = False, allow: Sequence[ExitRule] = ()) -> None:
        self._enabled = bool(enabled)
        self._allow: tuple[ExitRule, ...] = tuple(allow)

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def allow(self) -> tuple[ExitRule, ...]:
        return self._allow

    def __repr__(self) -> str:
        return (
            f"ExitPolicy(enabled={self._enabled}, allow={list(map(str, self._allow))})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExitPolicy):
            return NotImplemented
        return (self._enabled, self._allow) == (other._enabled, other._allow)

    def __hash__(self) -> int:
        return hash((self._enabled, self._allow))

    def check(self, address: IPAddress, port: int) -> ExitDecision:
        """Decide for one resolved address; the reason is for logs and clients."""
        if not self._enabled:
            return ExitDecision(False, "this node is not an exit")
        if not isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            raise TypeError(
                f"check() takes a resolved ipaddress address, not {address!r}"
            )
        if (
            isinstance(port, bool)
            or not isinstance(port, int)
            or not 1 <= port <= 65535
        ):
            return ExitDecision(False, f"port {port!r} is not a valid port")

        inner = _embedded_ipv4(address)
        judged: IPAddress = inner if inner is not None else address
        name = _show_address(address)
        shown = f"{name} is" if inner is None else f"{name} maps to {inner},"
        candidates = (address,) if inner is None else (address, inner)
        matching = [r for r in self._allow if any(a in r.network for a in candidates)]

        denied = _denied_range(judged)
        if denied is not None:
            denied_net, what = denied
            # Only a rule inside the denied range opens it (see module docstring).
            openers = [
                r
                for r in matching
                if r.network.version == denied_net.version
                and r.network.subnet_of(denied_net)  # type: ignore[arg-type]
            ]
            for rule in openers:
                if rule.allows_port(port):
                    return ExitDecision(True, f"{name} is allowed by exit rule {rule}")
            if openers:
                return ExitDecision(
                    False, f"port {port} is not allowed by exit policy for {name}"
                )
            return ExitDecision(False, f"{shown} {what}, refused by exit policy")

        if not self._allow:
            return ExitDecision(True, f"{name} is a public address, exit allows all")
        for rule in matching:
            if rule.allows_port(port):
                return ExitDecision(True, f"{name} is allowed by exit rule {rule}")
        if matching:
            return ExitDecision(False, f"port {port} is not allowed by exit policy")
        return ExitDecision(False, f"{name} is not allowed by exit policy")

    def may_exit_to_port(self, port: int) -> bool:
        """Could some destination on ``port`` be allowed? (for path selection)"""
        if not self._enabled or isinstance(port, bool) or not 1 <= port <= 65535:
            return False
        if not self._allow:
            return True
        return any(rule.allows_port(port) for rule in self._allow)

    def allows_public(self) -> bool:
        """Could some public (global) address pass? False when every rule lies inside
        default-denied ranges (an exit for loopback or a LAN only)."""
        if not self._enabled:
            return False
        if not self._allow:
            return True
        return any(not _inside_denied(rule.network) for rule in self._allow)

    def name_refusal(self, name: str, port: int) -> str | None:
        """Why a target *name* is refused before any resolver sees it, or None if it may be resolved.

        Resolving costs a DNS query that tells the resolver (and whoever watches it) what
        a client asked for; an exit only does it when some rule could allow the answer."""
        if not self.may_exit_to_port(port):
            return f"port {port} is not allowed by exit policy"
        if name.rstrip(".").lower() == "localhost" and not self._loopback_allows(port):
            return "localhost is loopback, which this exit's policy refuses"
        if not self.allows_public():
            if name.rstrip(".").lower() == "localhost" and self._loopback_allows(port):
                return None  # resolved from the hosts file, and a loopback rule allows it
            return "this exit allows no public address, so it resolves no names"
        return None

    def _loopback_allows(self, port: int) -> bool:
        loopbacks = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
        return any(self.check(address, port).allowed for address in loopbacks)

    @classmethod
    def from_summary(cls, text: str) -> ExitPolicy:
        """The policy a node record announces (what `summary()` wrote).

        Used by clients choosing an exit; a rule that does not parse (or a
        summary cut short with "...") is left out, so a client may skip an
        exit that would have allowed a target, never pick one that refuses.
        """
        words = text.split(_UDP_MARK, 1)[0].split()
        if not words or words[0] != "accept":
            return cls(False)
        if words[1:] == ["public:*"]:
            return cls(True)
        rules = []
        for word in words[1:]:
            try:
                rules.append(parse_exit_rule(word))
            except ValueError:
                continue
        return cls(True, rules) if rules else cls(False)

    def summary(self) -> str:
        """Short text for the node record: ``reject *``, ``accept public:*``,
        or ``accept RULE RULE ...`` (each rule as parse_exit_rule reads it)."""
        if not self._enabled:
            return "reject *"
        if not self._allow:
            return "accept public:*"
        text = "accept " + " ".join(str(rule) for rule in self._allow)
        if len(text) > MAX_SUMMARY_LEN:
            text = text[: MAX_SUMMARY_LEN - 4].rsplit(" ", 1)[0] + " ..."
        return text


def target_name_problem(host: str) -> str | None:
    """Why an exit will not hand ``host`` to its resolver, or None if it may.

    Why: a client (a SOCKS request) chooses the name, and the system resolver
    should never see garbage, nor a hidden-service name (``.gnet`` names are
    reached inside the network; resolving one would leak it to DNS). IP
    literals pass; the policy then judges the address. The reason does not
    repeat the name (it goes back to the client and into logs).
    """
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    name = host.removesuffix(".")
    if not name:
        return "the target name is empty"
    if len(name) > MAX_TARGET_NAME:
        return f"the target name is longer than {MAX_TARGET_NAME} characters"
    labels = name.split(".")
    if any(not label for label in labels):
        return "the target name has an empty label"
    if not all(_TARGET_LABEL_RE.fullmatch(label) for label in labels):
        return "the target name is not a valid host name"
    tld = labels[-1].lower()
    if tld == "gnet":
        return "hidden service names are not resolved by exits"
    if tld in RESERVED_TLDS and not (tld == "localhost" and len(labels) == 1):
        return f"names under .{tld} are reserved (RFC 6761/6762/7686) and never resolved by exits"
    if len(labels) >= 2 and ".".join(labels[-2:]).lower() == "home.arpa":
        return "names under .home.arpa are local and never resolved by exits"
    return None


#: Special-use top-level names an exit never hands its resolver (RFC 6761, 6762, 7686, 2606; .internal).
RESERVED_TLDS = frozenset({"invalid", "local", "onion", "localhost", "test", "example", "internal"})


#: Where a node record's policy text starts its UDP part (absent: no UDP exit).
_UDP_MARK = "; udp "


def record_summary(tcp: ExitPolicy, udp: ExitPolicy) -> str:
    """The node record's exit-policy text: the TCP summary, then ``; udp RULE ...``
    when the node exits UDP. UDP is opt-in per rule (there is no "every public
    address" for UDP: an open UDP exit is a reflection amplifier)."""
    text = tcp.summary()
    if not (udp.enabled and udp.allow):
        return text
    text += _UDP_MARK + " ".join(str(rule) for rule in udp.allow)
    if len(text) > MAX_SUMMARY_LEN:
        text = text[: MAX_SUMMARY_LEN - 4].rsplit(" ", 1)[0] + " ..."
    return text


def udp_policy_from_summary(text: str) -> ExitPolicy:
    """The UDP policy a node record announces (see `record_summary`); rules that
    do not parse are left out, so a client never picks an exit that refuses."""
    if _UDP_MARK not in text:
        return ExitPolicy(False)
    rules = []
    for word in text.split(_UDP_MARK, 1)[1].split():
        try:
            rules.append(parse_exit_rule(word))
        except ValueError:
            continue
    return ExitPolicy(True, rules) if rules else ExitPolicy(False)
