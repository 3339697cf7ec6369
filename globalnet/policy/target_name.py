"""May an exit hand a client-chosen target name to its resolver? (syntax and reserved
names only; no lookup here)."""

from __future__ import annotations

import ipaddress
import re

#: One DNS label as exits accept it: letters, digits, '-' inside, and '_'
#: (seen in real host names, e.g. service records' targets).
_TARGET_LABEL_RE = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
MAX_TARGET_NAME = 253


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
