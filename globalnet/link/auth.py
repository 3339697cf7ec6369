"""The link's control stream as a state machine (sans-IO).

Theory of operation. QUIC gives us an encrypted connection and, through the
listener's certificate, the listener's identity key. It does not tell the
listener who dialled. So, on the control stream:

    listener -> CHALLENGE(nonce, listener record)
    dialler  -> AUTH(dialler record, sig over AUTH_CONTEXT|listener id|nonce)
    listener -> AUTH_OK

The dialler checks that the listener's record is signed by the key of the TLS
certificate; the listener checks the dialler's record and signature. Only then
is the link `ready`, and only then may hop streams flow. After that the stream
carries PING/PONG (RTT), PEERS (peer exchange: a bounded random sample of
signed records, each verified by the receiver) and CLOSE (a reason before the
link goes).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ErrorKind, GnetError, ProtocolError
from ..identity import Identity, verify_node_record, verify_signature
from ..wire.control import (
    CHALLENGE_SIZE,
    Auth,
    AuthOk,
    Challenge,
    Close,
    ControlDecoder,
    Peers,
    Ping,
    Pong,
    auth_transcript,
    encode_control,
)
from ..wire.records import NodeRecord, node_id_of
from .certs import identity_key_from_spki


class AuthState(enum.Enum):
    WAIT_CHALLENGE = "wait-challenge"  # dialler
    WAIT_AUTH = "wait-auth"  # listener
    WAIT_AUTH_OK = "wait-auth-ok"  # dialler
    READY = "ready"


@dataclass(frozen=True)
class LinkReady:
    peer: NodeRecord


@dataclass(frozen=True)
class PongReceived:
    nonce: int


@dataclass(frozen=True)
class PeersReceived:
    records: tuple[bytes, ...]  # unverified: the receiver checks each


@dataclass(frozen=True)
class PeerClosed:
    kind: ErrorKind
    reason: str


ControlEvent = LinkReady | PongReceived | PeerClosed | PeersReceived


class ControlChannel:
    """Both roles of the control stream; feed bytes, get (bytes to send, events)."""

    def __init__(self, identity: Identity, own_record: NodeRecord, dialler: bool, expected_peer_key: bytes | None = None) -> None:
        self._identity = identity
        self._own_record = own_record
        self._decoder = ControlDecoder()
        self._dialler = dialler
        self._expected_peer_key = expected_peer_key
        self._nonce = b""
        self.state = AuthState.WAIT_CHALLENGE if dialler else AuthState.WAIT_AUTH
        self.peer: NodeRecord | None = None

    def start(self) -> bytes:
        """Listener only: the CHALLENGE to open the control stream with."""
        assert not self._dialler
        self._nonce = os.urandom(CHALLENGE_SIZE)
        return encode_control(Challenge(self._nonce, self._own_record.encode()))

    def ping(self, nonce: int) -> bytes:
        return encode_control(Ping(nonce))

    def peers(self, records: list[bytes]) -> bytes:
        return encode_control(Peers(tuple(records)))

    def close(self, kind: ErrorKind, reason: str) -> bytes:
        return encode_control(Close(int(kind), reason))

    def receive(self, data: bytes) -> tuple[bytes, list[ControlEvent]]:
        """Feed control-stream bytes; returns (bytes to send, events). Any message
        not in the table for the current state takes the one error path."""
        out: list[bytes] = []
        events: list[ControlEvent] = []
        for msg in self._decoder.feed(data):
            handler = _HANDLERS.get((self.state, type(msg))) or _HANDLERS.get((None, type(msg)))
            if handler is None:
                raise ProtocolError(f"{type(msg).__name__} is not expected in state {self.state.value}")
            handler(self, msg, out, events)
        return b"".join(out), events

    def _on_close(self, msg: Close, out: list[bytes], events: list[ControlEvent]) -> None:
        events.append(PeerClosed(ErrorKind.from_wire(msg.code), msg.reason))

    def _on_challenge(self, msg: Challenge, out: list[bytes], events: list[ControlEvent]) -> None:
        record = verify_node_record(msg.record)
        if self._expected_peer_key is not None and record.identity_key != self._expected_peer_key:
            raise GnetError(ErrorKind.HANDSHAKE_FAILED, "listener record does not match its certificate")
        self.peer = record
        signature = self._identity.sign(auth_transcript(record.node_id, msg.nonce))
        out.append(encode_control(Auth(self._own_record.encode(), signature)))
        self.state = AuthState.WAIT_AUTH_OK

    def _on_auth(self, msg: Auth, out: list[bytes], events: list[ControlEvent]) -> None:
        record = verify_node_record(msg.record)
        transcript = auth_transcript(self._identity.node_id, self._nonce)
        if not verify_signature(record.identity_key, transcript, msg.signature):
            raise GnetError(ErrorKind.HANDSHAKE_FAILED, "dialler's link signature is invalid")
        if record.identity_key == self._identity.public_key:
            raise GnetError(ErrorKind.HANDSHAKE_FAILED, "a node dialled itself")
        self.peer = record
        out.append(encode_control(AuthOk()))
        self.state = AuthState.READY
        events.append(LinkReady(record))

    def _on_auth_ok(self, msg: AuthOk, out: list[bytes], events: list[ControlEvent]) -> None:
        assert self.peer is not None
        self.state = AuthState.READY
        events.append(LinkReady(self.peer))

    def _on_ping(self, msg: Ping, out: list[bytes], events: list[ControlEvent]) -> None:
        out.append(encode_control(Pong(msg.nonce)))

    def _on_pong(self, msg: Pong, out: list[bytes], events: list[ControlEvent]) -> None:
        events.append(PongReceived(msg.nonce))

    def _on_peers(self, msg: Peers, out: list[bytes], events: list[ControlEvent]) -> None:
        events.append(PeersReceived(msg.records))


_Handler = Callable[[ControlChannel, Any, list[bytes], list[ControlEvent]], None]
#: (state, message type) -> handler; state None: accepted in every state.
_HANDLERS: dict[tuple[AuthState | None, type], _Handler] = {
    (None, Close): ControlChannel._on_close,
    (AuthState.WAIT_CHALLENGE, Challenge): ControlChannel._on_challenge,
    (AuthState.WAIT_AUTH, Auth): ControlChannel._on_auth,
    (AuthState.WAIT_AUTH_OK, AuthOk): ControlChannel._on_auth_ok,
    (AuthState.READY, Ping): ControlChannel._on_ping,
    (AuthState.READY, Pong): ControlChannel._on_pong,
    (AuthState.READY, Peers): ControlChannel._on_peers,
}


def listener_key(spki: bytes | None, expected_id: bytes | None, where: str) -> bytes:
    """The listener's identity key, from the certificate QUIC's handshake gave the dialler,
    checked against the node id the dialler pinned (if any)."""
    if spki is None:
        raise GnetError(ErrorKind.HANDSHAKE_FAILED, "listener sent no certificate")
    key = identity_key_from_spki(spki)
    peer_id = node_id_of(key)
    if expected_id is not None and peer_id != expected_id:
        raise GnetError(ErrorKind.PIN_MISMATCH, f"{where} is node {peer_id.hex()}, not the pinned {expected_id.hex()}")
    return key
