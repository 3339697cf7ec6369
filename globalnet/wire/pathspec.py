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

This module is sans-IO: it never resolves a name or opens a socket. Names are
only checked for syntax. Every bad input raises :class:`PathSpecError`, whose
message says which element is wrong and why; no other exception escapes
(a hypothesis test feeds it arbitrary text).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = [
    "MAX_HOPS",
    "MAX_HOSTNAME_LEN",
    "MAX_SPEC_LEN",
    "Hop",
    "HopAddr",
    "HopId",
    "HopRandom",
    "PathSpec",
    "PathSpecError",
    "Target",
    "TargetInternet",
    "TargetService",
    "TargetTcp",
    "format_hop",
    "format_hop_addr",
    "format_host_port",
    "format_path_spec",
    "format_target",
    "parse_hop_addr",
    "parse_listen",
    "parse_path_spec",
    "parse_peer_list",
]

MAX_SPEC_LEN = 4096
MAX_HOPS = 16
MAX_HOSTNAME_LEN = 253
MAX_PEER_LIST_LEN = 65536
MAX_PEERS = 1024
NODE_ID_HEX_LEN = 40
MAX_SERVICE_NAME_LEN = 100
SERVICE_SUFFIX = ".gnet"
RANDOM_HOP = "rand"
INTERNET = "internet"

_NODE_ID_RE = re.compile(r"[0-9a-fA-F]{40}")
_PORT_RE = re.compile(r"[0-9]{1,5}")
_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_NUMERIC_LABEL_RE = re.compile(r"[0-9]+|0x[0-9a-f]*")
_SERVICE_NAME_RE = re.compile(rf"[a-z2-7]{{1,{MAX_SERVICE_NAME_LEN}}}")
# Printable ASCII without space: anything else in a spec is a typo or an attack.
_IPV6_CHARS = frozenset("0123456789abcdef:.")
_ALLOWED_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F))


UDP_PREFIX = "udp:"


class PathSpecError(ValueError):
    """A path spec, hop address, peer list or listen address is malformed."""


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


# -- small pieces --------------------------------------------------------


def _show(text: str, limit: int = 60) -> str:
    """Quote user text for an error message, shortened so messages stay small."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return repr(text)


def _check_chars(text: str, what: str) -> None:
    for pos, ch in enumerate(text):
        if ch not in _ALLOWED_CHARS:
            if ch.isspace():
                problem = "contains whitespace"
            elif ch.isascii():
                problem = f"contains control character {ch!r}"
            else:
                problem = f"contains non-ASCII character {ch!r}"
            raise PathSpecError(f"{what} {problem} at position {pos + 1}")


def _parse_port(text: str, *, allow_zero: bool = False) -> int:
    if not text:
        raise PathSpecError("missing port after ':'")
    if not _PORT_RE.fullmatch(text):
        raise PathSpecError(f"port {_show(text)} is not a number from 1 to 65535")
    port = int(text)
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise PathSpecError(f"port {port} is out of range ({low}..65535)")
    return port


def _parse_node_id(text: str) -> bytes:
    if not _NODE_ID_RE.fullmatch(text):
        raise PathSpecError(
            f"node id {_show(text)} must be exactly {NODE_ID_HEX_LEN} hex characters"
        )
    return bytes.fromhex(text)


def _is_service_host(host: str) -> bool:
    return host.lower().endswith(SERVICE_SUFFIX)


def _parse_hostname(text: str) -> str:
    """Check a DNS name's syntax (no lookup) and return it lowercased."""
    if len(text) > MAX_HOSTNAME_LEN:
        raise PathSpecError(f"host name is longer than {MAX_HOSTNAME_LEN} characters")
    name = text.lower()
    labels = name.split(".")
    for label in labels:
        if not label:
            raise PathSpecError(f"host name {_show(text)} has an empty label")
        if not _LABEL_RE.fullmatch(label):
            raise PathSpecError(
                f"host name {_show(text)} has an invalid label {_show(label)} "
                "(letters, digits and inner '-', at most 63 characters)"
            )
    # "127.1" or "0x7f.1" are not names: resolvers read them as IPv4 numbers.
    if _NUMERIC_LABEL_RE.fullmatch(labels[-1]):
        raise PathSpecError(
            f"{_show(text)} is neither a valid IP address nor a host name"
        )
    return name


def _parse_ipv6(text: str) -> str:
    if "%" in text:
        raise PathSpecError(f"IPv6 zone ids are not supported: {_show(text)}")
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        raise PathSpecError(f"{_show(text)} is not a valid IPv6 address") from None


def _split_host_port(text: str) -> tuple[str, str, bool]:
    """Split ``host:port`` / ``[v6]:port``; returns (host, port, bracketed)."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise PathSpecError(f"missing ']' in {_show(text)}")
        host, rest = text[1:close], text[close + 1 :]
        if not rest:
            raise PathSpecError(f"missing port: write {_show(text)[1:-1]}:PORT")
        if not rest.startswith(":"):
            raise PathSpecError(f"expected ':PORT' after ']' in {_show(text)}")
        return host, rest[1:], True
    host, sep, port = text.rpartition(":")
    if not sep:
        raise PathSpecError(f"missing port in {_show(text)} (expected host:port)")
    if ":" in host:
        if _IPV6_CHARS.issuperset(host.lower()):
            raise PathSpecError(
                "IPv6 addresses must be in brackets, as in [::1]:9001 "
                f"(got {_show(text)})"
            )
        raise PathSpecError(f"{_show(text)} is not host:port (too many ':')")
    return host, port, False


def _parse_host(host: str, bracketed: bool) -> str:
    """Normalise a host: IP literals to ipaddress form, names lowercased."""
    if bracketed:
        return _parse_ipv6(host)
    if not host:
        raise PathSpecError("missing host before ':'")
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    return _parse_hostname(host)


def _parse_host_port(text: str) -> tuple[str, int]:
    host, port_text, bracketed = _split_host_port(text)
    if not bracketed and _is_service_host(host):
        raise PathSpecError(
            f"{_show(text)} names a hidden service; write "
            f"'{host.lower()}>HOST:PORT' to reach HOST:PORT from the service's side"
        )
    return _parse_host(host, bracketed), _parse_port(port_text)


def _service_address(text: str) -> str | None:
    """``<name>.gnet`` or ``[<name>[.gnet]]`` -> ``<name>.gnet``; None if not one.

    Raises PathSpecError when the text is clearly meant as a service address
    but the name is bad.
    """
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1]
        if ":" in inner:
            return None  # an IPv6 literal; the caller explains the missing port
        name = inner[: -len(SERVICE_SUFFIX)] if _is_service_host(inner) else inner
    elif _is_service_host(text):
        name = text[: -len(SERVICE_SUFFIX)]
    else:
        return None
    name = name.lower()
    if not _SERVICE_NAME_RE.fullmatch(name):
        raise PathSpecError(
            f"service address {_show(text)}: the name must be 1..{MAX_SERVICE_NAME_LEN} "
            "base32 characters (a-z, 2-7)"
        )
    return name + SERVICE_SUFFIX


# -- public parsers ------------------------------------------------------


def parse_listen(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``PORT``, ``HOST:PORT``, ``[v6]:PORT`` or ``localhost:PORT`` -> (host, port).

    HOST must be an IP address or ``localhost`` (mapped to 127.0.0.1 without a
    lookup). Port 0 means "let the system pick one".
    """
    if not isinstance(text, str):
        raise PathSpecError(f"listen address must be text, not {type(text).__name__}")
    text = text.strip()
    if not text:
        raise PathSpecError("listen address is empty (expected PORT or HOST:PORT)")
    _check_chars(text, "listen address")
    if _PORT_RE.fullmatch(text):
        return default_host, _parse_port(text, allow_zero=True)
    host, port_text, bracketed = _split_host_port(text)
    if bracketed:
        host = _parse_ipv6(host)
    elif host.lower() == "localhost":
        host = "127.0.0.1"
    else:
        try:
            host = str(ipaddress.IPv4Address(host))
        except ValueError:
            raise PathSpecError(
                f"listen host {_show(host)} must be an IP address or localhost "
                "(names are not looked up)"
            ) from None
    return host, _parse_port(port_text, allow_zero=True)


def parse_hop_addr(text: str) -> HopAddr:
    """``host:port`` or ``host:port#<40 hex node id>``; IPv6 as ``[::1]:9001``."""
    if not isinstance(text, str):
        raise PathSpecError(f"peer address must be text, not {type(text).__name__}")
    text = text.strip()
    if not text:
        raise PathSpecError("peer address is empty (expected host:port[#node id])")
    if len(text) > MAX_SPEC_LEN:
        raise PathSpecError(f"peer address is longer than {MAX_SPEC_LEN} characters")
    _check_chars(text, "peer address")
    for sep in ">,":
        if sep in text:
            raise PathSpecError(
                f"peer address {_show(text)} contains {sep!r}; expected host:port[#node id]"
            )
    addr, sep, id_text = text.partition("#")
    node_id = _parse_node_id(id_text) if sep else None
    host, port = _parse_host_port(addr)
    return HopAddr(host, port, node_id)


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
            raise PathSpecError(f"peer {index} ({_show(item)}): {exc}") from None
    return peers


def _parse_hop(text: str) -> Hop:
    lowered = text.lower()
    if lowered == RANDOM_HOP:
        return HopRandom()
    if lowered == INTERNET:
        raise PathSpecError("'internet' can only be the last element (the target)")
    if _NODE_ID_RE.fullmatch(text):
        return HopId(bytes.fromhex(text))
    if _service_address(text) is not None:
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
    host, port = _parse_host_port(text)
    return TargetTcp(host, port)


def _parse_target(text: str) -> Target:
    lowered = text.lower()
    if lowered == INTERNET:
        return TargetInternet()
    if lowered == RANDOM_HOP:
        raise PathSpecError(
            "'rand' is a hop; the target is host:port, internet or a service"
        )
    if _NODE_ID_RE.fullmatch(text):
        raise PathSpecError(
            "a node id is a hop, not a target; the target is host:port, internet "
            "or a service"
        )
    service = _service_address(text)
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
        _check_chars(part, f"element {index} ({_show(part)})")
    if len(parts) < 2:
        raise PathSpecError(
            f"path spec {_show(text)} has no '>': expected listen>hop>...>target"
        )

    try:
        listen_host, listen_port = parse_listen(parts[0])
    except PathSpecError as exc:
        raise PathSpecError(f"listen part ({_show(parts[0])}): {exc}") from None

    # A service target may be followed by one host:port reached from its side.
    then: TargetTcp | None = None
    target_index = len(parts) - 1
    if len(parts) >= 3:
        try:
            before_last = _service_address(parts[-2])
        except PathSpecError:
            before_last = None  # reported below, as a hop or as the target
        if before_last is not None:
            target_index = len(parts) - 2
            try:
                then = _parse_tcp_target(parts[-1])
            except PathSpecError as exc:
                raise PathSpecError(
                    f"element {len(parts)} ({_show(parts[-1])}), after the service: {exc}"
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
                f"hop {number} (element {number + 1}, {_show(hop_text)}): {exc}"
            ) from None

    target_text = parts[target_index]
    try:
        target = _parse_target(target_text)
    except PathSpecError as exc:
        where = f"element {target_index + 1}"
        raise PathSpecError(f"target ({where}, {_show(target_text)}): {exc}") from None
    if then is not None:
        assert isinstance(target, TargetService)
        target = TargetService(target.address, then)

    # A hidden service is reached through its access points, which the service
    # layer picks; every other target needs a client-chosen hop to leave from.
    if not hops and not isinstance(target, TargetService):
        raise PathSpecError("a path needs at least one hop between listen and target")
    return PathSpec(listen_host, listen_port, tuple(hops), target, udp)


# -- formatting ----------------------------------------------------------


def format_host_port(host: str, port: int) -> str:
    """``host:port``, with IPv6 literals in brackets."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


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
