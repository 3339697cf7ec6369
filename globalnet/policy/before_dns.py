"""What an exit can refuse about a target name before any resolver sees it.

Why: a resolver query leaks the name to whoever runs the resolver (and to the
network path to it), and an exit that resolves names it is bound to refuse
does so for nothing: Chromium's background lookups through a loopback-only
demo exit sent `*.invalid` names to DNS. So the exit refuses, without
resolving:

* a name under a reserved top-level domain (RFC 2606/6761/6762/7686, and our
  own `.gnet`): `.invalid`, `.local`, `.onion`, `.gnet`, `.test`, `.example`,
  and `.localhost` below the single name `localhost`;
* a name whose port no allow rule admits;
* a name when no rule that admits the port can admit a public address (an
  exit for 127.0.0.1 only): then only `localhost` may resolve, and only when
  a loopback rule admits its port.

Whatever passes is resolved, and every resolved address is then checked by
`ExitPolicy.check` as before. Sans-IO: no clock, no socket, no resolver.
"""

from __future__ import annotations

import ipaddress

from .exit_policy import _DENIED_V4, _DENIED_V6, ExitPolicy, ExitRule

RESERVED_TLDS = frozenset({"invalid", "local", "onion", "gnet", "localhost", "test", "example"})
_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

__all__ = ["RESERVED_TLDS", "name_refusal", "reserved_name_problem"]


def reserved_name_problem(host: str) -> str | None:
    """Why `host` names nothing on the public DNS, or None. IP literals pass."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    name = host.rstrip(".").lower()
    if name == "localhost":
        return None
    tld = name.rsplit(".", 1)[-1]
    if tld in RESERVED_TLDS:
        return f"names under .{tld} are reserved and never resolved by exits"
    return None


def _only_special(rule: ExitRule) -> bool:
    """True if every address the rule covers is default-denied (private, loopback...)."""
    net = rule.network
    if isinstance(net, ipaddress.IPv4Network):
        return any(net.subnet_of(denied) for denied, _ in _DENIED_V4)
    return any(net.subnet_of(denied) for denied, _ in _DENIED_V6)


def name_refusal(policy: ExitPolicy, host: str, port: int) -> str | None:
    """Why the exit refuses the name `host` on `port` without resolving it, or None
    if some address it could resolve to may be allowed (then resolve and check)."""
    if not policy.enabled:
        return "this node is not an exit"
    problem = reserved_name_problem(host)
    if problem is not None:
        return problem
    if not policy.may_exit_to_port(port):
        return f"port {port} is not allowed by exit policy"
    if not policy.allow:
        return None  # every public address on every port
    rules = [rule for rule in policy.allow if rule.allows_port(port)]
    if any(not _only_special(rule) for rule in rules):
        return None
    if host.rstrip(".").lower() == "localhost" and any(
        rule.network.version == loop.version and rule.network.overlaps(loop)  # type: ignore[arg-type]
        for rule in rules
        for loop in _LOOPBACK
    ):
        return None
    return "this exit allows no public address; names are not resolved"
