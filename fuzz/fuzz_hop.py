"""A relay's hop stream (relay/hop.py): the Noise NK handshake, RELAY_CONNECT, then sealed frames.

Mode 0 feeds raw bytes (what a stranger can send). Mode 1 is a client that
knows the onion key: a real Noise message 1 whose payload is the fuzzed
RELAY_CONNECT, then, if the hop accepts, fuzzed frames sealed with the real
transport keys. Runs on the crypto backend GNET_CRYPTO selects.
"""

from __future__ import annotations

from fuzz.harness import check, guarded, instrumented, main

with instrumented():
    from nacl.bindings import crypto_scalarmult_base

    from globalnet.crypto import AeadSealer, initiator_finish, initiator_start
    from globalnet.errors import GnetError
    from globalnet.relay.hop import ConnectRequested, RelayHopCore
    from globalnet.wire.commands import Proto, RelayConnect, prologue_for
    from globalnet.wire.framing import FrameType, MessageSplitter, encode_frame, prefix

ALLOWED = (GnetError,)
ONION = bytes(range(32))
ONION_PUBLIC = crypto_scalarmult_base(ONION)
NODE_ID = bytes(20)
_CONNECT = RelayConnect(Proto.TCP, "example.org", 80, None).encode()
SEEDS = [
    b"\x00" + prefix(bytes(48)),
    b"\x01" + _CONNECT,
    b"\x01" + _CONNECT + b"\xff\xff" + encode_frame(FrameType.DATA, b"hi") + b"\xff\xff" + encode_frame(FrameType.END),
]


def one_input(data: bytes) -> None:
    """First byte: mode (0 raw, 1 a real handshake); frames after RELAY_CONNECT are cut at 0xFF 0xFF."""
    if not data:
        return
    hop = RelayHopCore([bytes(32), ONION], NODE_ID)
    if data[0] % 2 == 0:
        hop.receive(data[1:])
        check(hop._splitter.pending <= hop._splitter.max_pending, "hop buffered beyond its bound")
        return
    connect, *frames = data[1:].split(b"\xff\xff")
    state, message1 = initiator_start(ONION_PUBLIC, prologue_for(NODE_ID), connect)
    event = hop.receive(prefix(message1))
    check(isinstance(event, ConnectRequested), "a good handshake was not answered")
    reply, session = hop.accept_endpoint()
    splitter = MessageSplitter()
    splitter.push(reply)
    message2 = splitter.pop()
    check(message2 is not None, "no handshake reply")
    _, keys = initiator_finish(state, message2)  # type: ignore[arg-type]
    client = AeadSealer(keys.send_key)
    for frame in frames:
        session.receive(prefix(client.seal(frame)))


if __name__ == "__main__":
    main(guarded(one_input, ALLOWED), SEEDS)
