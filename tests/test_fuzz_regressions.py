"""Inputs the fuzzers (fuzz/) found that a decoder mishandled, kept as plain tests."""

from __future__ import annotations

import pytest

from globalnet.errors import ProtocolError
from globalnet.wire.datagram import decode_datagram, encode_datagram
from globalnet.wire.socks import SocksParser
from globalnet.wire.socks_messages import Connect, Reject
from globalnet.wire.socks_udp import decode_udp_request, encode_udp_datagram


def test_socks5_connect_to_port_zero_is_refused_like_http_connect() -> None:
    """fuzz_socks: SOCKS5 CONNECT to port 0 became a Connect (HTTP CONNECT already refused it)."""
    parser = SocksParser()
    events = parser.feed(b"\x05\x01\x00" + b"\x05\x01\x00\x04" + bytes(15) + b"\x01" + b"\x00\x00")
    assert not any(isinstance(e, Connect) for e in events)
    reject = events[-1]
    assert isinstance(reject, Reject)
    assert reject.data[:2] == b"\x05\x01"  # general failure
    for atyp_and_addr in (b"\x01\x7f\x00\x00\x01", b"\x03\x0bexample.org"):
        events = SocksParser().feed(b"\x05\x01\x00\x05\x01\x00" + atyp_and_addr + b"\x00\x00")
        assert isinstance(events[-1], Reject)


def test_socks_udp_name_longer_than_253_is_malformed_not_a_crash_later() -> None:
    """fuzz_datagram: a 254/255-byte name decoded, then encoding the DATAGRAM frame (or the reply) raised ValueError."""
    for n in (254, 255):
        with pytest.raises(ProtocolError):
            decode_udp_request(b"\0\0\0\x03" + bytes([n]) + b"a" * n + b"\x00\x35data")
    request = decode_udp_request(b"\0\0\0\x03\xfd" + b"a" * 253 + b"\x00\x35data")
    assert decode_datagram(encode_datagram(request.host, request.port, request.data)).host == "a" * 253
    assert decode_udp_request(encode_udp_datagram(request.host, request.port, b"x")).host == "a" * 253
