"""Link control messages (wire/control.py): a peer's control stream, fed in pieces."""

from __future__ import annotations

from fuzz.harness import check, guarded, instrumented, main

with instrumented():
    from globalnet.errors import GnetError
    from globalnet.wire.control import (
        MAX_CONTROL_BODY,
        MAX_PEERS_PER_MESSAGE,
        Auth,
        AuthOk,
        Challenge,
        Close,
        ControlDecoder,
        Peers,
        Ping,
        Pong,
        encode_control,
    )

ALLOWED = (GnetError,)
SEEDS = [
    b"\x01"
    + b"".join(
        encode_control(m)
        for m in (
            Challenge(bytes(32), b"r" * 40),
            Auth(b"r" * 40, bytes(64)),
            AuthOk(),
            Ping(7),
            Pong(7),
            Close(3, "bye"),
            Peers((b"a" * 10, b"b" * 20)),
        )
    )
]


def one_input(data: bytes) -> None:
    """First byte: the chunk size the stream arrives in (1..256)."""
    if not data:
        return
    step = data[0] + 1
    decoder = ControlDecoder()
    for i in range(1, len(data), step):
        for msg in decoder.feed(data[i : i + step]):
            check(len(decoder._buf) <= 3 + MAX_CONTROL_BODY, "control buffer beyond one message")
            if isinstance(msg, Peers):
                check(len(msg.records) <= MAX_PEERS_PER_MESSAGE, "too many PEERS records")
            if not isinstance(msg, Close):  # a CLOSE reason is re-truncated on encode
                again = ControlDecoder().feed(encode_control(msg))
                check(again == [msg], f"{msg!r} does not survive encode/decode")


if __name__ == "__main__":
    main(guarded(one_input, ALLOWED), SEEDS)
