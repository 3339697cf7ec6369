"""The client side of one circuit (sans-IO): nested layers, hop by hop.

Theory of operation. The client owns every layer. To add hop k it sends Noise
NK message 1 (to hop k's onion key, prologue "gnet/1" + hop k's id) carrying
RELAY_CONNECT, wrapped in the XOR layers of hops 1..k-1, so only hop k can
read it and no relay before it learns anything but its length (which every
hop sees the same: XOR preserves it). Hop k's reply (message 2) comes back
through the same layers. If the command was `peer`, hop k is now a bridge and
its keystream pair joins the stack; the reply carries the next node's signed
record, whose onion key the client needs for hop k+1. The last hop answers a
`tcp` (or later `dht`/`service`) command and stays in frame mode: its
transport keys become the circuit's `FrameSession`.

XOR layers commute, so applying the whole stack is one call over the buffer
(`xor_layers`), in any order: the proposal's PEER2 -> SSL -> PEER1 -> SSL.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..crypto import (
    AeadOpener,
    AeadSealer,
    HandshakeError,
    Keystream,
    initiator_finish,
    initiator_start,
    xor_layers,
)
from ..endpoint.session import RELAY_SLACK, WINDOW, FrameSession
from ..errors import ErrorKind, GnetError, LocalProtocolError
from ..wire.commands import (
    SERVICE_JOIN,
    Proto,
    RelayConnect,
    RelayConnectFail,
    RelayConnectOk,
    bridges,
    decode_reply,
    prologue_for,
)
from ..wire.framing import MessageSplitter, prefix

#: What the far end may send before a consumer is attached: one window, and its control frames.
MAX_EARLY = WINDOW + RELAY_SLACK


class CircuitState(enum.Enum):
    IDLE = "idle"  # no handshake in flight
    EXTENDING = "extending"
    OPEN = "open"  # last hop answered; frames from now on
    FAILED = "failed"


@dataclass(frozen=True)
class HopReply:
    reply: RelayConnectOk | RelayConnectFail


class ClientCircuitCore:
    def __init__(self) -> None:
        self.forward: list[Keystream] = []
        self.backward: list[Keystream] = []
        self.state = CircuitState.IDLE
        self.hops = 0
        self._splitter = MessageSplitter()
        self._pending: object | None = None
        self._pending_cmd: RelayConnect | None = None
        self.session: FrameSession | None = None
        self._early = bytearray()  # OPEN (or joined), no consumer yet: unwrapped bytes kept for it
        self.joined = False  # a service's join circuit: the client's bytes follow the bridge reply
        self.early_end = False

    def receive(self, data: bytes | bytearray, end: bool) -> tuple[HopReply | None, GnetError | None]:
        """Stream bytes before a consumer is attached: a hop's reply while
        EXTENDING, or early data (the target spoke first) once OPEN. Returns
        the reply (if whole) and the error that ends the circuit (if any): a
        refusal followed by FIN yields both. Raises GnetError on bad bytes."""
        if self.state is CircuitState.OPEN or self.joined:
            self._early += self.unwrap(data)
            self.early_end = self.early_end or end
            if len(self._early) > MAX_EARLY:
                raise GnetError(ErrorKind.RESOURCE_LIMIT, "too much data before the stream was attached")
            return None, None
        reply = self.receive_reply(data)
        if end:
            return reply, GnetError(ErrorKind.PROTOCOL, "hop closed the stream during set-up")
        return reply, None

    def take_early(self) -> tuple[bytes, bool]:
        """What arrived after the last hop's reply, for the consumer being attached."""
        early = self.take_pending() + bytes(self._early)
        self._early.clear()
        return early, self.early_end

    def start_hop(self, node_id: bytes, onion_key: bytes, command: RelayConnect, ephemeral: bytes | None = None) -> bytes:
        """Wire bytes for the first hop stream that open the handshake with the next hop."""
        if self.state is not CircuitState.IDLE:
            raise LocalProtocolError(f"cannot extend a circuit in state {self.state.value}")
        self._pending, message = initiator_start(onion_key, prologue_for(node_id), command.encode(), ephemeral)
        self._pending_cmd = command
        self.state = CircuitState.EXTENDING
        return self.wrap(prefix(message))

    def wrap(self, data: bytes) -> bytes:
        """Apply every forward layer (hop 1 removes the outermost)."""
        if not self.forward:
            return data
        buf = bytearray(data)
        xor_layers(self.forward, buf)
        return bytes(buf)

    def unwrap(self, data: bytes | bytearray) -> bytearray:
        buf = bytearray(data)
        if self.backward:
            xor_layers(self.backward, buf)
        return buf

    def receive_reply(self, data: bytes | bytearray) -> HopReply | None:
        """Feed stream bytes while EXTENDING; returns the hop's reply once whole."""
        if self.state is not CircuitState.EXTENDING:
            raise GnetError(ErrorKind.PROTOCOL, "data from the circuit while no hop was asked")
        self._splitter.push(self.unwrap(data))
        message = self._splitter.pop()
        if message is None:
            return None
        try:
            payload, keys = initiator_finish(self._pending, message)  # type: ignore[arg-type]
            reply = decode_reply(payload)
        except HandshakeError as exc:
            self.state = CircuitState.FAILED
            raise GnetError(ErrorKind.HANDSHAKE_FAILED, str(exc)) from None
        except GnetError:
            self.state = CircuitState.FAILED
            raise
        self._pending = None
        command, self._pending_cmd = self._pending_cmd, None
        assert command is not None
        if isinstance(reply, RelayConnectFail):
            self.state = CircuitState.FAILED
            return HopReply(reply)
        self.hops += 1
        if bridges(command):
            joined = command.proto is Proto.SERVICE and command.host.split(":")[0] == SERVICE_JOIN
            if self._splitter.pending and not joined:
                raise GnetError(ErrorKind.PROTOCOL, "bytes after a bridge's reply")
            forward, backward = keys.bridge_keys(initiator=True)
            self.forward.append(Keystream(forward))
            self.backward.append(Keystream(backward))
            self.state = CircuitState.IDLE
            if joined:
                # a service's join: the client's handshake follows the access point's reply at
                # once, maybe in the same read; it passed the new bridge layer, so it gets
                # that layer off too and waits, with what follows, for the service's consumer
                self.joined = True
                rest = bytearray(self._splitter.take_rest())
                xor_layers(self.backward[-1:], rest)
                self._early += rest
        else:
            self.session = FrameSession(AeadSealer(keys.send_key), AeadOpener(keys.recv_key))
            self.state = CircuitState.OPEN
        return HopReply(reply)

    def take_pending(self) -> bytes:
        """Bytes (already unwrapped) that followed the last hop's reply."""
        return self._splitter.take_rest()
