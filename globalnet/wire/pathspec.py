"""Path specs: ``listen>hop>hop>...>target`` (DESIGN.md, "Paths").

Theory of operation
-------------------
A path spec names a local listening port, the relays a circuit goes through
and what the last hop connects to::

    localhost:1000>peer1:9000>peer2:8080#<40 hex>>rand>example.com:80
    2222>[<service>]>192.168.0.2:22
    8080>rand>rand>rand>internet

The text is split on ``>`` (spaces around it are allowed) and each element is
classified by its position:

* element 1 is the listen address (``PORT``, ``HOST:PORT``, ``[v6]:PORT``,
  ``localhost:PORT``); ``localhost`` is mapped to 127.0.0.1 here, never looked
  up, and any other name is refused (binding a name would need DNS);
* the last element is the target: ``host:port`` (TCP from the last hop),
  ``internet`` (SOCKS picks the target per request) or a hidden service
  (``<name>.gnet`` or ``[<name>]``); a service may be followed by one more
  ``host:port`` element, which the service's side connects to;
* everything in between is a hop: ``host:port``, ``host:port#<node id>``, a
  bare 40-hex node id, or ``rand``.

The pieces (hosts, ports, node ids, service addresses, the listen address) and
:class:`PathSpecError` are in ``wire/host_port.py``. This module is sans-IO: it never resolves a name or opens a socket. Names are
only checked for syntax. Every bad input raises :class:`PathSpecError`, whose
message says which element is wrong and why; no other exception escapes
(a hypothesis test feeds it arbitrary text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from globalnet.wire.host_port import (
    NODE_ID_HEX_LEN,
    NODE_ID_RE,
    PathSpecError,
    check_chars,
    format_host_port,
    parse_host_port,
    parse_listen,
    parse_node_id,
    service_address,
    show,
)

__all__ = [
    "MAX_HOPS",
    "MAX_SPEC_LEN",
    "NEVER_LOOKED_UP_TLDS",
    "Hop",
    "HopAddr",
    "HopId",
    "HopRandom",
    "PathSpec",
    "Target",
    "TargetInternet",
    "TargetService",
    "TargetTcp",
    "format_hop",
    "format_hop_addr",
    "format_path_spec",
    "format_target",
    "parse_hop_addr",
    "parse_path_spec",
    "parse_peer_list",
]

MAX_SPEC_LEN = 4096
MAX_HOPS = 16
MAX_PEER_LIST_LEN = 65536
MAX_PEERS = 1024
RANDOM_HOP = "rand"
INTERNET = "internet"
UDP_PREFIX = "udp:"


@dataclass(frozen=True)
class HopAddr:
    """A relay by address, optionally pinned to a node id (``host:port#id``)."""

    host: str
    port: int
    node_id: bytes | None = None


@dataclass(frozen=True)
class HopId:
    """A relay by node id only; its address comes from the peer table / DHT."""

    node_id: bytes


@dataclass(frozen=True)
class HopRandom:
    """``rand``: a random relay from the peer table, never twice per circuit."""


Hop = HopAddr | HopId | HopRandom


@dataclass(frozen=True)
class TargetTcp:
    """A TCP ``host:port`` reached from the last hop (an exit) or a service."""

    host: str
    port: int


@dataclass(frozen=True)
class TargetInternet:
    """``internet``: the SOCKS request says where to go, the exit connects."""


@dataclass(frozen=True)
class TargetService:
    """A hidden service, ``address`` normalised to ``<name>.gnet``.

    ``then`` is the optional ``host:port`` that the service's side connects
    to, as in ``2222>[name]>192.168.0.2:22``.
    """

    address: str
    then: TargetTcp | None = None


Target = TargetTcp | TargetInternet | TargetService


@dataclass(frozen=True)
class PathSpec:
    listen_host: str
    listen_port: int
    hops: tuple[Hop, ...]
    target: Target
    #: ``udp:PORT>...``: the tunnel carries UDP datagrams (RELAY_CONNECT udp), not a TCP stream.
    udp: bool = False

# -- public parsers ------------------------------------------------------


def parse_hop_addr(text: str) -> HopAddr:
    """``host:port`` or ``host:port#<40 hex node id>``; IPv6 as ``[::1]:9001``."""
    if not isinstance(text, str):
        raise PathSpecError(f"peer address must be text, not {type(text).__name__}")
    text = text.strip()
    if not text:
        raise PathSpecError("peer address is empty (expected host:port[#node id])")
    if len(text) > MAX_SPEC_LEN:
        raise PathSpecError(f"peer address is longer than {MAX_SPEC_LEN} characters")
    check_chars(text, "peer address")
    for sep in ">,":
        if sep in text:
            raise PathSpecError(
                f"peer address {show(text)} contains {sep!r}; expected host:port[#node id]"
            )
    addr, sep, id_text = text.partition("#")
    node_id = parse_node_id(id_text) if sep else None
    host, port = parse_host_port(addr)
    tld = host.rpartition(".")[2]
    if tld in NEVER_LOOKED_UP_TLDS:  # the dialling node's resolver would see it (RFC 7686: never .onion)
        raise PathSpecError(
            f"peer address {show(text)}: names under .{tld} are never looked up (RFC 6761/7686); "
            "give the relay's real host name or IP address"
        )
    return HopAddr(host, port, node_id)


#: Relay names that must never reach a resolver: a .onion name in DNS leaks what the user
#: meant to reach, and .invalid never resolves. (.local, .internal, .test can name a LAN or
#: lab relay and stay allowed; exits refuse them as targets, see policy/target_name.py.)
NEVER_LOOKED_UP_TLDS = frozenset({"onion", "invalid"})


def parse_peer_list(text: str) -> list[HopAddr]:
    """``"a:p[#id], b:p"``: comma separated, spaces ignored, empty items skipped."""
    if not isinstance(text, str):
        raise PathSpecError(f"peer list must be text, not {type(text).__name__}")
    if len(text) > MAX_PEER_LIST_LEN:
        raise PathSpecError(f"peer list is longer than {MAX_PEER_LIST_LEN} characters")
    peers: list[HopAddr] = []
    for index, item in enumerate(text.split(","), start=1):
        item = item.strip()
        if not item:
            continue
        if len(peers) >= MAX_PEERS:
            raise PathSpecError(f"peer list has more than {MAX_PEERS} peers")
        try:
            peers.append(parse_hop_addr(item))
        except PathSpecError as exc:
            raise PathSpecError(f"peer {index} ({show(item)}): {exc}") from None
    return peers


def _parse_hop(text: str) -> Hop:
    lowered = text.lower()
    if lowered == RANDOM_HOP:
        return HopRandom()
    if lowered == INTERNET:
        raise PathSpecError("'internet' can only be the last element (the target)")
    if NODE_ID_RE.fullmatch(text):
        return HopId(bytes.fromhex(text))
    if service_address(text) is not None:
        raise PathSpecError("a hidden service can only be the target, not a hop")
    if "#" not in text and ":" not in text and not text.startswith("["):
        if re.fullmatch(r"[0-9a-fA-F]+", text):
            raise PathSpecError(
                f"node id must be exactly {NODE_ID_HEX_LEN} hex characters "
                f"(got {len(text)})"
            )
        hint = f" (did you mean '{text}:9000'?)" if len(text) <= 60 else ""
        raise PathSpecError(
            "a hop is host:port, host:port#<node id>, a 40-hex node id or rand" + hint
        )
    return parse_hop_addr(text)


def _parse_tcp_target(text: str) -> TargetTcp:
    if "#" in text:
        raise PathSpecError("a target is host:port; a '#<node id>' pin belongs on hops")
    host, port = parse_host_port(text)
    return TargetTcp(host, port)


def _parse_target(text: str) -> Target:
    lowered = text.lower()
    if lowered == INTERNET:
        return TargetInternet()
    if lowered == RANDOM_HOP:
        raise PathSpecError(
            "'rand' is a hop; the target is host:port, internet or a service"
        )
    if NODE_ID_RE.fullmatch(text):
        raise PathSpecError(
            "a node id is a hop, not a target; the target is host:port, internet "
            "or a service"
        )
    service = service_address(text)
    if service is not None:
        return TargetService(service)
    return _parse_tcp_target(text)


def parse_path_spec(text: str) -> PathSpec:
    """Parse ``listen>hop>...>target``; see the module docstring for the forms."""
    if not isinstance(text, str):
        raise PathSpecError(f"path spec must be text, not {type(text).__name__}")
    if len(text) > MAX_SPEC_LEN:
        raise PathSpecError(f"path spec is longer than {MAX_SPEC_LEN} characters")
    udp = text[:4].lower() == UDP_PREFIX
    if udp:
        text = text[len(UDP_PREFIX) :]
    parts = [part.strip(" \t") for part in text.split(">")]
    if len(parts) == 1 and not parts[0]:
        raise PathSpecError("path spec is empty (expected listen>hop>...>target)")
    for index, part in enumerate(parts, start=1):
        if not part:
            raise PathSpecError(f"element {index} of the path spec is empty")
        check_chars(part, f"element {index} ({show(part)})")
    if len(parts) < 2:
        raise PathSpecError(
            f"path spec {show(text)} has no '>': expected listen>hop>...>target"
        )

    try:
        listen_host, listen_port = parse_listen(parts[0])
    except PathSpecError as exc:
        raise PathSpecError(f"listen part ({show(parts[0])}): {exc}") from None

    # A service target may be followed by one host:port reached from its side.
    then: TargetTcp | None = None
    target_index = len(parts) - 1
    if len(parts) >= 3:
        try:
            before_last = service_address(parts[-2])
        except PathSpecError:
            before_last = None  # reported below, as a hop or as the target
        if before_last is not None:
            target_index = len(parts) - 2
            try:
                then = _parse_tcp_target(parts[-1])
            except PathSpecError as exc:
                raise PathSpecError(
                    f"element {len(parts)} ({show(parts[-1])}), after the service: {exc}"
                ) from None

    hop_texts = parts[1:target_index]
    if len(hop_texts) > MAX_HOPS:
        raise PathSpecError(
            f"a path has at most {MAX_HOPS} hops (got {len(hop_texts)})"
        )
    hops: list[Hop] = []
    for number, hop_text in enumerate(hop_texts, start=1):
        try:
            hops.append(_parse_hop(hop_text))
        except PathSpecError as exc:
            raise PathSpecError(
                f"hop {number} (element {number + 1}, {show(hop_text)}): {exc}"
            ) from None

    target_text = parts[target_index]
    try:
        target = _parse_target(target_text)
    except PathSpecError as exc:
        where = f"element {target_index + 1}"
        raise PathSpecError(f"target ({where}, {show(target_text)}): {exc}") from None
    if then is not None:
        assert isinstance(target, TargetService)
        target = TargetService(target.address, then)

    # A hidden service is reached through its access points, which the service
    # layer picks; every other target needs a client-chosen hop to leave from.
    if not hops and not isinstance(target, TargetService):
        raise PathSpecError("a path needs at least one hop between listen and target")
    return PathSpec(listen_host, listen_port, tuple(hops), target, udp)

# -- formatting ----------------------------------------------------------


def format_hop_addr(hop: HopAddr) -> str:
    text = format_host_port(hop.host, hop.port)
    if hop.node_id is not None:
        text += "#" + hop.node_id.hex()
    return text


def format_hop(hop: Hop) -> str:
    if isinstance(hop, HopAddr):
        return format_hop_addr(hop)
    if isinstance(hop, HopId):
        return hop.node_id.hex()
    return RANDOM_HOP


def format_target(target: Target) -> str:
    if isinstance(target, TargetTcp):
        return format_host_port(target.host, target.port)
    if isinstance(target, TargetInternet):
        return INTERNET
    if target.then is None:
        return target.address
    return f"{target.address}>{format_host_port(target.then.host, target.then.port)}"


def format_path_spec(spec: PathSpec) -> str:
    """The canonical text of a spec: ``parse_path_spec(format_path_spec(s)) == s``."""
    parts = [format_host_port(spec.listen_host, spec.listen_port)]
    parts.extend(format_hop(hop) for hop in spec.hops)
    parts.append(format_target(spec.target))
    return (UDP_PREFIX if spec.udp else "") + ">".join(parts)
