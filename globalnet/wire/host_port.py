"""One host, port, node id or service address as a user writes it: syntax only, no lookups.

The pieces a path spec (`wire/pathspec.py`), a peer list and a listen address are made of.
Every problem raises :class:`PathSpecError`, whose message says what is wrong; names are
only checked for syntax (``localhost`` as a listen host is 127.0.0.1, never looked up).
"""

from __future__ import annotations

import ipaddress
import re

MAX_HOSTNAME_LEN = 253
NODE_ID_HEX_LEN = 40
MAX_SERVICE_NAME_LEN = 100
SERVICE_SUFFIX = ".gnet"

NODE_ID_RE = re.compile(r"[0-9a-fA-F]{40}")
PORT_RE = re.compile(r"[0-9]{1,5}")
_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_NUMERIC_LABEL_RE = re.compile(r"[0-9]+|0x[0-9a-f]*")
_SERVICE_NAME_RE = re.compile(rf"[a-z2-7]{{1,{MAX_SERVICE_NAME_LEN}}}")
# Printable ASCII without space: anything else in a spec is a typo or an attack.
_IPV6_CHARS = frozenset("0123456789abcdef:.")
_ALLOWED_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F))


class PathSpecError(ValueError):
    """A path spec, hop address, peer list or listen address is malformed."""


def show(text: str, limit: int = 60) -> str:
    """Quote user text for an error message, shortened so messages stay small."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return repr(text)


def check_chars(text: str, what: str) -> None:
    for pos, ch in enumerate(text):
        if ch not in _ALLOWED_CHARS:
            if ch.isspace():
                problem = "contains whitespace"
            elif ch.isascii():
                problem = f"contains control character {ch!r}"
            else:
                problem = f"contains non-ASCII character {ch!r}"
            raise PathSpecError(f"{what} {problem} at position {pos + 1}")


def parse_port(text: str, *, allow_zero: bool = False) -> int:
    if not text:
        raise PathSpecError("missing port after ':'")
    if not PORT_RE.fullmatch(text):
        raise PathSpecError(f"port {show(text)} is not a number from 1 to 65535")
    port = int(text)
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise PathSpecError(f"port {port} is out of range ({low}..65535)")
    return port


def parse_node_id(text: str) -> bytes:
    if not NODE_ID_RE.fullmatch(text):
        raise PathSpecError(
            f"node id {show(text)} must be exactly {NODE_ID_HEX_LEN} hex characters"
        )
    return bytes.fromhex(text)


def is_service_host(host: str) -> bool:
    return host.lower().endswith(SERVICE_SUFFIX)


def parse_hostname(text: str) -> str:
    """Check a DNS name's syntax (no lookup) and return it lowercased."""
    if len(text) > MAX_HOSTNAME_LEN:
        raise PathSpecError(f"host name is longer than {MAX_HOSTNAME_LEN} characters")
    name = text.lower()
    labels = name.split(".")
    for label in labels:
        if not label:
            raise PathSpecError(f"host name {show(text)} has an empty label")
        if not _LABEL_RE.fullmatch(label):
            raise PathSpecError(
                f"host name {show(text)} has an invalid label {show(label)} "
                "(letters, digits and inner '-', at most 63 characters)"
            )
    # "127.1" or "0x7f.1" are not names: resolvers read them as IPv4 numbers.
    if _NUMERIC_LABEL_RE.fullmatch(labels[-1]):
        raise PathSpecError(
            f"{show(text)} is neither a valid IP address nor a host name"
        )
    return name


def parse_ipv6(text: str) -> str:
    if "%" in text:
        raise PathSpecError(f"IPv6 zone ids are not supported: {show(text)}")
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        raise PathSpecError(f"{show(text)} is not a valid IPv6 address") from None


def split_host_port(text: str) -> tuple[str, str, bool]:
    """Split ``host:port`` / ``[v6]:port``; returns (host, port, bracketed)."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise PathSpecError(f"missing ']' in {show(text)}")
        host, rest = text[1:close], text[close + 1 :]
        if not rest:
            raise PathSpecError(f"missing port: write {show(text)[1:-1]}:PORT")
        if not rest.startswith(":"):
            raise PathSpecError(f"expected ':PORT' after ']' in {show(text)}")
        return host, rest[1:], True
    host, sep, port = text.rpartition(":")
    if not sep:
        raise PathSpecError(f"missing port in {show(text)} (expected host:port)")
    if ":" in host:
        if _IPV6_CHARS.issuperset(host.lower()):
            raise PathSpecError(
                "IPv6 addresses must be in brackets, as in [::1]:9001 "
                f"(got {show(text)})"
            )
        raise PathSpecError(f"{show(text)} is not host:port (too many ':')")
    return host, port, False


def parse_host(host: str, bracketed: bool) -> str:
    """Normalise a host: IP literals to ipaddress form, names lowercased."""
    if bracketed:
        return parse_ipv6(host)
    if not host:
        raise PathSpecError("missing host before ':'")
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    return parse_hostname(host)


def parse_host_port(text: str) -> tuple[str, int]:
    host, port_text, bracketed = split_host_port(text)
    if not bracketed and is_service_host(host):
        raise PathSpecError(
            f"{show(text)} names a hidden service; write "
            f"'{host.lower()}>HOST:PORT' to reach HOST:PORT from the service's side"
        )
    return parse_host(host, bracketed), parse_port(port_text)


def service_address(text: str) -> str | None:
    """``<name>.gnet`` or ``[<name>[.gnet]]`` -> ``<name>.gnet``; None if not one.

    Raises PathSpecError when the text is clearly meant as a service address
    but the name is bad.
    """
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1]
        if ":" in inner:
            return None  # an IPv6 literal; the caller explains the missing port
        name = inner[: -len(SERVICE_SUFFIX)] if is_service_host(inner) else inner
    elif is_service_host(text):
        name = text[: -len(SERVICE_SUFFIX)]
    else:
        return None
    name = name.lower()
    if not _SERVICE_NAME_RE.fullmatch(name):
        raise PathSpecError(
            f"service address {show(text)}: the name must be 1..{MAX_SERVICE_NAME_LEN} "
            "base32 characters (a-z, 2-7)"
        )
    return name + SERVICE_SUFFIX


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
    check_chars(text, "listen address")
    if PORT_RE.fullmatch(text):
        return default_host, parse_port(text, allow_zero=True)
    host, port_text, bracketed = split_host_port(text)
    if bracketed:
        host = parse_ipv6(host)
    elif host.lower() == "localhost":
        host = "127.0.0.1"
    else:
        try:
            host = str(ipaddress.IPv4Address(host))
        except ValueError:
            raise PathSpecError(
                f"listen host {show(host)} must be an IP address or localhost "
                "(names are not looked up)"
            ) from None
    return host, parse_port(port_text, allow_zero=True)


def format_host_port(host: str, port: int) -> str:
    """``host:port``, with IPv6 literals in brackets."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"
