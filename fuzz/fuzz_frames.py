"""Sealed frames (wire/framing.py) and one circuit end (endpoint/session.py), with real AEAD.

Runs on whichever crypto backend GNET_CRYPTO selects (`fuzz.run` runs it on both):
the opener is the C extension's or the pure-Python one.
"""

from __future__ import annotations

from fuzz.harness import check, guarded, instrumented, main

with instrumented():
    from globalnet.crypto import AeadOpener, AeadSealer
    from globalnet.endpoint.session import RELAY_SLACK, WINDOW, DataReceived, FrameSession
    from globalnet.errors import GnetError
    from globalnet.wire.framing import (
        MAX_DATA_BODY,
        FrameType,
        MessageSplitter,
        credit_body,
        decode_frame,
        encode_frame,
        error_body,
        parse_credit,
        parse_error,
        prefix,
    )

ALLOWED = (GnetError,)
KEY_A, KEY_B = bytes(range(32)), bytes(range(32, 64))
SEEDS = [
    b"\x00" + encode_frame(FrameType.DATA, b"hello"),
    b"\x01" + encode_frame(FrameType.CREDIT, credit_body(100)),
    b"\x02" + error_body(3, "why"),
    b"\x03\x02" + encode_frame(FrameType.DATA, b"x" * 30) + b"\x00\x00" + encode_frame(FrameType.END),
    b"\x04" + prefix(b"abc") + prefix(b""),
]


def _session_input(data: bytes) -> None:
    """Frames the peer sealed with the right key (pieces cut by 0x00 0x00) or raw junk."""
    if not data:
        return
    peer = AeadSealer(KEY_B)
    session = FrameSession(AeadSealer(KEY_A), AeadOpener(KEY_B))
    sealed = data[0] % 2 == 0
    pieces = data[1:].split(b"\x00\x00") if sealed else [data[1:]]
    for piece in pieces:
        wire = prefix(peer.seal(piece)) if sealed else piece
        for event in session.receive(wire):
            if isinstance(event, DataReceived):
                check(len(event.data) <= MAX_DATA_BODY, "DATA beyond the largest body")
                session.consumed(event.wire_size)
        check(session.send_credit <= WINDOW, "credit beyond the window")
        check(session._splitter.pending <= WINDOW + RELAY_SLACK, "session buffered beyond its bound")


def one_input(data: bytes) -> None:
    """First byte picks the decoder."""
    if not data:
        return
    mode, body = data[0] % 5, data[1:]
    if mode == 0:
        frame = decode_frame(body)
        check(len(frame.body) <= MAX_DATA_BODY, "frame body beyond the bound")
    elif mode == 1:
        check(parse_credit(body) < 2**32, "credit beyond u32")
    elif mode == 2:
        code, reason = parse_error(body)
        check(0 <= code < 256 and len(reason.encode()) <= 255, "error out of bounds")
    elif mode == 3:
        _session_input(body)
    else:
        splitter = MessageSplitter(max_pending=4096)
        splitter.push(body)
        while (message := splitter.pop()) is not None:
            check(len(message) < 65536, "message beyond u16")


if __name__ == "__main__":
    main(guarded(one_input, ALLOWED), SEEDS)
