"""The per-hop circuit handshake: Noise_NK_25519_ChaChaPoly_BLAKE2b.

Theory of operation
-------------------
A client extends its circuit by one hop with the Noise NK pattern (Noise
spec rev 34, section 7.4)::

    NK:
      <- s
      ...
      -> e, es
      <- e, ee

The responder's static key ``s`` is the hop's onion key, which the client
already has from the hop's signed node record, so the hop is authenticated
and the client stays anonymous. The first message already carries a payload
(the client's RELAY_CONNECT, encrypted under the ``es`` key), so a hop costs
one round trip.

Every step is a pure function, as in Arti's handshakes: the ephemeral key is
a parameter (``None`` draws a fresh one), there is no clock and no I/O, and
the in-between states are frozen values. Tests therefore pin ephemeral keys
and compare exact bytes with the ``noiseprotocol`` package::

    state, msg1 = initiator_start(onion_pub, prologue, b"RELAY_CONNECT ...")
    rstate, req = responder_read(onion_priv, prologue, msg1)       # on the hop
    msg2, hop_keys = responder_write(rstate, b"RELAY_CONNECT_OK ...")
    reply, client_keys = initiator_finish(state, msg2)              # client

Errors: whatever comes from the other side (message bytes, and the
responder's static key, which comes from a peer's record) can only ever
raise :class:`HandshakeError`. Mistakes by the caller itself (a private key
or ephemeral of the wrong length, a payload too long for one Noise message)
raise ``ValueError``, so that a local bug is loud instead of looking like a
misbehaving peer.

Key schedule after the handshake: ``Split()`` gives the two CipherState
keys for command mode (:class:`TransportKeys` ``send_key``/``recv_key``).
The bridge-mode XOR keys need a secret of their own, and the handshake hash
is not one: ``h`` only ever absorbs public values (prologue, static public
key, ephemeral keys, ciphertexts), so the previous hop, which forwards both
handshake messages in the clear and knows this hop's node id and onion key,
can compute it. We therefore take a third HKDF output from the final
chaining key (``HKDF(ck, "", 3)``: outputs 1 and 2 are exactly Noise's
Split, output 3 is independent of them) as ``bridge_secret`` and derive
both bridge keys from that.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field

from nacl.bindings import (
    crypto_aead_chacha20poly1305_ietf_decrypt,
    crypto_aead_chacha20poly1305_ietf_encrypt,
    crypto_scalarmult,
    crypto_scalarmult_base,
)
from nacl.exceptions import CryptoError

__all__ = [
    "MAX_MESSAGE_LEN",
    "MAX_PAYLOAD_LEN",
    "MIN_MESSAGE_LEN",
    "PROTOCOL_NAME",
    "HandshakeError",
    "InitiatorState",
    "ResponderState",
    "TransportKeys",
    "initiator_finish",
    "initiator_start",
    "responder_read",
    "responder_write",
]

PROTOCOL_NAME = b"Noise_NK_25519_ChaChaPoly_BLAKE2b"
DHLEN = 32
HASHLEN = 64
KEYLEN = 32
TAGLEN = 16
#: Noise spec section 3: no Noise message is longer than this.
MAX_MESSAGE_LEN = 65535
#: Both NK messages are an ephemeral key plus an AEAD ciphertext (tag included).
MIN_MESSAGE_LEN = DHLEN + TAGLEN
MAX_PAYLOAD_LEN = MAX_MESSAGE_LEN - MIN_MESSAGE_LEN

_BRIDGE_FORWARD_LABEL = b"gnet/1 bridge forward"
_BRIDGE_BACKWARD_LABEL = b"gnet/1 bridge backward"


class HandshakeError(Exception):
    """The handshake failed: bad length, bad MAC, low-order point, wrong key.

    The only exception the handshake lets escape for bytes from the peer; the
    caller tears down the hop stream (RELAY_CONNECT_FAIL / circuit failure).
    """


@dataclass(frozen=True)
class TransportKeys:
    """What one side keeps from a finished handshake.

    ``send_key``/``recv_key`` are this side's CipherState keys from Split
    (initiator sends with k1, responder with k2), used by
    :class:`~globalnet.crypto.layers.AeadSealer` / ``AeadOpener`` in command
    and frame mode. ``bridge_secret`` is the third HKDF output of the final
    chaining key and only feeds :meth:`bridge_keys`. Secrets stay out of
    ``repr`` so they never reach a log line.
    """

    send_key: bytes = field(repr=False)
    recv_key: bytes = field(repr=False)
    handshake_hash: bytes
    bridge_secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.send_key) != KEYLEN or len(self.recv_key) != KEYLEN:
            raise ValueError("transport keys must be 32 bytes")
        if len(self.handshake_hash) != HASHLEN or len(self.bridge_secret) != HASHLEN:
            raise ValueError("handshake hash and bridge secret must be 64 bytes")

    def bridge_keys(self, initiator: bool) -> tuple[bytes, bytes]:
        """Return ``(forward_key, backward_key)`` for this hop's bridge layer.

        Forward is the initiator->responder direction, backward the reverse;
        both roles get the same pair, because both XOR the same keystream over
        the same direction of bytes. ``initiator`` is only there to make the
        call site say which side it is on; it does not change the result.
        """
        if not isinstance(initiator, bool):
            raise TypeError("initiator must be a bool")
        forward = hashlib.blake2b(
            _BRIDGE_FORWARD_LABEL, key=self.bridge_secret, digest_size=KEYLEN
        ).digest()
        backward = hashlib.blake2b(
            _BRIDGE_BACKWARD_LABEL, key=self.bridge_secret, digest_size=KEYLEN
        ).digest()
        return forward, backward


@dataclass(frozen=True)
class InitiatorState:
    """The client between sending message 1 and reading message 2."""

    chaining_key: bytes = field(repr=False)
    handshake_hash: bytes
    ephemeral_private: bytes = field(repr=False)


@dataclass(frozen=True)
class ResponderState:
    """The hop between reading message 1 and writing message 2."""

    chaining_key: bytes = field(repr=False)
    handshake_hash: bytes
    remote_ephemeral: bytes


# --- Noise primitives (spec sections 4 and 5) -------------------------------


def _hash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=HASHLEN).digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    # HMAC-BLAKE2b per RFC 2104 with BLOCKLEN 128; hmac picks the block size up
    # from hashlib.blake2b, the 64-byte default digest is HASHLEN.
    return hmac.new(key, data, hashlib.blake2b).digest()


def _hkdf(chaining_key: bytes, ikm: bytes, outputs: int) -> list[bytes]:
    """Noise's HKDF (section 4.3): 2 or 3 outputs of HASHLEN bytes."""
    temp_key = _hmac(chaining_key, ikm)
    out = [_hmac(temp_key, b"\x01")]
    for i in range(2, outputs + 1):
        out.append(_hmac(temp_key, out[-1] + bytes([i])))
    return out


def _nonce(n: int) -> bytes:
    # Section 12.3 (ChaChaPoly): 32 bits of zeros, then the 64-bit LE counter.
    return b"\x00\x00\x00\x00" + n.to_bytes(8, "little")


def _dh(private: bytes, public: bytes) -> bytes:
    """X25519, refusing low-order points (an all-zero shared secret).

    libsodium already refuses an all-zero result (PyNaCl then raises its own
    RuntimeError); the explicit compare keeps that guarantee even if a build
    of libsodium does not, and either way the caller only sees HandshakeError.
    """
    if len(public) != DHLEN:
        raise HandshakeError("public key must be 32 bytes")
    try:
        shared = crypto_scalarmult(private, public)
    except CryptoError as exc:
        raise HandshakeError("low-order or invalid public key") from exc
    if hmac.compare_digest(shared, bytes(DHLEN)):
        raise HandshakeError("low-order or invalid public key")
    return shared


class _SymmetricState:
    """Noise SymmetricState (section 5.2), with its CipherState inlined.

    Mutable and private: each public step builds one, runs its tokens and
    freezes what the next step needs into an InitiatorState/ResponderState.
    """

    def __init__(self, chaining_key: bytes, handshake_hash: bytes) -> None:
        self.ck = chaining_key
        self.h = handshake_hash
        self.k: bytes | None = None
        self.n = 0

    @classmethod
    def initialize(cls, prologue: bytes, responder_static: bytes) -> _SymmetricState:
        """InitializeSymmetric, MixHash(prologue), then NK's pre-message ``<- s``."""
        # The name (33 bytes) is shorter than HASHLEN, so h is the zero-padded name.
        h = PROTOCOL_NAME.ljust(HASHLEN, b"\x00")
        state = cls(h, h)
        state.mix_hash(prologue)
        state.mix_hash(responder_static)
        return state

    def mix_hash(self, data: bytes) -> None:
        self.h = _hash(self.h + data)

    def mix_key(self, ikm: bytes) -> None:
        self.ck, temp_k = _hkdf(self.ck, ikm, 2)
        self.k = temp_k[:KEYLEN]  # HASHLEN is 64: truncate
        self.n = 0

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        assert self.k is not None  # NK mixes a key before every payload
        # libsodium's IETF ChaCha20-Poly1305 is RFC 8439's, the Noise cipher (one library for all of Noise)
        ciphertext = crypto_aead_chacha20poly1305_ietf_encrypt(bytes(plaintext), self.h, _nonce(self.n), self.k)
        self.n += 1
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        assert self.k is not None
        if len(ciphertext) < TAGLEN:
            raise HandshakeError("handshake message shorter than its authentication tag")
        try:
            plaintext = crypto_aead_chacha20poly1305_ietf_decrypt(bytes(ciphertext), self.h, _nonce(self.n), self.k)
        except CryptoError as exc:
            raise HandshakeError("handshake message failed authentication") from exc
        self.n += 1
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[bytes, bytes, bytes]:
        """Split() plus a third output for the bridge secret (see module doc)."""
        k1, k2, bridge_secret = _hkdf(self.ck, b"", 3)
        return k1[:KEYLEN], k2[:KEYLEN], bridge_secret


# --- checks on arguments ----------------------------------------------------


def _local_key(key: bytes, what: str) -> bytes:
    """A private key we hold: a wrong size is our own bug, not the peer's."""
    key = bytes(memoryview(key))
    if len(key) != DHLEN:
        raise ValueError(f"{what} must be {DHLEN} bytes")
    return key


def _ephemeral(ephemeral: bytes | None) -> bytes:
    """The given ephemeral private key (tests pin it) or a fresh random one."""
    return os.urandom(DHLEN) if ephemeral is None else _local_key(ephemeral, "ephemeral")


def _check_payload(payload: bytes) -> bytes:
    payload = bytes(memoryview(payload))
    if len(payload) > MAX_PAYLOAD_LEN:
        raise ValueError(f"handshake payload longer than {MAX_PAYLOAD_LEN} bytes")
    return payload


def _check_message(message: bytes) -> bytes:
    message = bytes(memoryview(message))
    if not MIN_MESSAGE_LEN <= len(message) <= MAX_MESSAGE_LEN:
        raise HandshakeError(f"handshake message of {len(message)} bytes")
    return message


# --- the four steps ---------------------------------------------------------


def initiator_start(
    responder_static: bytes,
    prologue: bytes,
    payload: bytes,
    ephemeral: bytes | None = None,
) -> tuple[InitiatorState, bytes]:
    """Client, message 1 (``-> e, es``): return our state and the message.

    ``responder_static`` is the hop's onion key from its record; a bad one
    (wrong length, low order) raises HandshakeError like any peer fault.
    """
    responder_static = bytes(memoryview(responder_static))
    if len(responder_static) != DHLEN:
        raise HandshakeError("responder static key must be 32 bytes")
    e_private = _ephemeral(ephemeral)
    payload = _check_payload(payload)

    sym = _SymmetricState.initialize(bytes(memoryview(prologue)), responder_static)
    e_public = crypto_scalarmult_base(e_private)
    sym.mix_hash(e_public)  # e
    sym.mix_key(_dh(e_private, responder_static))  # es
    message = e_public + sym.encrypt_and_hash(payload)
    return InitiatorState(sym.ck, sym.h, e_private), message


def responder_read(
    static_private: bytes, prologue: bytes, message1: bytes
) -> tuple[ResponderState, bytes]:
    """Hop, message 1: return our state and the client's decrypted payload.

    A wrong onion key (the client used another hop's key, or an old one past
    its grace period) shows up as a MAC failure here.
    """
    s_private = _local_key(static_private, "static private key")
    message1 = _check_message(message1)

    sym = _SymmetricState.initialize(bytes(memoryview(prologue)), crypto_scalarmult_base(s_private))
    re = message1[:DHLEN]
    sym.mix_hash(re)  # e
    sym.mix_key(_dh(s_private, re))  # es
    payload = sym.decrypt_and_hash(message1[DHLEN:])
    return ResponderState(sym.ck, sym.h, re), payload


def responder_write(
    state: ResponderState, payload: bytes, ephemeral: bytes | None = None
) -> tuple[bytes, TransportKeys]:
    """Hop, message 2 (``<- e, ee``): return the message and our keys."""
    e_private = _ephemeral(ephemeral)
    payload = _check_payload(payload)

    sym = _SymmetricState(state.chaining_key, state.handshake_hash)
    e_public = crypto_scalarmult_base(e_private)
    sym.mix_hash(e_public)  # e
    sym.mix_key(_dh(e_private, state.remote_ephemeral))  # ee
    message = e_public + sym.encrypt_and_hash(payload)
    k1, k2, bridge_secret = sym.split()
    return message, TransportKeys(k2, k1, sym.h, bridge_secret)


def initiator_finish(state: InitiatorState, message2: bytes) -> tuple[bytes, TransportKeys]:
    """Client, message 2: return the hop's decrypted payload and our keys."""
    message2 = _check_message(message2)

    sym = _SymmetricState(state.chaining_key, state.handshake_hash)
    re = message2[:DHLEN]
    sym.mix_hash(re)  # e
    sym.mix_key(_dh(state.ephemeral_private, re))  # ee
    payload = sym.decrypt_and_hash(message2[DHLEN:])
    k1, k2, bridge_secret = sym.split()
    return payload, TransportKeys(k1, k2, sym.h, bridge_secret)
