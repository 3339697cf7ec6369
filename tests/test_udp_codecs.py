"""SOCKS5 UDP headers (RFC 1928 section 7) and DATAGRAM frame bodies: exact bytes, bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from globalnet.errors import ProtocolError
from globalnet.wire.datagram import MAX_DATAGRAM, decode_datagram, encode_datagram
from globalnet.wire.socks_udp import UdpRequest, decode_udp_request, encode_udp_datagram, encode_udp_header

# (host, port, header bytes) -- one table for the writer and the reader
HEADERS = [
    ("127.0.0.1", 53, bytes.fromhex("0000 00 01 7f000001 0035")),
    ("::1", 5353, bytes.fromhex("0000 00 04 00000000000000000000000000000001 14e9")),
    ("localhost", 53, bytes.fromhex("0000 00 03 09") + b"localhost" + bytes.fromhex("0035")),
]


@pytest.mark.parametrize(("host", "port", "header"), HEADERS)
def test_udp_header_table(host: str, port: int, header: bytes) -> None:
    assert encode_udp_header(host, port) == header
    assert decode_udp_request(header + b"payload") == UdpRequest(host, port, b"payload", 0)


def test_a_fragment_is_recognised() -> None:
    request = decode_udp_request(bytes.fromhex("0000 01 01 7f000001 0035") + b"x")
    assert request.is_fragment


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (b"", "truncated"),
        (bytes.fromhex("0001 00 01 7f000001 0035"), "reserved"),
        (bytes.fromhex("0000 00 02 7f000001 0035"), "address type"),
        (bytes.fromhex("0000 00 01 7f000001 0000"), "port 0"),
        (bytes.fromhex("0000 00 03 00 0035"), "empty"),
        (bytes.fromhex("0000 00 03 05") + b"a b\x00c" + bytes.fromhex("0035"), "control"),
        (bytes.fromhex("0000 00 03 ff") + b"a" * 10, "truncated"),
        (bytes.fromhex("0000 00 04 0000"), "truncated"),
    ],
)
def test_malformed_udp_requests_say_why(datagram: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        decode_udp_request(datagram)


@given(st.binary(max_size=600))
def test_udp_request_decoder_never_raises_anything_else(data: bytes) -> None:
    try:
        decode_udp_request(data)
    except ProtocolError:
        pass


def test_udp_request_round_trip_with_data() -> None:
    wire = encode_udp_datagram("127.0.0.2", 9, b"\x00" * 100)
    assert decode_udp_request(wire) == UdpRequest("127.0.0.2", 9, b"\x00" * 100)


def test_datagram_body_exact_bytes() -> None:
    assert encode_datagram("", 0, b"hi") == bytes.fromhex("0000 00") + b"hi"
    assert encode_datagram("127.0.0.1", 53, b"q") == bytes.fromhex("0035 09") + b"127.0.0.1" + b"q"
    d = decode_datagram(bytes.fromhex("0035 09") + b"127.0.0.1" + b"q")
    assert (d.host, d.port, d.payload) == ("127.0.0.1", 53, b"q")


def test_datagram_limits() -> None:
    encode_datagram("h" * 253, 1, b"x" * MAX_DATAGRAM)  # the largest fits one frame
    with pytest.raises(ValueError):
        encode_datagram("", 0, b"x" * (MAX_DATAGRAM + 1))
    with pytest.raises(ProtocolError, match="without a port"):
        decode_datagram(bytes.fromhex("0000 01") + b"h")
    with pytest.raises(ProtocolError, match="without a host"):
        decode_datagram(bytes.fromhex("0035 00"))


@given(st.binary(max_size=400))
def test_datagram_decoder_never_raises_anything_else(data: bytes) -> None:
    try:
        decode_datagram(data)
    except ProtocolError:
        pass


def test_udp_exit_rules_ride_in_the_record_summary() -> None:
    import ipaddress

    from globalnet.policy.exit_policy import ExitPolicy, record_summary, udp_policy_from_summary
    from globalnet.policy.exit_rule import parse_exit_rule

    tcp = ExitPolicy(True, [parse_exit_rule("127.0.0.1/32")])
    udp = ExitPolicy(True, [parse_exit_rule("127.0.0.1/32:53")])
    text = record_summary(tcp, udp)
    assert text == "accept 127.0.0.1/32:* ; udp 127.0.0.1/32:53".replace(" ; ", "; ")
    assert ExitPolicy.from_summary(text) == tcp  # the TCP part is unchanged by the UDP part
    announced = udp_policy_from_summary(text)
    assert announced.check(ipaddress.ip_address("127.0.0.1"), 53).allowed
    assert not announced.check(ipaddress.ip_address("127.0.0.1"), 54).allowed
    # no UDP rules: no UDP part, and a reader sees no UDP exit
    assert record_summary(tcp, ExitPolicy(False)) == tcp.summary()
    assert not udp_policy_from_summary(tcp.summary()).enabled
    # an enabled UDP policy without rules would mean "every public address": never announced
    assert not udp_policy_from_summary(record_summary(tcp, ExitPolicy(True))).enabled
