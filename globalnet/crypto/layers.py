"""Layer ciphers, pure-Python reference (on the ``cryptography`` package, imported on first use).

Theory of operation
-------------------
A circuit's bytes pass through one layer per hop (DESIGN.md, Circuits):

* a bridge hop's layer is a :class:`Keystream`: ChaCha20 (RFC 8439, 12-byte
  nonce, block counter from 0) XORed over the byte stream, one instance per
  direction. It is length-preserving, so no hop learns its position from
  sizes, and a relay's hot path is one XOR per chunk. Chunk boundaries do not
  matter: XORing 10 + 90 bytes gives the same bytes as XORing 100 at once.
* the last hop's layer (and every hop's command mode) is an AEAD: a Noise
  transport CipherState, i.e. ChaCha20-Poly1305 with nonce = 4 zero bytes +
  8-byte little-endian counter and empty associated data.
  :class:`AeadSealer` / :class:`AeadOpener` are its two halves. A message
  that fails to open means a relay tampered with (or dropped or reordered)
  the stream; the opener then stays failed, so the circuit is torn down
  rather than resynchronised.

The C extension ``globalnet._gnetcrypto`` provides the same names with the
same semantics (same vectors, same errors); ``backend.py`` picks one. The C
extension takes DecryptError from here, so this module is always imported;
``cryptography`` is imported only when a Python cipher is made: a node on the
C backend never loads it (~10 MiB of memory a process).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import CipherContext
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

__all__ = [
    "AEAD_TAG_LEN",
    "MAX_AEAD_MESSAGE_LEN",
    "MAX_KEYSTREAM_BYTES",
    "AeadOpener",
    "AeadSealer",
    "DecryptError",
    "Keystream",
    "xor_layers",
]

#: RFC 8439's block counter is 32 bits: 2**32 blocks of 64 bytes per key/nonce.
#: OpenSSL would carry into the nonce past this, so we stop instead.
MAX_KEYSTREAM_BYTES = 64 * 2**32
#: Noise transport messages are at most 65535 bytes (spec section 3).
MAX_AEAD_MESSAGE_LEN = 65535
AEAD_TAG_LEN = 16
#: Noise reserves nonce 2**64 - 1 (spec section 5.1), so counters stop below it.
_MAX_NONCE = 2**64 - 1

KEY_LEN = 32
NONCE_LEN = 12


class DecryptError(ValueError):
    """An AEAD message did not authenticate, or the opener had failed before."""


def _check_key(key: bytes) -> bytes:
    key = bytes(memoryview(key))
    if len(key) != KEY_LEN:
        raise ValueError(f"key must be {KEY_LEN} bytes, got {len(key)}")
    return key


def _writable_bytes(buf: bytearray | memoryview) -> memoryview:
    """A flat, writable byte view of ``buf``, or TypeError."""
    view = memoryview(buf)
    if view.readonly:
        raise TypeError("xor_into needs a writable buffer (bytearray or writable memoryview)")
    if not view.c_contiguous:
        raise TypeError("xor_into needs a contiguous buffer")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


class Keystream:
    """One direction of one bridge layer: ChaCha20 (RFC 8439, 12-byte nonce,
    block counter from 0) XORed over a byte stream; length-preserving.

    XOR is its own inverse, so the same object type adds a layer on one end
    and removes it on the other; the two ends only have to see the same
    bytes in the same order.
    """

    __slots__ = ("_encryptor", "_position")

    def __init__(self, key: bytes, nonce: bytes = bytes(NONCE_LEN)) -> None:
        key = _check_key(key)
        nonce = bytes(memoryview(nonce))
        if len(nonce) != NONCE_LEN:
            raise ValueError(f"nonce must be {NONCE_LEN} bytes, got {len(nonce)}")
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

        # cryptography's ChaCha20 takes 16 bytes: 4-byte LE block counter + nonce.
        # The encryptor is stateful, so the keystream continues across calls.
        cipher = Cipher(algorithms.ChaCha20(key, bytes(4) + nonce), mode=None)
        self._encryptor: CipherContext = cipher.encryptor()
        self._position = 0

    @property
    def position(self) -> int:
        """Bytes of keystream consumed so far."""
        return self._position

    def _check_room(self, n: int) -> None:
        if self._position + n > MAX_KEYSTREAM_BYTES:
            raise ValueError("keystream exhausted: the 32-bit ChaCha20 block counter would wrap")

    def xor_into(self, buf: bytearray | memoryview) -> None:
        """XOR the next ``len(buf)`` keystream bytes into ``buf`` in place.

        Raises ValueError (and changes nothing) if the stream would pass
        MAX_KEYSTREAM_BYTES, TypeError for a read-only buffer.
        """
        view = _writable_bytes(buf)
        n = view.nbytes
        if n == 0:
            return
        self._check_room(n)
        # In place: OpenSSL's stream ciphers allow input == output.
        self._encryptor.update_into(view, view)
        self._position += n

    def xor(self, data: bytes | bytearray | memoryview) -> bytes:
        """Convenience: a copy of ``data`` with the next keystream bytes XORed in."""
        buf = bytearray(data)
        self.xor_into(buf)
        return bytes(buf)


def xor_layers(layers: Sequence[Keystream], buf: bytearray | memoryview) -> None:
    """Apply each layer to ``buf`` in order, in place.

    All checks happen before any layer moves, so an error leaves every
    layer (and ``buf``) as it was.
    """
    view = _writable_bytes(buf)
    for layer in layers:
        layer._check_room(view.nbytes)
    for layer in layers:
        layer.xor_into(view)


def _nonce(n: int) -> bytes:
    return b"\x00\x00\x00\x00" + n.to_bytes(8, "little")


def _aead(key: bytes) -> ChaCha20Poly1305:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    return ChaCha20Poly1305(_check_key(key))


class AeadSealer:
    """The sending half of a Noise transport CipherState.

    ChaCha20-Poly1305 (RFC 8439) with nonce = 4 zero bytes + 8-byte LE
    counter from 0 and empty associated data, so it interoperates with any
    Noise library's ``encrypt()`` after Split.
    """

    __slots__ = ("_aead", "_nonce")

    def __init__(self, key: bytes) -> None:
        self._aead = _aead(key)
        self._nonce = 0

    def seal(self, plaintext: bytes) -> bytes:
        """Encrypt one message; ValueError if it would exceed a Noise message."""
        if len(plaintext) > MAX_AEAD_MESSAGE_LEN - AEAD_TAG_LEN:
            raise ValueError(f"plaintext longer than {MAX_AEAD_MESSAGE_LEN - AEAD_TAG_LEN} bytes")
        if self._nonce >= _MAX_NONCE:
            raise ValueError("AEAD nonce space exhausted")
        ciphertext = self._aead.encrypt(_nonce(self._nonce), plaintext, None)
        self._nonce += 1
        return ciphertext

    def seal_many(self, plaintexts: Sequence[bytes]) -> list[bytes]:
        """Seal several messages in order; the same as calling seal() on each."""
        return [self.seal(p) for p in plaintexts]


class AeadOpener:
    """The receiving half of a Noise transport CipherState.

    Any failure (short, too long, bad tag) raises DecryptError and leaves the
    opener permanently failed: a tampered circuit is torn down, never resynced.
    """

    __slots__ = ("_aead", "_failed", "_nonce")

    def __init__(self, key: bytes) -> None:
        self._aead = _aead(key)
        self._nonce = 0
        self._failed = False

    def _fail(self, why: str) -> DecryptError:
        self._failed = True
        return DecryptError(why)

    def open(self, ciphertext: bytes) -> bytes:
        """Decrypt and authenticate the next message."""
        if self._failed:
            raise DecryptError("opener failed earlier; the circuit must be torn down")
        if not AEAD_TAG_LEN <= len(ciphertext) <= MAX_AEAD_MESSAGE_LEN:
            raise self._fail(f"AEAD message of {len(ciphertext)} bytes")
        if self._nonce >= _MAX_NONCE:
            raise self._fail("AEAD nonce space exhausted")
        try:
            plaintext = self._aead.decrypt(_nonce(self._nonce), ciphertext, None)
        except Exception as exc:
            from cryptography.exceptions import InvalidTag  # here, not per message: the hot path

            if isinstance(exc, InvalidTag):
                raise self._fail("AEAD message failed authentication") from None
            raise
        self._nonce += 1
        return plaintext

    def open_many(self, ciphertexts: Sequence[bytes]) -> list[bytes]:
        """Open several messages in order; stops at (and raises on) the first failure."""
        return [self.open(c) for c in ciphertexts]
