"""The local proxy port (wire/socks.py): SOCKS5 with RFC 1929 auth, SOCKS4 and HTTP, fed in pieces.

`fuzz_http_connect` runs the same parser from HTTP seeds.
"""

from __future__ import annotations

from fuzz.harness import check, guarded, instrumented, main

with instrumented():
    from globalnet.errors import GnetError
    from globalnet.wire.socks import SocksParser
    from globalnet.wire.socks_messages import MAX_BUFFER, MAX_NAME, Connect, Credentials, Reject

ALLOWED = (GnetError,)
_CREDS = Credentials(b"user", b"pass")
SEEDS = [
    b"\x00\x05\x01\x00\x05\x01\x00\x03\x0bexample.org\x00\x50early",
    b"\x01\x05\x01\x02\x01\x04user\x04pass\x05\x01\x00\x01\x7f\x00\x00\x01\x1f\x90",
    b"\x02\x05\x01\x00\x05\x01\x00\x04" + bytes(15) + b"\x01\x00\x16",
    b"\x03\x04\x01\x00\x50\x7f\x00\x00\x01user\x00",
]


def feed_all(data: bytes) -> None:
    """First byte: bit 0 auth required, bits 1-7 the piece size; then the client's bytes."""
    if not data:
        return
    parser = SocksParser(_CREDS if data[0] & 1 else None)
    step = (data[0] >> 1) + 1
    for i in range(1, len(data), step):
        for event in parser.feed(data[i : i + step]):
            if isinstance(event, Connect):
                check(len(event.target.host) <= MAX_NAME + 2 and 0 < event.target.port < 65536, "target out of bounds")
                check(len(event.early) <= MAX_BUFFER, "early data beyond the buffer")
                check(not data[0] & 1 or event.credentials == _CREDS, "connected without the right credentials")
                parser.reply_success()
            elif isinstance(event, Reject):
                check(len(event.data) < 4096, "a reject reply is too long")
        if parser.finished:
            return


if __name__ == "__main__":
    main(guarded(feed_all, ALLOWED), SEEDS)
