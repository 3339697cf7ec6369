"""HTTP CONNECT on the proxy port, sans-IO: the request head, Basic credentials, and every
HTTP answer the port gives (200, the failure pages, 407, 431, 400, 501 for plain HTTP).

Called by `wire.socks.SocksParser` once a whole head (at most MAX_HTTP_HEAD bytes) is in;
a bad request raises `Rejected` carrying the page to send before closing.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re

from globalnet.wire.socks_messages import (
    MAX_HTTP_HEAD,
    MAX_HTTP_HEADERS,
    REALM,
    AddressType,
    Credentials,
    Rejected,
    Reply,
    SocksTarget,
    name_target,
)

HTTP_CONNECT_OK = b"HTTP/1.1 200 Connection established\r\n\r\n"


_HTTP_STATUS: dict[int, tuple[int, str]] = {
    Reply.GENERAL_FAILURE: (502, "Bad Gateway"),
    Reply.NOT_ALLOWED: (403, "Forbidden"),
    Reply.NETWORK_UNREACHABLE: (502, "Bad Gateway"),
    Reply.HOST_UNREACHABLE: (502, "Bad Gateway"),
    Reply.CONNECTION_REFUSED: (502, "Bad Gateway"),
    Reply.TTL_EXPIRED: (504, "Gateway Timeout"),
    Reply.COMMAND_NOT_SUPPORTED: (501, "Not Implemented"),
    Reply.ADDRESS_TYPE_NOT_SUPPORTED: (400, "Bad Request"),
    0xF4: (403, "Forbidden"),  # Tor's extended code: a hidden service's client authorization
}

_REPLY_TEXT: dict[int, str] = {
    Reply.GENERAL_FAILURE: "general failure",
    Reply.NOT_ALLOWED: "refused by the exit's policy",
    Reply.NETWORK_UNREACHABLE: "no route through the network (a relay is unknown or unreachable)",
    Reply.HOST_UNREACHABLE: "host unreachable (or its name did not resolve at the exit)",
    Reply.CONNECTION_REFUSED: "connection refused by the target",
    Reply.TTL_EXPIRED: "timed out",
    Reply.COMMAND_NOT_SUPPORTED: "command not supported",
    Reply.ADDRESS_TYPE_NOT_SUPPORTED: "address type not supported",
}


def http_status_for(code: int) -> tuple[int, str]:
    """HTTP status for a SOCKS reply code (an HTTP CONNECT that failed)."""
    return _HTTP_STATUS.get(code, (502, "Bad Gateway"))


def _http_response(status: int, phrase: str, body: str = "", headers: tuple[str, ...] = ()) -> bytes:
    lines = [f"HTTP/1.1 {status} {phrase}", *headers]
    if body:
        data = body.encode("utf-8")
        lines += ["Content-Type: text/html; charset=utf-8", f"Content-Length: {len(data)}"]
    else:
        data = b""
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + data


def _error_page(title: str, text: str) -> str:
    return (
        f"<!DOCTYPE html>\n<html><head><title>{title}</title></head><body>\n"
        f"<h1>{title}</h1>\n<p>{text}</p>\n</body></html>\n"
    )


#: Plain HTTP requests get this page (Tor's SocksPort does the same): the port
#: speaks SOCKS5 and HTTP CONNECT, not plain HTTP proxying.
NOT_AN_HTTP_PROXY = _http_response(
    501,
    "Not Implemented",
    _error_page(
        "This is a GlobalNet SOCKS5 proxy, not an HTTP proxy",
        "You sent a plain HTTP request to a GlobalNet proxy port. This port speaks SOCKS5 "
        "(and HTTP CONNECT, for https:// through an HTTP proxy setting). Configure your "
        "browser or tool to use it as a <b>SOCKS5</b> proxy with remote name resolution, "
        "for example <code>socks5://127.0.0.1:9050</code> in a browser, or "
        "<code>curl --socks5-hostname 127.0.0.1:9050 http://...</code>.",
    ),
)

PROXY_AUTH_REQUIRED = _http_response(
    407,
    "Proxy Authentication Required",
    _error_page("Proxy authentication required", "This GlobalNet proxy needs a username and password."),
    (f'Proxy-Authenticate: Basic realm="{REALM}"',),
)


def _bad_request(reason: str) -> Rejected:
    page = _error_page("Bad request", "The proxy could not parse this request.")
    return Rejected(_http_response(400, "Bad Request", page), reason)


_PORT_RE = re.compile(r"[0-9]{1,5}")
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEAD_END_RE = re.compile(rb"\r?\n\r?\n")


def find_head_end(buf: bytearray) -> re.Match[bytes] | None:
    """Where the request head ends in `buf`; Rejected (431) once it cannot fit."""
    found = _HEAD_END_RE.search(buf, 0, MAX_HTTP_HEAD + 4)
    if found is None and len(buf) > MAX_HTTP_HEAD:
        page = _error_page("Request header too large", f"At most {MAX_HTTP_HEAD} bytes.")
        raise Rejected(_http_response(431, "Request Header Fields Too Large", page), "HTTP head too large")
    return found


def connect_request(head: str, auth: Credentials | None) -> tuple[SocksTarget, Credentials | None]:
    """A CONNECT head -> (target, credentials given); Rejected for anything else."""
    lines = re.split(r"\r?\n", head)
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN_RE.fullmatch(parts[0]) or not re.fullmatch(r"HTTP/1\.[01]", parts[2]):
        raise _bad_request("malformed HTTP request line")
    method, authority, _version = parts
    if method != "CONNECT":
        raise Rejected(NOT_AN_HTTP_PROXY, f"plain HTTP {method[:16]} request on the proxy port")
    if len(lines) - 1 > MAX_HTTP_HEADERS:
        raise _bad_request(f"more than {MAX_HTTP_HEADERS} header lines")
    credentials: Credentials | None = None
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN_RE.fullmatch(name):
            raise _bad_request("malformed HTTP header line")
        if name.lower() == "proxy-authorization":
            credentials = _basic_credentials(value.strip())
    if auth is not None and (credentials is None or not credentials.matches(auth)):
        raise Rejected(PROXY_AUTH_REQUIRED, "missing or wrong proxy credentials")
    return _authority_target(authority), credentials


def failure_reply(code: int, detail: str) -> bytes:
    """The page for a CONNECT that failed with SOCKS reply `code` (the code in a header too)."""
    status, phrase = http_status_for(code)
    text = _REPLY_TEXT.get(code, "failure")
    page = _error_page(f"{status} {phrase}", f"GlobalNet: {text}." + (f" {_html_escape(detail)}" if detail else ""))
    return _http_response(status, phrase, page, (f"X-GlobalNet-Socks-Reply: {code}",))


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _basic_credentials(value: str) -> Credentials | None:
    """``Basic base64(user:pass)`` -> Credentials; None if it is not that."""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None
    return Credentials(user, password)


def _authority_target(authority: str) -> SocksTarget:
    """``host:port`` / ``[v6]:port`` of a CONNECT request."""
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0 or not authority[close + 1 :].startswith(":"):
            raise _bad_request("malformed CONNECT authority")
        host, port_text = authority[1:close], authority[close + 2 :]
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            raise _bad_request("malformed IPv6 address in CONNECT") from None
        port = _http_port(port_text)
        return SocksTarget(str(address), port, AddressType.IPV6)
    host, sep, port_text = authority.rpartition(":")
    if not sep or not host:
        raise _bad_request("CONNECT needs host:port")
    port = _http_port(port_text)
    try:
        return SocksTarget(str(ipaddress.IPv4Address(host)), port, AddressType.IPV4)
    except ValueError:
        pass
    return name_target(host.encode("latin-1"), port, lambda _code: _bad_request("bad host name").data)


def _http_port(text: str) -> int:
    if not _PORT_RE.fullmatch(text) or not 0 < int(text) <= 65535:
        raise _bad_request("bad port in CONNECT")
    return int(text)
