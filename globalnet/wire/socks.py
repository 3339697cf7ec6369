"""The local proxy protocols, sans-IO: SOCKS5 (RFC 1928) with username/password
auth (RFC 1929), and HTTP CONNECT on the same port.

Theory of operation
-------------------
One :class:`SocksParser` per accepted connection. The asyncio shell feeds it
the bytes it reads (``feed``) and acts on the events it returns, in order:

* :class:`Send` -- write these bytes to the client and keep reading (the
  method selection, the RFC 1929 status);
* :class:`Connect` -- a complete CONNECT request: the shell builds a circuit
  and then asks the parser for the reply bytes with ``reply_success()`` or
  ``reply_failure(code)``; ``Connect.early`` holds bytes the client sent after
  its request without waiting for the reply (optimistic data, bounded), which
  belong to the stream;
* :class:`Reject` -- write ``data`` (a final error reply, possibly empty) and
  close the connection. The parser is then in ERROR and takes nothing more.

The first byte picks the protocol: 0x05 is SOCKS5, an upper-case letter is an
HTTP request line (``CONNECT host:port HTTP/1.1``; any other method gets a 501
page that explains what this port is, as Tor's SocksPort does), 0x04 (SOCKS4,
which cannot carry names to the exit safely) gets a SOCKS4 rejection, anything
else is closed.

SOCKS5 states, one handler each (``_HANDLERS``)::

    START -> GREETING -> [AUTH] -> REQUEST -> REQUESTED -> DONE
    START -> HTTP -> REQUESTED -> DONE                 (any state -> ERROR)

Each message has a fixed layout, so a client may pipeline its greeting, auth
and request; a message that is only partly here waits for more bytes. Any
violation is a :class:`Reject` (the remote side's fault). Calling the parser
wrongly (``feed`` after the request, a reply before it) raises
:class:`LocalProtocolError` (our fault), as h11 splits local and remote
errors. Everything is bounded: at most ``MAX_BUFFER`` bytes wait for a message
to complete, HTTP heads at most ``MAX_HTTP_HEAD`` bytes and ``MAX_HTTP_HEADERS``
lines. Names are not resolved here, nor anywhere on the client: a domain name
goes to the exit as it came (printable ASCII, at most 253 bytes, else 0x04).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hmac
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "MAX_BUFFER",
    "MAX_HTTP_HEAD",
    "MAX_HTTP_HEADERS",
    "MAX_NAME",
    "AddressType",
    "Connect",
    "Credentials",
    "Event",
    "Flavor",
    "LocalProtocolError",
    "Method",
    "ProxyAuth",
    "Reject",
    "Reply",
    "Send",
    "SocksParser",
    "SocksTarget",
    "http_status_for",
    "socks_reply",
]

SOCKS_VERSION = 0x05
SOCKS4_VERSION = 0x04
AUTH_VERSION = 0x01  # RFC 1929 sub-negotiation version
CMD_CONNECT, CMD_BIND, CMD_UDP_ASSOCIATE = 0x01, 0x02, 0x03

#: Bytes that may wait for one message to complete (the largest SOCKS message,
#: the RFC 1929 request, is 513 bytes; an HTTP head may use MAX_HTTP_HEAD).
MAX_BUFFER = 16 * 1024
MAX_HTTP_HEAD = 8 * 1024
MAX_HTTP_HEADERS = 64
#: Longest name a circuit can carry (RELAY_CONNECT) and DNS allows.
MAX_NAME = 253
REALM = "GlobalNet"


class AddressType(enum.IntEnum):
    IPV4 = 0x01
    DOMAIN = 0x03
    IPV6 = 0x04


class Method(enum.IntEnum):
    NO_AUTH = 0x00
    USERNAME_PASSWORD = 0x02
    NO_ACCEPTABLE = 0xFF


class Reply(enum.IntEnum):
    """RFC 1928 section 6 reply codes."""

    SUCCEEDED = 0x00
    GENERAL_FAILURE = 0x01
    NOT_ALLOWED = 0x02
    NETWORK_UNREACHABLE = 0x03
    HOST_UNREACHABLE = 0x04
    CONNECTION_REFUSED = 0x05
    TTL_EXPIRED = 0x06
    COMMAND_NOT_SUPPORTED = 0x07
    ADDRESS_TYPE_NOT_SUPPORTED = 0x08


class Flavor(enum.Enum):
    SOCKS5 = "socks5"
    HTTP = "http-connect"


class LocalProtocolError(Exception):
    """The caller used the parser wrongly (a bug on our side, not the client's)."""


@dataclass(frozen=True)
class Credentials:
    """RFC 1929 username/password (or HTTP Basic). Never printed."""

    username: bytes
    password: bytes = field(repr=False)

    def matches(self, other: Credentials) -> bool:
        """Constant-time comparison (no timing hint about a configured password)."""
        user_ok = hmac.compare_digest(self.username, other.username)
        pass_ok = hmac.compare_digest(self.password, other.password)
        return user_ok and pass_ok


@dataclass(frozen=True)
class ProxyAuth:
    """-proxy-auth USER:PASS: the only credentials the SOCKS proxies accept.

    Here, not in the SOCKS face, so that reading the configuration does not load the face
    (a relay without -proxy never imports it).
    """

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class SocksTarget:
    """What the client asked for: an IP literal (normalised) or a name, as given."""

    host: str
    port: int
    atyp: AddressType

    @property
    def is_name(self) -> bool:
        return self.atyp is AddressType.DOMAIN


@dataclass(frozen=True)
class Send:
    data: bytes


@dataclass(frozen=True)
class Connect:
    target: SocksTarget
    credentials: Credentials | None
    flavor: Flavor
    early: bytes = b""


@dataclass(frozen=True)
class Associate:
    """UDP ASSOCIATE (RFC 1928 section 7): `source` is where the client says it
    will send datagrams from (often 0.0.0.0:0, "not known yet")."""

    source: SocksTarget
    credentials: Credentials | None


@dataclass(frozen=True)
class Reject:
    data: bytes  # the last bytes to write (may be empty); then close
    reason: str  # for a debug log line; never contains the payload


Event = Send | Connect | Associate | Reject


class _State(enum.Enum):
    START = "start"
    GREETING = "greeting"
    AUTH = "auth"
    REQUEST = "request"
    HTTP = "http"
    REQUESTED = "requested"  # waiting for the shell's reply_success/failure
    DONE = "done"
    ERROR = "error"


class _Rejected(Exception):
    """Raised inside the handlers; becomes a Reject event at one boundary."""

    def __init__(self, data: bytes, reason: str) -> None:
        super().__init__(reason)
        self.data = data
        self.reason = reason


# -- replies -----------------------------------------------------------------

_NULL_BIND = bytes([AddressType.IPV4]) + bytes(4) + bytes(2)  # BND.ADDR 0.0.0.0:0


def socks_reply(code: int) -> bytes:
    """The 10-byte SOCKS5 reply: VER REP RSV ATYP=IPv4 BND.ADDR=0.0.0.0 BND.PORT=0."""
    return bytes([SOCKS_VERSION, code, 0x00]) + _NULL_BIND


#: SOCKS4 "request rejected or failed" (VN=0, CD=91).
SOCKS4_REJECT = bytes([0x00, 0x5B]) + bytes(6)

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


def _bad_request(reason: str) -> _Rejected:
    page = _error_page("Bad request", "The proxy could not parse this request.")
    return _Rejected(_http_response(400, "Bad Request", page), reason)


# -- targets -----------------------------------------------------------------

_PRINTABLE = frozenset(range(0x21, 0x7F))
_PORT_RE = re.compile(r"[0-9]{1,5}")
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEAD_END_RE = re.compile(rb"\r?\n\r?\n")


def _name_target(raw: bytes, port: int, reply: Callable[[int], bytes]) -> SocksTarget:
    """A name as the client sent it; checked only for what a circuit can carry."""
    if not raw:
        raise _Rejected(reply(Reply.GENERAL_FAILURE), "zero-length domain name")
    if not _PRINTABLE.issuperset(raw):
        raise _Rejected(reply(Reply.HOST_UNREACHABLE), "domain name has non-printable or non-ASCII bytes")
    if len(raw) > MAX_NAME:
        raise _Rejected(reply(Reply.HOST_UNREACHABLE), f"domain name longer than {MAX_NAME} bytes")
    return SocksTarget(raw.decode("ascii"), port, AddressType.DOMAIN)


# -- the parser --------------------------------------------------------------


class SocksParser:
    """One client connection's SOCKS5 / HTTP CONNECT handshake (see the module doc)."""

    def __init__(self, auth: Credentials | None = None) -> None:
        self._auth = auth
        self._buf = bytearray()
        self._state = _State.START
        self._flavor: Flavor | None = None
        self._credentials: Credentials | None = None
        self._associating = False  # the request was UDP ASSOCIATE
        self._handlers: dict[_State, Callable[[], Event | None]] = {
            _State.START: self._start,
            _State.GREETING: self._greeting,
            _State.AUTH: self._auth_request,
            _State.REQUEST: self._request,
            _State.HTTP: self._http,
        }

    @property
    def state(self) -> str:
        return self._state.value

    @property
    def flavor(self) -> Flavor | None:
        return self._flavor

    @property
    def finished(self) -> bool:
        """True once a Connect or Reject was returned."""
        return self._state in (_State.REQUESTED, _State.DONE, _State.ERROR)

    # -- input ---------------------------------------------------------------
    def feed(self, data: bytes) -> list[Event]:
        """Feed bytes from the client; returns the events they complete."""
        if self._state not in self._handlers:
            raise LocalProtocolError(f"feed() in state {self._state.value}")
        self._buf += data
        events: list[Event] = []
        try:
            while self._state in self._handlers:
                event = self._handlers[self._state]()
                if event is None:
                    break
                events.append(event)
            if self._state in self._handlers and len(self._buf) > MAX_BUFFER:
                raise _Rejected(b"", f"more than {MAX_BUFFER} bytes without a complete message")
        except _Rejected as exc:
            self._state = _State.ERROR
            self._buf.clear()
            events.append(Reject(exc.data, exc.reason))
        return events

    def _take(self, n: int) -> bytes:
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _start(self) -> Event | None:
        if not self._buf:
            return None
        first = self._buf[0]
        if first == SOCKS_VERSION:
            self._flavor = Flavor.SOCKS5
            self._state = _State.GREETING
            return self._greeting()
        if 0x41 <= first <= 0x5A:  # 'A'..'Z': an HTTP method
            self._flavor = Flavor.HTTP
            self._state = _State.HTTP
            return self._http()
        if first == SOCKS4_VERSION:
            raise _Rejected(SOCKS4_REJECT, "SOCKS4 is not supported (use SOCKS5)")
        raise _Rejected(b"", f"unknown protocol (first byte {first:#04x})")

    # -- SOCKS5 --------------------------------------------------------------
    def _greeting(self) -> Event | None:
        # VER | NMETHODS | METHODS (RFC 1928 section 3)
        if len(self._buf) < 2:
            return None
        n = self._buf[1]
        if len(self._buf) < 2 + n:
            return None
        methods = set(self._take(2 + n)[2:])
        if self._auth is not None:
            chosen = Method.USERNAME_PASSWORD if Method.USERNAME_PASSWORD in methods else Method.NO_ACCEPTABLE
        elif Method.USERNAME_PASSWORD in methods:
            chosen = Method.USERNAME_PASSWORD  # credentials select an isolation group
        elif Method.NO_AUTH in methods:
            chosen = Method.NO_AUTH
        else:
            chosen = Method.NO_ACCEPTABLE
        reply = bytes([SOCKS_VERSION, chosen])
        if chosen is Method.NO_ACCEPTABLE:
            raise _Rejected(reply, "no acceptable authentication method offered")
        self._state = _State.AUTH if chosen is Method.USERNAME_PASSWORD else _State.REQUEST
        return Send(reply)

    def _auth_request(self) -> Event | None:
        # VER=1 | ULEN | UNAME | PLEN | PASSWD (RFC 1929 section 2)
        buf = self._buf
        if not buf:
            return None
        if buf[0] != AUTH_VERSION:
            raise _Rejected(bytes([AUTH_VERSION, 0x01]), f"wrong auth version {buf[0]:#04x}")
        if len(buf) < 2:
            return None
        ulen = buf[1]
        if len(buf) < 3 + ulen:
            return None
        plen = buf[2 + ulen]
        if len(buf) < 3 + ulen + plen:
            return None
        raw = self._take(3 + ulen + plen)
        given = Credentials(raw[2 : 2 + ulen], raw[3 + ulen :])
        if self._auth is not None and not given.matches(self._auth):
            raise _Rejected(bytes([AUTH_VERSION, 0x01]), "wrong username or password")
        self._credentials = given
        self._state = _State.REQUEST
        return Send(bytes([AUTH_VERSION, 0x00]))

    def _request(self) -> Event | None:
        # VER | CMD | RSV | ATYP | DST.ADDR | DST.PORT (RFC 1928 section 4)
        buf = self._buf
        if not buf:
            return None
        if buf[0] != SOCKS_VERSION:
            raise _Rejected(b"", f"wrong version {buf[0]:#04x} in the request")
        if len(buf) < 4:
            return None
        cmd, rsv, atyp = buf[1], buf[2], buf[3]
        if cmd not in (CMD_CONNECT, CMD_UDP_ASSOCIATE):
            name = {CMD_BIND: "BIND"}.get(cmd, f"command {cmd:#04x}")
            raise _Rejected(socks_reply(Reply.COMMAND_NOT_SUPPORTED), f"{name} is not supported")
        if rsv != 0:
            raise _Rejected(socks_reply(Reply.GENERAL_FAILURE), "reserved byte is not zero")
        if atyp == AddressType.IPV4:
            size = 4
        elif atyp == AddressType.IPV6:
            size = 16
        elif atyp == AddressType.DOMAIN:
            if len(buf) < 5:
                return None
            size = 1 + buf[4]
        else:
            raise _Rejected(socks_reply(Reply.ADDRESS_TYPE_NOT_SUPPORTED), f"unknown address type {atyp:#04x}")
        if len(buf) < 4 + size + 2:
            return None
        raw = self._take(4 + size + 2)
        addr, port = raw[4 : 4 + size], int.from_bytes(raw[-2:], "big")
        # nothing listens on port 0, as HTTP CONNECT says too (found by fuzz/fuzz_socks.py);
        # a UDP ASSOCIATE may say 0: "the port I will send from is not known yet"
        if port == 0 and cmd == CMD_CONNECT:
            raise _Rejected(socks_reply(Reply.GENERAL_FAILURE), "CONNECT to port 0")
        if atyp == AddressType.IPV4:
            target = SocksTarget(str(ipaddress.IPv4Address(addr)), port, AddressType.IPV4)
        elif atyp == AddressType.IPV6:
            target = SocksTarget(str(ipaddress.IPv6Address(addr)), port, AddressType.IPV6)
        else:
            target = _name_target(addr[1:], port, socks_reply)
        if cmd == CMD_UDP_ASSOCIATE:
            if self._buf:
                raise _Rejected(b"", "bytes after a UDP ASSOCIATE request")
            self._state = _State.REQUESTED
            self._associating = True
            return Associate(target, self._credentials)
        return self._requested(target)

    # -- HTTP CONNECT --------------------------------------------------------
    def _http(self) -> Event | None:
        found = _HEAD_END_RE.search(self._buf, 0, MAX_HTTP_HEAD + 4)
        if found is None:
            if len(self._buf) > MAX_HTTP_HEAD:
                page = _error_page("Request header too large", f"At most {MAX_HTTP_HEAD} bytes.")
                raise _Rejected(_http_response(431, "Request Header Fields Too Large", page), "HTTP head too large")
            return None
        head = self._take(found.end())[: found.start()].decode("latin-1")
        lines = re.split(r"\r?\n", head)
        parts = lines[0].split(" ")
        if len(parts) != 3 or not _TOKEN_RE.fullmatch(parts[0]) or not re.fullmatch(r"HTTP/1\.[01]", parts[2]):
            raise _bad_request("malformed HTTP request line")
        method, authority, _version = parts
        if method != "CONNECT":
            raise _Rejected(NOT_AN_HTTP_PROXY, f"plain HTTP {method[:16]} request on the proxy port")
        if len(lines) - 1 > MAX_HTTP_HEADERS:
            raise _bad_request(f"more than {MAX_HTTP_HEADERS} header lines")
        credentials: Credentials | None = None
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not _TOKEN_RE.fullmatch(name):
                raise _bad_request("malformed HTTP header line")
            if name.lower() == "proxy-authorization":
                credentials = _basic_credentials(value.strip())
        if self._auth is not None and (credentials is None or not credentials.matches(self._auth)):
            raise _Rejected(PROXY_AUTH_REQUIRED, "missing or wrong proxy credentials")
        self._credentials = credentials
        return self._requested(_authority_target(authority))

    def _requested(self, target: SocksTarget) -> Connect:
        assert self._flavor is not None
        if len(self._buf) > MAX_BUFFER:
            raise _Rejected(b"", f"more than {MAX_BUFFER} bytes sent before the reply")
        self._state = _State.REQUESTED
        early = bytes(self._buf)
        self._buf.clear()
        return Connect(target, self._credentials, self._flavor, early)

    # -- replies -------------------------------------------------------------
    def reply_success(self) -> bytes:
        """Bytes that tell the client its stream is open; data flows after them."""
        if self._associating:
            raise LocalProtocolError("a UDP ASSOCIATE is answered with reply_associated()")
        self._finish()
        if self._flavor is Flavor.HTTP:
            return b"HTTP/1.1 200 Connection established\r\n\r\n"
        return socks_reply(Reply.SUCCEEDED)

    def reply_associated(self, host: str, port: int) -> bytes:
        """Success for UDP ASSOCIATE: BND.ADDR/BND.PORT say where to send datagrams."""
        if not self._associating:
            raise LocalProtocolError("reply_associated() without a UDP ASSOCIATE request")
        self._finish()
        address = ipaddress.ip_address(host)
        atyp = AddressType.IPV4 if address.version == 4 else AddressType.IPV6
        return bytes([SOCKS_VERSION, Reply.SUCCEEDED, 0, atyp]) + address.packed + port.to_bytes(2, "big")

    def reply_failure(self, code: int, detail: str = "") -> bytes:
        """Bytes that tell the client why its request failed; close after them."""
        if not 0x01 <= code <= 0xFF:
            raise LocalProtocolError(f"reply_failure({code}): not a failure code")
        self._finish()
        if self._flavor is Flavor.HTTP:
            status, phrase = http_status_for(code)
            text = _REPLY_TEXT.get(code, "failure")
            page = _error_page(f"{status} {phrase}", f"GlobalNet: {text}." + (f" {_html_escape(detail)}" if detail else ""))
            return _http_response(status, phrase, page, (f"X-GlobalNet-Socks-Reply: {code}",))
        return socks_reply(code)

    def _finish(self) -> None:
        if self._state is not _State.REQUESTED:
            raise LocalProtocolError(f"a reply in state {self._state.value} (no request is waiting)")
        self._state = _State.DONE


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
    return _name_target(host.encode("latin-1"), port, lambda _code: _bad_request("bad host name").data)


def _http_port(text: str) -> int:
    if not _PORT_RE.fullmatch(text) or not 0 < int(text) <= 65535:
        raise _bad_request("bad port in CONNECT")
    return int(text)
