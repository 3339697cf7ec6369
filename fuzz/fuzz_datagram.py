"""UDP through circuits: DATAGRAM frame bodies (wire/datagram.py) and SOCKS5 UDP requests (wire/socks_udp.py)."""

from __future__ import annotations

from fuzz.harness import check, guarded, instrumented, main

with instrumented():
    from globalnet.errors import GnetError
    from globalnet.wire.datagram import MAX_DATAGRAM, decode_datagram, encode_datagram
    from globalnet.wire.socks_udp import decode_udp_request, encode_udp_datagram

ALLOWED = (GnetError,)
SEEDS = [
    b"\x00" + encode_datagram("example.org", 53, b"query"),
    b"\x00" + encode_datagram("", 0, b"reply"),
    b"\x01" + encode_udp_datagram("127.0.0.1", 53, b"q"),
    b"\x01" + encode_udp_datagram("::1", 53, b"q"),
    b"\x01" + encode_udp_datagram("example.org", 53, b"q"),
]


def one_input(data: bytes) -> None:
    """First byte even: a DATAGRAM frame body; odd: a datagram from the SOCKS UDP client."""
    if not data:
        return
    body = data[1:]
    if data[0] % 2 == 0:
        dgram = decode_datagram(body)
        check(len(dgram.payload) <= MAX_DATAGRAM, "datagram payload beyond the bound")
        check(decode_datagram(encode_datagram(dgram.host, dgram.port, dgram.payload)) == dgram, "no round trip")
    else:
        request = decode_udp_request(body)
        check(0 < request.port < 65536, "port out of range")
        # What the relay answers with goes back under the same address: it must encode.
        again = decode_udp_request(encode_udp_datagram(request.host, request.port, request.data))
        check((again.port, again.data) == (request.port, request.data), "no round trip")


if __name__ == "__main__":
    main(guarded(one_input, ALLOWED), SEEDS)
