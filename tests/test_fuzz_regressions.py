"""Inputs the fuzzers (fuzz/) found that a decoder mishandled, kept as plain tests."""

from __future__ import annotations

from globalnet.wire.socks import Connect, Reject, SocksParser


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
