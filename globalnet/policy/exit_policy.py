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

Rules are ``policy/exit_rule.py``, the default-denied ranges ``policy/denied_ranges.py``,
which target names an exit resolves at all ``policy/target_name.py``. The policy is sans-IO
and never resolves a name: the relay resolves the target, then checks every resolved
address here, and connects to the address it checked (no DNS rebinding between check and
connect).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from globalnet.policy.denied_ranges import denied_range, embedded_ipv4, inside_denied, show_address
from globalnet.policy.exit_rule import ExitRule, IPAddress, parse_exit_rule

__all__ = [
    "ExitDecision",
    "ExitPolicy",
    "record_summary",
    "udp_policy_from_summary",
]

MAX_SUMMARY_LEN = 255  # fits the node record's exit-policy field


@dataclass(frozen=True)
class ExitDecision:
    allowed: bool
    reason: str


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

        inner = embedded_ipv4(address)
        judged: IPAddress = inner if inner is not None else address
        name = show_address(address)
        shown = f"{name} is" if inner is None else f"{name} maps to {inner},"
        candidates = (address,) if inner is None else (address, inner)
        matching = [r for r in self._allow if any(a in r.network for a in candidates)]

        denied = denied_range(judged)
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
        return any(not inside_denied(rule.network) for rule in self._allow)

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
