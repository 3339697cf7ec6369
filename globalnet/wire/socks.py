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
HTTP request line (``CONNECT host:port HTTP/1.1``, parsed by ``wire/http_connect.py``; any
other method gets a 501 page that explains what this port is, as Tor's SocksPort does), 0x04 (SOCKS4,
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
The numbers, targets, events and SOCKS replies are in ``wire/socks_messages.py``.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable

from globalnet.wire.http_connect import HTTP_CONNECT_OK, connect_request, failure_reply, find_head_end
from globalnet.wire.socks_messages import (
    AUTH_VERSION,
    CMD_BIND,
    CMD_CONNECT,
    CMD_UDP_ASSOCIATE,
    MAX_BUFFER,
    SOCKS4_REJECT,
    SOCKS4_VERSION,
    SOCKS_VERSION,
    AddressType,
    Associate,
    Connect,
    Credentials,
    Event,
    Flavor,
    LocalProtocolError,
    Method,
    Reject,
    Rejected,
    Reply,
    Send,
    SocksTarget,
    name_target,
    socks_reply,
)

__all__ = ["SocksParser"]


class _State(enum.Enum):
    START = "start"
    GREETING = "greeting"
    AUTH = "auth"
    REQUEST = "request"
    HTTP = "http"
    REQUESTED = "requested"  # waiting for the shell's reply_success/failure
    DONE = "done"
    ERROR = "error"

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
                raise Rejected(b"", f"more than {MAX_BUFFER} bytes without a complete message")
        except Rejected as exc:
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
            raise Rejected(SOCKS4_REJECT, "SOCKS4 is not supported (use SOCKS5)")
        raise Rejected(b"", f"unknown protocol (first byte {first:#04x})")

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
            raise Rejected(reply, "no acceptable authentication method offered")
        self._state = _State.AUTH if chosen is Method.USERNAME_PASSWORD else _State.REQUEST
        return Send(reply)

    def _auth_request(self) -> Event | None:
        # VER=1 | ULEN | UNAME | PLEN | PASSWD (RFC 1929 section 2)
        buf = self._buf
        if not buf:
            return None
        if buf[0] != AUTH_VERSION:
            raise Rejected(bytes([AUTH_VERSION, 0x01]), f"wrong auth version {buf[0]:#04x}")
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
            raise Rejected(bytes([AUTH_VERSION, 0x01]), "wrong username or password")
        self._credentials = given
        self._state = _State.REQUEST
        return Send(bytes([AUTH_VERSION, 0x00]))

    def _request(self) -> Event | None:
        # VER | CMD | RSV | ATYP | DST.ADDR | DST.PORT (RFC 1928 section 4)
        buf = self._buf
        if not buf:
            return None
        if buf[0] != SOCKS_VERSION:
            raise Rejected(b"", f"wrong version {buf[0]:#04x} in the request")
        if len(buf) < 4:
            return None
        cmd, rsv, atyp = buf[1], buf[2], buf[3]
        if cmd not in (CMD_CONNECT, CMD_UDP_ASSOCIATE):
            name = {CMD_BIND: "BIND"}.get(cmd, f"command {cmd:#04x}")
            raise Rejected(socks_reply(Reply.COMMAND_NOT_SUPPORTED), f"{name} is not supported")
        if rsv != 0:
            raise Rejected(socks_reply(Reply.GENERAL_FAILURE), "reserved byte is not zero")
        if atyp == AddressType.IPV4:
            size = 4
        elif atyp == AddressType.IPV6:
            size = 16
        elif atyp == AddressType.DOMAIN:
            if len(buf) < 5:
                return None
            size = 1 + buf[4]
        else:
            raise Rejected(socks_reply(Reply.ADDRESS_TYPE_NOT_SUPPORTED), f"unknown address type {atyp:#04x}")
        if len(buf) < 4 + size + 2:
            return None
        raw = self._take(4 + size + 2)
        addr, port = raw[4 : 4 + size], int.from_bytes(raw[-2:], "big")
        # nothing listens on port 0, as HTTP CONNECT says too (found by fuzz/fuzz_socks.py);
        # a UDP ASSOCIATE may say 0: "the port I will send from is not known yet"
        if port == 0 and cmd == CMD_CONNECT:
            raise Rejected(socks_reply(Reply.GENERAL_FAILURE), "CONNECT to port 0")
        if atyp == AddressType.IPV4:
            target = SocksTarget(str(ipaddress.IPv4Address(addr)), port, AddressType.IPV4)
        elif atyp == AddressType.IPV6:
            target = SocksTarget(str(ipaddress.IPv6Address(addr)), port, AddressType.IPV6)
        else:
            target = name_target(addr[1:], port, socks_reply)
        if cmd == CMD_UDP_ASSOCIATE:
            if self._buf:
                raise Rejected(b"", "bytes after a UDP ASSOCIATE request")
            self._state = _State.REQUESTED
            self._associating = True
            return Associate(target, self._credentials)
        return self._requested(target)

    # -- HTTP CONNECT --------------------------------------------------------
    def _http(self) -> Event | None:
        found = find_head_end(self._buf)
        if found is None:
            return None
        head = self._take(found.end())[: found.start()].decode("latin-1")
        target, self._credentials = connect_request(head, self._auth)
        return self._requested(target)

    def _requested(self, target: SocksTarget) -> Connect:
        assert self._flavor is not None
        if len(self._buf) > MAX_BUFFER:
            raise Rejected(b"", f"more than {MAX_BUFFER} bytes sent before the reply")
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
            return HTTP_CONNECT_OK
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
            return failure_reply(code, detail)
        return socks_reply(code)

    def _finish(self) -> None:
        if self._state is not _State.REQUESTED:
            raise LocalProtocolError(f"a reply in state {self._state.value} (no request is waiting)")
        self._state = _State.DONE
