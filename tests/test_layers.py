"""Tests for the layer ciphers: Keystream, xor_layers, AeadSealer, AeadOpener.

Every test that exercises a cipher takes the ``backend_module`` fixture, so
the same vectors and properties run against the pure-Python reference and,
once it is built, the C extension ``globalnet._gnetcrypto``.

The RFC 8439 vectors are checked twice: against the backend, and against a
tiny pure-Python ChaCha20/Poly1305 written from the RFC (tests/vectors/rfc8439.py), so the AEAD
nonce layout (4 zero bytes + LE counter) and empty AD are checked by
something that shares no code with either backend.
"""

from __future__ import annotations

import importlib
import itertools
import random
import sys
from collections.abc import Callable
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from globalnet.crypto import backend, layers
from globalnet.crypto.layers import MAX_AEAD_MESSAGE_LEN, MAX_KEYSTREAM_BYTES
from tests.vectors.rfc8439 import (
    A1_BLOCKS,
    AEAD_282,
    ENCRYPTIONS,
    RFC_KEY,
    SUNSCREEN,
    noise_nonce,
    ref_aead_seal,
    ref_block,
    ref_poly1305,
    ref_xor,
)

FAST = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _cext() -> ModuleType | None:
    try:
        return importlib.import_module("globalnet._gnetcrypto")
    except ImportError:
        return None


@pytest.fixture(scope="module", params=["python", "cext"])
def backend_module(request: pytest.FixtureRequest) -> ModuleType:
    if request.param == "python":
        return layers
    module = _cext()
    if module is None:
        pytest.skip("globalnet._gnetcrypto is not built")
    return module


def test_reference_matches_rfc() -> None:
    """Check the from-the-RFC reference itself before trusting it below."""
    for key, nonce, counter, expected in A1_BLOCKS:
        assert ref_block(key, counter, nonce).hex() == expected
    for key, nonce, counter, plaintext, expected in ENCRYPTIONS:
        assert ref_xor(key, counter, nonce, plaintext).hex() == expected
    poly_key = bytes.fromhex("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b")
    assert ref_poly1305(poly_key, b"Cryptographic Forum Research Group").hex() == (
        "a8061dc1305136c6c22b8baf0c0127a9"
    )
    key, nonce, aad, plaintext, expected = AEAD_282
    assert ref_aead_seal(key, nonce, aad, plaintext).hex() == expected


# --- Keystream -----------------------------------------------------------------


def _skip(ks: layers.Keystream, n: int) -> None:
    ks.xor_into(bytearray(n))


@pytest.mark.parametrize(("key", "nonce", "counter", "expected"), A1_BLOCKS)
def test_keystream_rfc_blocks(
    backend_module: ModuleType, key: bytes, nonce: bytes, counter: int, expected: str
) -> None:
    """Our stream starts at block 0, so block c is at position 64 * c."""
    ks = backend_module.Keystream(key, nonce)
    _skip(ks, 64 * counter)
    assert ks.xor(bytes(64)).hex() == expected
    assert ks.position == 64 * (counter + 1)


@pytest.mark.parametrize(("key", "nonce", "counter", "plaintext", "expected"), ENCRYPTIONS)
def test_keystream_rfc_encryptions(
    backend_module: ModuleType,
    key: bytes,
    nonce: bytes,
    counter: int,
    plaintext: bytes,
    expected: str,
) -> None:
    ks = backend_module.Keystream(key, nonce)
    _skip(ks, 64 * counter)
    assert ks.xor(plaintext).hex() == expected
    back = backend_module.Keystream(key, nonce)
    _skip(back, 64 * counter)
    assert back.xor(bytes.fromhex(expected)) == plaintext


@FAST
@given(
    data=st.binary(max_size=3000),
    cuts=st.lists(st.integers(0, 3000), max_size=12),
    start=st.integers(0, 200),
)
def test_keystream_chunking_invariance(
    backend_module: ModuleType, data: bytes, cuts: list[int], start: int
) -> None:
    """Any split into chunks, from any starting offset, gives the same bytes."""
    whole = backend_module.Keystream(RFC_KEY)
    _skip(whole, start)
    expected = whole.xor(data)
    chunked = backend_module.Keystream(RFC_KEY)
    _skip(chunked, start)
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    buf = bytearray(data)
    view = memoryview(buf)
    for lo, hi in itertools.pairwise(bounds):
        chunked.xor_into(view[lo:hi])
    assert bytes(buf) == expected
    assert chunked.position == start + len(data)
    assert expected == ref_xor(RFC_KEY, 0, bytes(12), bytes(start) + data)[start:]


@FAST
@given(
    data=st.binary(max_size=2000),
    key=st.binary(min_size=32, max_size=32),
    nonce=st.binary(min_size=12, max_size=12),
)
def test_keystream_length_preserving_and_self_inverse(
    backend_module: ModuleType, data: bytes, key: bytes, nonce: bytes
) -> None:
    once = backend_module.Keystream(key, nonce).xor(data)
    assert len(once) == len(data)
    assert backend_module.Keystream(key, nonce).xor(once) == data


def test_keystream_large_buffer_in_place(backend_module: ModuleType) -> None:
    data = bytes(range(256)) * 4099  # ~1 MiB, not a multiple of 64
    buf = bytearray(data)
    backend_module.Keystream(RFC_KEY).xor_into(buf)
    assert bytes(buf) == layers.Keystream(RFC_KEY).xor(data)
    assert buf[:64] != data[:64]


def test_keystream_only_touches_the_view(backend_module: ModuleType) -> None:
    buf = bytearray(b"\xaa" * 100)
    backend_module.Keystream(RFC_KEY).xor_into(memoryview(buf)[10:20])
    assert buf[:10] == b"\xaa" * 10 and buf[20:] == b"\xaa" * 80
    assert buf[10:20] != b"\xaa" * 10


def test_keystream_empty_and_position(backend_module: ModuleType) -> None:
    ks = backend_module.Keystream(RFC_KEY)
    assert ks.position == 0
    ks.xor_into(bytearray())
    assert ks.xor(b"") == b""
    assert ks.position == 0
    ks.xor(b"abc")
    assert ks.position == 3


def test_keystream_rejects_read_only_buffers(backend_module: ModuleType) -> None:
    ks = backend_module.Keystream(RFC_KEY)
    for buf in (b"abc", memoryview(b"abc"), memoryview(bytearray(b"abc")).toreadonly()):
        with pytest.raises(TypeError):
            ks.xor_into(buf)
    assert ks.position == 0


@pytest.mark.parametrize(("key_len", "nonce_len"), [(31, 12), (33, 12), (0, 12), (32, 8), (32, 16)])
def test_keystream_checks_lengths(backend_module: ModuleType, key_len: int, nonce_len: int) -> None:
    with pytest.raises(ValueError):
        backend_module.Keystream(bytes(key_len), bytes(nonce_len))


def test_keystream_default_nonce_is_zero(backend_module: ModuleType) -> None:
    assert backend_module.Keystream(RFC_KEY).xor(bytes(64)) == ref_block(RFC_KEY, 0, bytes(12))


def test_keystream_limit() -> None:
    """The reference stops at the 32-bit block counter (white-box: jump ahead)."""
    ks = layers.Keystream(RFC_KEY)
    ks._position = MAX_KEYSTREAM_BYTES - 10
    ks.xor_into(bytearray(10))  # exactly up to the limit is fine
    with pytest.raises(ValueError):
        ks.xor_into(bytearray(1))
    assert ks.position == MAX_KEYSTREAM_BYTES


# --- xor_layers -------------------------------------------------------------------

LAYER_KEYS = [bytes([i]) * 32 for i in range(1, 6)]


@FAST
@given(data=st.binary(max_size=1500), k=st.integers(1, 5), order=st.randoms(use_true_random=False))
def test_xor_layers_undo_in_any_order(
    backend_module: ModuleType, data: bytes, k: int, order: random.Random
) -> None:
    keys = LAYER_KEYS[:k]
    buf = bytearray(data)
    backend_module.xor_layers([backend_module.Keystream(key) for key in keys], buf)
    if data:
        assert bytes(buf) != data
    undo = list(keys)
    order.shuffle(undo)
    for key in undo:  # XOR layers commute
        backend_module.Keystream(key).xor_into(buf)
    assert bytes(buf) == data


def test_xor_layers_equals_each_layer_in_turn(backend_module: ModuleType) -> None:
    data = bytes(range(200))
    stacked = [backend_module.Keystream(key) for key in LAYER_KEYS]
    one_by_one = [backend_module.Keystream(key) for key in LAYER_KEYS]
    a = bytearray(data)
    for _ in range(3):  # streams continue across calls
        backend_module.xor_layers(stacked, a)
    b = bytearray(data)
    for _ in range(3):
        for layer in one_by_one:
            layer.xor_into(b)
    assert a == b
    assert [s.position for s in stacked] == [3 * len(data)] * len(LAYER_KEYS)
    backend_module.xor_layers([], a)  # no layers: nothing happens
    assert a == b


def test_xor_layers_rejects_read_only(backend_module: ModuleType) -> None:
    stack = [backend_module.Keystream(key) for key in LAYER_KEYS]
    with pytest.raises(TypeError):
        backend_module.xor_layers(stack, b"abc")
    assert all(s.position == 0 for s in stack)


def test_xor_layers_limit_is_all_or_nothing() -> None:
    stack = [layers.Keystream(key) for key in LAYER_KEYS[:3]]
    stack[2]._position = MAX_KEYSTREAM_BYTES - 5
    buf = bytearray(b"0123456789")
    with pytest.raises(ValueError):
        layers.xor_layers(stack, buf)
    assert buf == b"0123456789"
    assert [s.position for s in stack] == [0, 0, MAX_KEYSTREAM_BYTES - 5]


# --- AEAD -------------------------------------------------------------------------

AEAD_KEY = bytes(range(0x80, 0xA0))


def _error(module: ModuleType) -> type[Exception]:
    error: type[Exception] = module.DecryptError
    assert issubclass(error, ValueError)
    return error


def test_sealer_is_rfc8439_with_noise_nonces(backend_module: ModuleType) -> None:
    """Nonce = 4 zero bytes + 8-byte LE counter from 0; empty AD."""
    sealer = backend_module.AeadSealer(AEAD_KEY)
    for n, plaintext in enumerate([SUNSCREEN, b"", b"x" * 1000, b"last"]):
        assert sealer.seal(plaintext) == ref_aead_seal(AEAD_KEY, noise_nonce(n), b"", plaintext)


@FAST
@given(messages=st.lists(st.binary(max_size=600), max_size=8))
def test_aead_round_trip(backend_module: ModuleType, messages: list[bytes]) -> None:
    sealer = backend_module.AeadSealer(AEAD_KEY)
    opener = backend_module.AeadOpener(AEAD_KEY)
    sealed = [sealer.seal(m) for m in messages]
    assert [len(c) for c in sealed] == [len(m) + 16 for m in messages]
    assert [opener.open(c) for c in sealed] == messages


@FAST
@given(messages=st.lists(st.binary(max_size=300), max_size=8), split=st.integers(0, 8))
def test_seal_many_and_open_many(
    backend_module: ModuleType, messages: list[bytes], split: int
) -> None:
    one = backend_module.AeadSealer(AEAD_KEY)
    many = backend_module.AeadSealer(AEAD_KEY)
    expected = [one.seal(m) for m in messages]
    got = many.seal_many(messages[:split]) + many.seal_many(messages[split:])
    assert got == expected
    opener = backend_module.AeadOpener(AEAD_KEY)
    assert opener.open_many(got[:split]) + opener.open_many(got[split:]) == messages


def _fresh_pair(module: ModuleType) -> tuple[list[bytes], layers.AeadOpener]:
    sealer = module.AeadSealer(AEAD_KEY)
    return sealer.seal_many([b"first", b"second", b"third"]), module.AeadOpener(AEAD_KEY)


def test_any_flipped_bit_fails_and_opener_stays_failed(backend_module: ModuleType) -> None:
    error = _error(backend_module)
    sealed, _ = _fresh_pair(backend_module)
    for i in range(len(sealed[0]) * 8):
        opener = backend_module.AeadOpener(AEAD_KEY)
        bad = bytearray(sealed[0])
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(error):
            opener.open(bytes(bad))
        with pytest.raises(error):  # never resynced, even with the genuine message
            opener.open(sealed[0])
        with pytest.raises(error):
            opener.open_many(sealed[1:])


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: s[1:],  # dropped
        lambda s: [s[1], s[0], s[2]],  # reordered
        lambda s: [s[0], s[0]],  # replayed
        lambda s: [s[0][:-1]],  # truncated tag
        lambda s: [b""],  # empty
        lambda s: [s[0][:15]],  # shorter than a tag
        lambda s: [s[0] + b"\x00"],  # extended
        lambda s: [bytes(MAX_AEAD_MESSAGE_LEN + 1)],  # too long for Noise
    ],
    ids=["drop", "reorder", "replay", "cut-tag", "empty", "short", "extended", "too-long"],
)
def test_tampered_streams_fail(
    backend_module: ModuleType, tamper: Callable[[list[bytes]], list[bytes]]
) -> None:
    error = _error(backend_module)
    sealed, opener = _fresh_pair(backend_module)
    with pytest.raises(error):
        opener.open_many(tamper(sealed))
    with pytest.raises(error):
        opener.open(sealed[0])


def test_wrong_key_fails(backend_module: ModuleType) -> None:
    sealed, _ = _fresh_pair(backend_module)
    with pytest.raises(_error(backend_module)):
        backend_module.AeadOpener(bytes(32)).open(sealed[0])


def test_aead_size_bounds(backend_module: ModuleType) -> None:
    sealer = backend_module.AeadSealer(AEAD_KEY)
    biggest = sealer.seal(bytes(MAX_AEAD_MESSAGE_LEN - 16))
    assert len(biggest) == MAX_AEAD_MESSAGE_LEN
    assert backend_module.AeadOpener(AEAD_KEY).open(biggest) == bytes(MAX_AEAD_MESSAGE_LEN - 16)
    with pytest.raises(ValueError):
        sealer.seal(bytes(MAX_AEAD_MESSAGE_LEN - 15))


@pytest.mark.parametrize("key_len", [0, 16, 31, 33])
def test_aead_checks_key_length(backend_module: ModuleType, key_len: int) -> None:
    with pytest.raises(ValueError):
        backend_module.AeadSealer(bytes(key_len))
    with pytest.raises(ValueError):
        backend_module.AeadOpener(bytes(key_len))


# --- backend selection ------------------------------------------------------------


def test_backend_python_forced() -> None:
    assert backend.load("python") == ("python", layers)


def test_backend_auto() -> None:
    name, module = backend.load("")
    assert (name, module) == (("cext", _cext()) if _cext() is not None else ("python", layers))


def test_backend_cext_forced() -> None:
    if _cext() is None:
        with pytest.raises(ImportError, match="GNET_CRYPTO=cext"):
            backend.load("cext")
    else:
        assert backend.load("cext")[0] == "cext"


def test_backend_rejects_unknown_choice() -> None:
    with pytest.raises(ImportError, match="GNET_CRYPTO"):
        backend.load("rust")


def test_package_exports_the_chosen_backend() -> None:
    from globalnet import crypto

    name, module = backend.load()
    assert name == crypto.BACKEND_NAME
    for attr in backend.REQUIRED_NAMES:
        assert getattr(crypto, attr) is getattr(module, attr)
    assert issubclass(crypto.DecryptError, ValueError)


def test_backend_picks_a_built_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    """With an extension importable (faked here), auto and GNET_CRYPTO=cext pick it."""
    fake = ModuleType("globalnet._gnetcrypto")
    for attr in (*backend.REQUIRED_NAMES, "DecryptError"):
        setattr(fake, attr, getattr(layers, attr))
    monkeypatch.setitem(sys.modules, "globalnet._gnetcrypto", fake)
    assert backend.load("") == ("cext", fake)
    assert backend.load("cext") == ("cext", fake)
    assert backend.load("python") == ("python", layers)
    del fake.AeadOpener  # a half-built extension is an error, not a silent fallback
    with pytest.raises(ImportError, match="AeadOpener"):
        backend.load("")
