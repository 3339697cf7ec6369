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
from dataclasses import dataclass

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
from ..wire.records import NodeRecord


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
        out: list[bytes] = []
        events: list[ControlEvent] = []
        for msg in self._decoder.feed(data):
            if isinstance(msg, Close):
                events.append(PeerClosed(ErrorKind.from_wire(msg.code), msg.reason))
            elif self.state is AuthState.WAIT_CHALLENGE and isinstance(msg, Challenge):
                record = verify_node_record(msg.record)
                if self._expected_peer_key is not None and record.identity_key != self._expected_peer_key:
                    raise GnetError(ErrorKind.HANDSHAKE_FAILED, "listener record does not match its certificate")
                self.peer = record
                signature = self._identity.sign(auth_transcript(record.node_id, msg.nonce))
                out.append(encode_control(Auth(self._own_record.encode(), signature)))
                self.state = AuthState.WAIT_AUTH_OK
            elif self.state is AuthState.WAIT_AUTH and isinstance(msg, Auth):
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
            elif self.state is AuthState.WAIT_AUTH_OK and isinstance(msg, AuthOk):
                assert self.peer is not None
                self.state = AuthState.READY
                events.append(LinkReady(self.peer))
            elif self.state is AuthState.READY and isinstance(msg, Ping):
                out.append(encode_control(Pong(msg.nonce)))
            elif self.state is AuthState.READY and isinstance(msg, Pong):
                events.append(PongReceived(msg.nonce))
            elif self.state is AuthState.READY and isinstance(msg, Peers):
                events.append(PeersReceived(msg.records))
            else:
                raise ProtocolError(f"{type(msg).__name__} is not expected in state {self.state.value}")
        return b"".join(out), events
