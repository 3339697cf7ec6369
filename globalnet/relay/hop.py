"""The relay side of one hop (sans-IO): answer the handshake, then bridge or end.

Theory of operation. A fresh hop stream starts in HANDSHAKE: the first
length-prefixed message is the client's Noise NK message 1 (to our onion key),
whose payload is RELAY_CONNECT. `receive()` returns `ConnectRequested`; the
asyncio shell does the work (dials the next node, or the TCP target) and then
calls `accept_bridge()`, `accept_endpoint()` or `refuse()`, each of which gives
the Noise message 2 to send back (carrying RELAY_CONNECT_OK or _FAIL).
- Bridge (proto `peer`): from then on the hop parses nothing; a `BridgeCore`
  (relay/bridge.py) XORs its keystream over the bytes in each direction.
- Endpoint (`tcp`, later `dht`/`service`): the hop keeps the handshake's
  transport keys and speaks sealed frames (`endpoint.session.FrameSession`).
The client sends nothing after message 1 until it has our reply, so anything
buffered before then is bounded and passed on with `take_pending()`.

The core owns the set-up deadline: a hop that has not delivered its whole
first message by `get_timer()` is closed (`handle_timer(now)` raises
GnetError(TIMEOUT)); the shell only arms a loop timer at that time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..crypto import AeadOpener, AeadSealer, HandshakeError, Keystream, responder_read, responder_write
from ..endpoint.session import FrameSession
from ..errors import ErrorKind, GnetError, LocalProtocolError, ProtocolError
from ..wire.commands import RelayConnect, RelayConnectFail, RelayConnectOk, decode_relay_connect, prologue_for
from ..wire.framing import MessageSplitter, prefix
from .bridge import BridgeCore

#: What a hop buffers while its handshake is pending.
MAX_PENDING = 2 * 65537


class HopState(enum.Enum):
    HANDSHAKE = "handshake"
    DECIDING = "deciding"
    BRIDGE = "bridge"
    ENDPOINT = "endpoint"
    CLOSED = "closed"


@dataclass(frozen=True)
class ConnectRequested:
    command: RelayConnect


class RelayHopCore:
    def __init__(self, onion_keys: list[bytes], node_id: bytes, now: float = 0.0, setup_timeout: float | None = None) -> None:
        self._onion_keys = onion_keys
        self._deadline = None if setup_timeout is None else now + setup_timeout
        self._prologue = prologue_for(node_id)
        self._splitter = MessageSplitter(max_pending=MAX_PENDING)
        self._noise: object | None = None
        self.state = HopState.HANDSHAKE
        self.command: RelayConnect | None = None

    # -- timer -------------------------------------------------------------
    def get_timer(self) -> float | None:
        """When the set-up deadline falls (None once the first message is in)."""
        return self._deadline if self.state is HopState.HANDSHAKE else None

    def handle_timer(self, now: float) -> None:
        """Raises GnetError(TIMEOUT) if the first message is still incomplete at `now`."""
        if self._deadline is not None and self.state is HopState.HANDSHAKE and now >= self._deadline:
            self.state = HopState.CLOSED
            raise GnetError(ErrorKind.TIMEOUT, "no complete handshake in time")

    # -- bytes ---------------------------------------------------------------
    def receive(self, data: bytes) -> ConnectRequested | None:
        """Feed bytes while HANDSHAKE or DECIDING. Raises GnetError if bad."""
        if self.state not in (HopState.HANDSHAKE, HopState.DECIDING):
            raise LocalProtocolError(f"receive() in state {self.state.value}")
        self._splitter.push(data)
        if self.state is HopState.DECIDING:
            return None
        message = self._splitter.pop()
        if message is None:
            return None
        payload = None
        for key in self._onion_keys:
            try:
                self._noise, payload = responder_read(key, self._prologue, message)
                break
            except HandshakeError:
                continue
        if payload is None:
            raise GnetError(ErrorKind.HANDSHAKE_FAILED, "handshake message did not open with our onion key")
        try:
            self.command = decode_relay_connect(payload)
        except ProtocolError:
            self.state = HopState.CLOSED
            raise
        self.state = HopState.DECIDING
        return ConnectRequested(self.command)

    def _reply(self, payload: bytes) -> tuple[bytes, object]:
        if self.state is not HopState.DECIDING or self._noise is None:
            raise LocalProtocolError("no handshake to answer")
        message, keys = responder_write(self._noise, payload)  # type: ignore[arg-type]
        self._noise = None
        return prefix(message), keys

    def accept_bridge(self, next_record: bytes, max_queued: int) -> tuple[bytes, BridgeCore]:
        """RELAY_CONNECT_OK as a bridge. An empty `next_record` is a rendezvous half:
        its bridge carries nothing until spliced."""
        wire, keys = self._reply(RelayConnectOk(next_record).encode())
        forward, backward = keys.bridge_keys(initiator=False)  # type: ignore[attr-defined]
        self.state = HopState.BRIDGE
        return wire, BridgeCore(Keystream(forward), Keystream(backward), max_queued, connected=bool(next_record))

    def accept_endpoint(self) -> tuple[bytes, FrameSession]:
        wire, keys = self._reply(RelayConnectOk().encode())
        self.state = HopState.ENDPOINT
        session = FrameSession(AeadSealer(keys.send_key), AeadOpener(keys.recv_key))  # type: ignore[attr-defined]
        return wire, session

    def refuse(self, kind: ErrorKind, reason: str) -> bytes:
        wire, _ = self._reply(RelayConnectFail(kind, reason).encode())
        self.state = HopState.CLOSED
        return wire

    def take_pending(self) -> bytes:
        """Bytes that arrived after message 1 (normally none)."""
        return self._splitter.take_rest()
