"""Hop commands (wire/commands.py): RELAY_CONNECT and its replies, as a hop or client reads them."""

from __future__ import annotations

from fuzz.harness import check, guarded, instrumented, main

with instrumented():
    from globalnet.errors import ErrorKind, GnetError
    from globalnet.wire.commands import (
        Proto,
        RelayConnect,
        RelayConnectFail,
        RelayConnectOk,
        decode_relay_connect,
        decode_reply,
    )

ALLOWED = (GnetError,)
SEEDS = [
    b"\x00" + RelayConnect(Proto.TCP, "example.org", 80, None).encode(),
    b"\x00" + RelayConnect(Proto.PEER, "127.0.0.1", 9000, bytes(range(20))).encode(),
    b"\x01" + RelayConnectOk(b"record").encode(),
    b"\x01" + RelayConnectFail(ErrorKind.EXIT_POLICY, "no").encode(),
]


def one_input(data: bytes) -> None:
    """First byte even: a hop reads RELAY_CONNECT; odd: a client reads the reply."""
    if not data:
        return
    body = data[1:]
    if data[0] % 2 == 0:
        cmd = decode_relay_connect(body)
        check(0 <= cmd.port < 65536 and len(cmd.host.encode()) <= 255, "RELAY_CONNECT out of bounds")
        check(decode_relay_connect(cmd.encode()) == cmd, "RELAY_CONNECT does not survive encode/decode")
    else:
        reply = decode_reply(body)
        if isinstance(reply, RelayConnectFail) and len(reply.reason.encode()) > 200:
            return  # a FAIL reason is re-truncated to 200 bytes on encode
        check(decode_reply(reply.encode()) == reply, "reply does not survive encode/decode")


if __name__ == "__main__":
    main(guarded(one_input, ALLOWED), SEEDS)
