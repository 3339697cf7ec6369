"""The SOCKS5 / RFC 1929 / HTTP CONNECT parser (sans-IO): exact bytes in and out.

One vector table drives most tests: each case is the client's bytes and the
events expected, fed whole and then one byte at a time (the result must not
depend on how TCP cut the bytes).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from globalnet.errors import ErrorKind
from globalnet.wire.http_connect import NOT_AN_HTTP_PROXY, PROXY_AUTH_REQUIRED, http_status_for
from globalnet.wire.socks import SocksParser
from globalnet.wire.socks_messages import (
    MAX_BUFFER,
    MAX_HTTP_HEAD,
    SOCKS4_REJECT,
    AddressType,
    Associate,
    Connect,
    Credentials,
    Event,
    Flavor,
    LocalProtocolError,
    Reject,
    Send,
    SocksTarget,
    socks_reply,
)

NO_AUTH = b"\x05\x01\x00"
OFFER_BOTH = b"\x05\x02\x00\x02"
CHOSE_NO_AUTH = Send(b"\x05\x00")
CHOSE_USERPASS = Send(b"\x05\x02")
AUTH_OK = Send(b"\x01\x00")
AUTH_FAIL = b"\x01\x01"
NULL_BIND = b"\x01\x00\x00\x00\x00\x00\x00"


def req(atyp: int, addr: bytes, port: int = 80, cmd: int = 1, ver: int = 5, rsv: int = 0) -> bytes:
    return bytes([ver, cmd, rsv, atyp]) + addr + port.to_bytes(2, "big")


def name(text: bytes) -> bytes:
    return bytes([len(text)]) + text


def userpass(user: bytes, password: bytes, ver: int = 1) -> bytes:
    return bytes([ver, len(user)]) + user + bytes([len(password)]) + password


def target(host: str, port: int, atyp: AddressType) -> SocksTarget:
    return SocksTarget(host, port, atyp)


def connect(host: str, port: int, atyp: AddressType, creds: Credentials | None = None, early: bytes = b"", flavor: Flavor = Flavor.SOCKS5) -> Connect:
    return Connect(target(host, port, atyp), creds, flavor, early)


def reject(data: bytes) -> RejectWith:
    return RejectWith(data)


def reject_http(status: int) -> RejectWith:
    return RejectWith(f"HTTP/1.1 {status} ".encode(), prefix=True)


@dataclass(frozen=True)
class RejectWith:
    """A Reject with these bytes, or starting with them (the reason text is free)."""

    data: bytes
    prefix: bool = False


ALICE = Credentials(b"alice", b"s3cret")
V4 = AddressType.IPV4
V6 = AddressType.IPV6
DN = AddressType.DOMAIN

# (id, auth configured, client bytes, expected events)
VECTORS: list[tuple[str, Credentials | None, bytes, list[object]]] = [
    # -- the three address types ------------------------------------------
    ("ipv4", None, NO_AUTH + req(1, bytes([127, 0, 0, 1]), 8080),
     [CHOSE_NO_AUTH, connect("127.0.0.1", 8080, V4)]),
    ("ipv6", None, NO_AUTH + req(4, bytes(15) + b"\x01", 443),
     [CHOSE_NO_AUTH, connect("::1", 443, V6)]),
    ("domain", None, NO_AUTH + req(3, name(b"localhost"), 80),
     [CHOSE_NO_AUTH, connect("localhost", 80, DN)]),
    ("domain kept as given (no lowercasing, no lookup)", None, NO_AUTH + req(3, name(b"Example.ORG."), 1),
     [CHOSE_NO_AUTH, connect("Example.ORG.", 1, DN)]),
    ("domain of 253 bytes", None, NO_AUTH + req(3, name(b"a" * 253), 65535),
     [CHOSE_NO_AUTH, connect("a" * 253, 65535, DN)]),
    ("domain .gnet passes the parser (the proxy routes it)", None, NO_AUTH + req(3, name(b"abc.gnet"), 80),
     [CHOSE_NO_AUTH, connect("abc.gnet", 80, DN)]),
    ("optimistic data after the request is the stream's", None, NO_AUTH + req(1, b"\x7f\x00\x00\x01", 80) + b"GET / HTTP/1.0\r\n\r\n",
     [CHOSE_NO_AUTH, connect("127.0.0.1", 80, V4, early=b"GET / HTTP/1.0\r\n\r\n")]),
    # -- methods and RFC 1929 ---------------------------------------------
    ("user/pass preferred when offered (isolation)", None, OFFER_BOTH + userpass(b"alice", b"s3cret") + req(3, name(b"localhost")),
     [CHOSE_USERPASS, AUTH_OK, connect("localhost", 80, DN, ALICE)]),
    ("any credentials accepted without -proxy-auth, even empty", None, b"\x05\x01\x02" + userpass(b"", b"") + req(3, name(b"h")),
     [CHOSE_USERPASS, AUTH_OK, connect("h", 80, DN, Credentials(b"", b""))]),
    ("configured credentials accepted", ALICE, OFFER_BOTH + userpass(b"alice", b"s3cret") + req(1, bytes(4)),
     [CHOSE_USERPASS, AUTH_OK, connect("0.0.0.0", 80, V4, ALICE)]),
    ("wrong password", ALICE, OFFER_BOTH + userpass(b"alice", b"guess"),
     [CHOSE_USERPASS, reject(AUTH_FAIL)]),
    ("wrong user", ALICE, OFFER_BOTH + userpass(b"bob", b"s3cret"),
     [CHOSE_USERPASS, reject(AUTH_FAIL)]),
    ("no-auth only while auth is required", ALICE, NO_AUTH,
     [reject(b"\x05\xff")]),
    ("no acceptable method (GSSAPI only)", None, b"\x05\x01\x01",
     [reject(b"\x05\xff")]),
    ("zero methods", None, b"\x05\x00",
     [reject(b"\x05\xff")]),
    ("wrong auth sub-negotiation version", None, b"\x05\x01\x02" + userpass(b"a", b"b", ver=5),
     [CHOSE_USERPASS, reject(AUTH_FAIL)]),
    # -- reply codes from the parser --------------------------------------
    ("BIND", None, NO_AUTH + req(1, bytes(4), cmd=2),
     [CHOSE_NO_AUTH, reject(socks_reply(0x07))]),
    ("UDP ASSOCIATE", None, NO_AUTH + req(1, bytes(4), port=0, cmd=3),
     [CHOSE_NO_AUTH, Associate(target("0.0.0.0", 0, AddressType.IPV4), None)]),
    ("UDP ASSOCIATE with a source and credentials", ALICE,
     b"\x05\x01\x02" + userpass(b"alice", b"s3cret") + req(1, bytes([127, 0, 0, 1]), port=5000, cmd=3),
     [CHOSE_USERPASS, AUTH_OK, Associate(target("127.0.0.1", 5000, AddressType.IPV4), ALICE)]),
    ("unknown command", None, NO_AUTH + req(1, bytes(4), cmd=9),
     [CHOSE_NO_AUTH, reject(socks_reply(0x07))]),
    ("unknown address type", None, NO_AUTH + b"\x05\x01\x00\x05" + bytes(6),
     [CHOSE_NO_AUTH, reject(socks_reply(0x08))]),
    ("address type 0", None, NO_AUTH + b"\x05\x01\x00\x00",
     [CHOSE_NO_AUTH, reject(socks_reply(0x08))]),
    # -- malformed ---------------------------------------------------------
    ("wrong version in the greeting", None, b"\x06\x01\x00", [reject(b"")]),
    ("SOCKS4 gets a SOCKS4 rejection", None, b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00", [reject(SOCKS4_REJECT)]),
    ("binary garbage", None, b"\x16\x03\x01\x02\x00", [reject(b"")]),
    ("lower-case letters are not HTTP", None, b"get / HTTP/1.1\r\n\r\n", [reject(b"")]),
    ("wrong version in the request", None, NO_AUTH + req(1, bytes(4), ver=4),
     [CHOSE_NO_AUTH, reject(b"")]),
    ("reserved byte not zero", None, NO_AUTH + req(1, bytes(4), rsv=1),
     [CHOSE_NO_AUTH, reject(socks_reply(0x01))]),
    ("zero-length domain name", None, NO_AUTH + req(3, name(b""), 80),
     [CHOSE_NO_AUTH, reject(socks_reply(0x01))]),
    ("domain of 254 bytes (a circuit carries at most 253)", None, NO_AUTH + req(3, name(b"a" * 254)),
     [CHOSE_NO_AUTH, reject(socks_reply(0x04))]),
    ("domain with a NUL byte", None, NO_AUTH + req(3, name(b"evil\x00.example")),
     [CHOSE_NO_AUTH, reject(socks_reply(0x04))]),
    ("domain with a space", None, NO_AUTH + req(3, name(b"a b")),
     [CHOSE_NO_AUTH, reject(socks_reply(0x04))]),
    ("domain with non-ASCII bytes", None, NO_AUTH + req(3, name("bücher.de".encode())),
     [CHOSE_NO_AUTH, reject(socks_reply(0x04))]),
    ("extra bytes in the greeting (more methods than NMETHODS)", None, b"\x05\x01\x00\x00" + req(1, bytes(4)),
     [CHOSE_NO_AUTH, reject(b"")]),
    ("truncated greeting", None, b"\x05\x02\x00", []),
    ("truncated request (no port)", None, NO_AUTH + b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00",
     [CHOSE_NO_AUTH]),
    ("truncated domain", None, NO_AUTH + b"\x05\x01\x00\x03\x09local", [CHOSE_NO_AUTH]),
    ("truncated auth", None, b"\x05\x01\x02\x01\x05ali", [CHOSE_USERPASS]),
    # -- HTTP CONNECT --------------------------------------------------------
    ("HTTP CONNECT name", None, b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n",
     [connect("localhost", 443, DN, flavor=Flavor.HTTP)]),
    ("HTTP CONNECT IPv4, HTTP/1.0, LF only", None, b"CONNECT 127.0.0.1:8080 HTTP/1.0\n\n",
     [connect("127.0.0.1", 8080, V4, flavor=Flavor.HTTP)]),
    ("HTTP CONNECT IPv6", None, b"CONNECT [::1]:80 HTTP/1.1\r\n\r\n",
     [connect("::1", 80, V6, flavor=Flavor.HTTP)]),
    ("HTTP CONNECT with Basic credentials and early data", None,
     b"CONNECT h:1 HTTP/1.1\r\nProxy-Authorization: Basic " + base64.b64encode(b"alice:s3cret") + b"\r\n\r\n\x16\x03",
     [connect("h", 1, DN, ALICE, early=b"\x16\x03", flavor=Flavor.HTTP)]),
    ("HTTP CONNECT with the required credentials", ALICE,
     b"CONNECT h:1 HTTP/1.1\r\nproxy-authorization:  basic " + base64.b64encode(b"alice:s3cret") + b"\r\n\r\n",
     [connect("h", 1, DN, ALICE, flavor=Flavor.HTTP)]),
    ("HTTP CONNECT without the required credentials", ALICE, b"CONNECT h:1 HTTP/1.1\r\n\r\n",
     [reject(PROXY_AUTH_REQUIRED)]),
    ("HTTP CONNECT with wrong credentials", ALICE,
     b"CONNECT h:1 HTTP/1.1\r\nProxy-Authorization: Basic " + base64.b64encode(b"alice:x") + b"\r\n\r\n",
     [reject(PROXY_AUTH_REQUIRED)]),
    ("plain HTTP GET gets the 501 page", None, b"GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\n\r\n",
     [reject(NOT_AN_HTTP_PROXY)]),
    ("CONNECT without a port", None, b"CONNECT localhost HTTP/1.1\r\n\r\n", [reject_http(400)]),
    ("CONNECT with port 0", None, b"CONNECT localhost:0 HTTP/1.1\r\n\r\n", [reject_http(400)]),
    ("CONNECT with an extra token", None, b"CONNECT h:1 HTTP/1.1 extra\r\n\r\n", [reject_http(400)]),
    ("CONNECT with a bad version", None, b"CONNECT h:1 HTTP/2.0\r\n\r\n", [reject_http(400)]),
    ("CONNECT with a header line without a colon", None, b"CONNECT h:1 HTTP/1.1\r\nbroken\r\n\r\n", [reject_http(400)]),
    ("CONNECT with a bad IPv6 literal", None, b"CONNECT [::g]:1 HTTP/1.1\r\n\r\n", [reject_http(400)]),
    ("CONNECT to an empty host", None, b"CONNECT :80 HTTP/1.1\r\n\r\n", [reject_http(400)]),
    ("truncated HTTP head", None, b"CONNECT h:1 HTTP/1.1\r\nHost: h\r\n", []),
]  # fmt: skip


def _check(events: list[Event], expected: list[object]) -> None:
    assert len(events) == len(expected), events
    for got, want in zip(events, expected, strict=True):
        if isinstance(want, RejectWith):
            assert isinstance(got, Reject), got
            assert got.data.startswith(want.data) if want.prefix else got.data == want.data, got
            assert got.reason
        else:
            assert got == want


@pytest.mark.parametrize(("auth", "data", "expected"), [v[1:] for v in VECTORS], ids=[v[0] for v in VECTORS])
def test_vectors_whole(auth: Credentials | None, data: bytes, expected: list[object]) -> None:
    _check(SocksParser(auth).feed(data), expected)


@pytest.mark.parametrize(("auth", "data", "expected"), [v[1:] for v in VECTORS], ids=[v[0] for v in VECTORS])
def test_vectors_byte_by_byte(auth: Credentials | None, data: bytes, expected: list[object]) -> None:
    parser = SocksParser(auth)
    events: list[Event] = []
    for i in range(len(data)):
        if parser.finished:
            break
        events += parser.feed(data[i : i + 1])
    # fed byte by byte, the request completes before any early data arrives
    if expected and isinstance(expected[-1], Connect) and expected[-1].early:
        assert isinstance(events[-1], Connect)
        assert events[-1].early == b""
        expected = [*expected[:-1], Connect(expected[-1].target, expected[-1].credentials, expected[-1].flavor)]
    _check(events, expected)


def test_udp_associate_reply_names_the_relay_port() -> None:
    parser = SocksParser()
    parser.feed(NO_AUTH + req(1, bytes(4), port=0, cmd=3))
    with pytest.raises(LocalProtocolError):
        parser.reply_success()
    assert parser.reply_associated("127.0.0.1", 40000) == b"\x05\x00\x00\x01\x7f\x00\x00\x01" + (40000).to_bytes(2, "big")
    six = SocksParser()
    six.feed(NO_AUTH + req(1, bytes(4), port=0, cmd=3))
    assert six.reply_associated("::1", 53) == b"\x05\x00\x00\x04" + bytes(15) + b"\x01\x00\x35"
    connect_parser = SocksParser()
    connect_parser.feed(NO_AUTH + req(1, bytes(4)))
    with pytest.raises(LocalProtocolError):
        connect_parser.reply_associated("127.0.0.1", 1)


def test_bytes_after_udp_associate_are_rejected() -> None:
    events = SocksParser().feed(NO_AUTH + req(1, bytes(4), port=0, cmd=3) + b"junk")
    assert isinstance(events[-1], Reject)


def test_success_replies() -> None:
    parser = SocksParser()
    parser.feed(NO_AUTH + req(1, bytes(4)))
    assert parser.reply_success() == b"\x05\x00\x00" + NULL_BIND
    http = SocksParser()
    http.feed(b"CONNECT h:1 HTTP/1.1\r\n\r\n")
    assert http.reply_success() == b"HTTP/1.1 200 Connection established\r\n\r\n"


@pytest.mark.parametrize("code", [1, 2, 3, 4, 5, 6])
def test_failure_replies(code: int) -> None:
    parser = SocksParser()
    parser.feed(NO_AUTH + req(3, name(b"localhost")))
    assert parser.reply_failure(code) == bytes([5, code, 0]) + NULL_BIND
    http = SocksParser()
    http.feed(b"CONNECT h:1 HTTP/1.1\r\n\r\n")
    status, phrase = http_status_for(code)
    reply = http.reply_failure(code, "why <b>")
    assert reply.startswith(f"HTTP/1.1 {status} {phrase}\r\n".encode())
    assert f"X-GlobalNet-Socks-Reply: {code}\r\n".encode() in reply
    assert b"why &lt;b&gt;" in reply


def test_http_status_table() -> None:
    assert http_status_for(0x02)[0] == 403
    assert http_status_for(0x06)[0] == 504
    assert http_status_for(0x04)[0] == 502
    assert http_status_for(0x99)[0] == 502


def test_error_kinds_map_to_reply_codes() -> None:
    assert ErrorKind.EXIT_POLICY.socks_reply == 0x02
    assert ErrorKind.NO_ROUTE.socks_reply == 0x03
    assert ErrorKind.PIN_MISMATCH.socks_reply == 0x03
    assert ErrorKind.LINK_LOST.socks_reply == 0x03
    assert ErrorKind.HOST_UNREACHABLE.socks_reply == 0x04
    assert ErrorKind.CONNECTION_REFUSED.socks_reply == 0x05
    assert ErrorKind.TIMEOUT.socks_reply == 0x06
    # 0x07 is the SOCKS command's answer only (BIND, UDP ASSOCIATE)
    assert ErrorKind.NOT_SUPPORTED.socks_reply == 0x01
    for kind in ErrorKind:
        assert kind.socks_reply not in (0x00, 0x07, 0x08)


def test_local_misuse_raises() -> None:
    parser = SocksParser()
    with pytest.raises(LocalProtocolError):
        parser.reply_success()  # no request yet
    parser.feed(NO_AUTH + req(1, bytes(4)))
    with pytest.raises(LocalProtocolError):
        parser.feed(b"more")  # the request is complete: bytes belong to the stream
    with pytest.raises(LocalProtocolError):
        parser.reply_failure(0)
    parser.reply_failure(4)
    with pytest.raises(LocalProtocolError):
        parser.reply_success()  # already answered


def test_nothing_after_a_reject() -> None:
    parser = SocksParser()
    assert isinstance(parser.feed(b"\x06")[0], Reject)
    assert parser.finished
    with pytest.raises(LocalProtocolError):
        parser.feed(b"\x05")


def test_http_head_is_bounded() -> None:
    parser = SocksParser()
    events = parser.feed(b"CONNECT h:1 HTTP/1.1\r\n" + b"X-Pad: " + b"a" * MAX_HTTP_HEAD)
    assert len(events) == 1 and isinstance(events[0], Reject)
    assert events[0].data.startswith(b"HTTP/1.1 431 ")


def test_too_many_header_lines() -> None:
    parser = SocksParser()
    events = parser.feed(b"CONNECT h:1 HTTP/1.1\r\n" + b"A: b\r\n" * 65 + b"\r\n")
    assert isinstance(events[0], Reject) and events[0].data.startswith(b"HTTP/1.1 400 ")


def test_early_data_is_bounded() -> None:
    ok = SocksParser().feed(NO_AUTH + req(1, bytes(4)) + b"x" * MAX_BUFFER)
    assert isinstance(ok[-1], Connect) and len(ok[-1].early) == MAX_BUFFER
    events = SocksParser().feed(NO_AUTH + req(1, bytes(4)) + b"x" * (MAX_BUFFER + 1))
    assert isinstance(events[-1], Reject) and events[-1].data == b""


def test_credentials_are_not_printed() -> None:
    assert "s3cret" not in repr(ALICE)
    assert "s3cret" not in repr(connect("h", 1, DN, ALICE))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(1, 64), max_size=20), st.booleans())
def test_fuzz_only_events(data: bytes, cuts: list[int], with_auth: bool) -> None:
    """Arbitrary bytes, cut anywhere: events only, never an exception; after
    a Connect or Reject nothing more is parsed."""
    parser = SocksParser(ALICE if with_auth else None)
    pos = 0
    for n in [*cuts, len(data)]:
        chunk = data[pos : pos + n]
        pos += n
        if parser.finished:
            break
        for event in parser.feed(chunk):
            assert isinstance(event, (Send, Connect, Reject))
            if isinstance(event, Connect):
                assert 0 <= event.target.port <= 65535
                assert event.target.host
                if with_auth:
                    assert event.credentials == ALICE


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([NO_AUTH, OFFER_BOTH, b"\x05\x01\x02", b"CONNECT "]), st.binary(max_size=400))
def test_fuzz_after_a_valid_start(prefix: bytes, rest: bytes) -> None:
    parser = SocksParser()
    for event in parser.feed(prefix + rest):
        assert isinstance(event, (Send, Connect, Reject))
