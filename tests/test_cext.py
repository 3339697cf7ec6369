"""globalnet._gnetcrypto (cext/gnetcrypto.c) against RFC 8439 and `cryptography`.

`cryptography` is what the pure-Python twin (globalnet/crypto/layers.py)
uses, so agreeing with it byte for byte is agreeing with the twin.
"""

from __future__ import annotations

import gc
import os
import random
import subprocess
import sys
import threading

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

gnc = pytest.importorskip(
    "globalnet._gnetcrypto",
    reason="C extension globalnet._gnetcrypto not built (run: python setup.py build_ext --inplace)",
)

Keystream = gnc.Keystream
AeadSealer = gnc.AeadSealer
AeadOpener = gnc.AeadOpener
DecryptError = gnc.DecryptError
xor_layers = gnc.xor_layers
MAX = gnc.MAX_KEYSTREAM_BYTES

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- references (the `cryptography` package) --------------------------------


def ref_xor(key: bytes, nonce: bytes, position: int, data: bytes) -> bytes:
    """data XOR the ChaCha20 keystream from byte `position` on (counter from 0)."""
    counter = (position // 64).to_bytes(4, "little")
    enc = Cipher(algorithms.ChaCha20(key, counter + nonce), mode=None).encryptor()
    enc.update(bytes(position % 64))
    return enc.update(data)


def noise_nonce(n: int) -> bytes:
    return b"\0\0\0\0" + n.to_bytes(8, "little")


def ref_seal(key: bytes, n: int, plaintext: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(noise_nonce(n), plaintext, None)


# --- RFC 8439 vectors ----------------------------------------------------------

SUNSCREEN = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one "
    b"tip for the future, sunscreen would be it."
)
JABBERWOCKY = (
    b"'Twas brillig, and the slithy toves\nDid gyre and gimble in the wabe:\n"
    b"All mimsy were the borogoves,\nAnd the mome raths outgrabe."
)

# (key, nonce, initial block counter, plaintext, ciphertext)
CHACHA20_VECTORS = [
    pytest.param(
        bytes(32),
        bytes(12),
        0,
        bytes(64),
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
        "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586",
        id="A.2#1",
    ),
    pytest.param(
        bytes(range(32)),
        bytes.fromhex("000000000000004a00000000"),
        1,
        SUNSCREEN,
        "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b"
        "f91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d8"
        "07ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736"
        "5af90bbf74a35be6b40b8eedf2785e42874d",
        id="2.4.2",
    ),
    pytest.param(
        bytes.fromhex("1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0"),
        bytes.fromhex("000000000000000000000002"),
        42,
        JABBERWOCKY,
        "62e6347f95ed87a45ffae7426f27a1df5fb69110044c0d73118effa95b01e5cf"
        "166d3df2d721caf9b21e5fb14c616871fd84c54f9d65b283196c7fe4f60553eb"
        "f39c6402c42234e32a356b3e764312a61a5532055716ead6962568f87d3f3f77"
        "04c6a8d1bcd1bf4d50d6154b6da731b187b58dfd728afa36757a797ac188d1",
        id="A.2#3",
    ),
]


@pytest.mark.parametrize(("key", "nonce", "counter", "plaintext", "ciphertext"), CHACHA20_VECTORS)
def test_chacha20_rfc8439_vectors(
    key: bytes, nonce: bytes, counter: int, plaintext: bytes, ciphertext: str
) -> None:
    want = bytes.fromhex(ciphertext)
    assert ref_xor(key, nonce, 64 * counter, plaintext) == want  # the reference agrees

    # Our counter starts at 0: skip `counter` blocks by consuming them ...
    ks = Keystream(key, nonce)
    ks.xor(bytes(64 * counter))
    assert ks.xor(plaintext) == want
    assert ks.position == 64 * counter + len(plaintext)

    # ... or start there with the test-only position keyword.
    ks = Keystream(key, nonce, position=64 * counter)
    buf = bytearray(plaintext)
    ks.xor_into(buf)
    assert bytes(buf) == want

    # Byte by byte across the block boundaries.
    ks = Keystream(key, nonce, position=64 * counter)
    assert b"".join(ks.xor(plaintext[i : i + 1]) for i in range(len(plaintext))) == want


def test_chacha20_poly1305_rfc8439_2_8_2() -> None:
    """2.8.2 has its own nonce and AD: check the reference with it, then us
    with its key under our fixed Noise nonces and empty AD."""
    key = bytes(range(0x80, 0xA0))
    nonce = bytes.fromhex("070000004041424344454647")
    aad = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
    want = bytes.fromhex(
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
        "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
        "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
        "3ff4def08e4b7a9de576d26586cec64b6116"
        "1ae10b594f09e26a7e902ecbd0600691"
    )
    assert ChaCha20Poly1305(key).encrypt(nonce, SUNSCREEN, aad) == want

    sealer, opener = AeadSealer(key), AeadOpener(key)
    for n in range(3):
        sealed = sealer.seal(SUNSCREEN)
        assert sealed == ref_seal(key, n, SUNSCREEN)
        assert len(sealed) == len(SUNSCREEN) + 16
        assert opener.open(sealed) == SUNSCREEN
    # The ChaCha20 part of the AEAD is the keystream from block 1 on (2.8).
    body = ref_seal(key, 0, SUNSCREEN)[:-16]
    assert Keystream(key, noise_nonce(0), position=64).xor(SUNSCREEN) == body


# --- Keystream against cryptography ------------------------------------------

chunkings = st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=12)
positions = st.one_of(
    st.integers(min_value=0, max_value=5000),
    st.integers(min_value=MAX - 5000, max_value=MAX - 3600),
)


@FAST
@given(
    key=st.binary(min_size=32, max_size=32),
    nonce=st.binary(min_size=12, max_size=12),
    position=positions,
    sizes=chunkings,
    modes=st.lists(st.sampled_from(["xor", "xor_into", "memoryview"]), min_size=12, max_size=12),
)
def test_keystream_chunked_equals_cryptography(
    key: bytes, nonce: bytes, position: int, sizes: list[int], modes: list[str]
) -> None:
    data = random.Random(position).randbytes(sum(sizes))
    want = ref_xor(key, nonce, position, data)
    ks = Keystream(key, nonce, position=position)
    out = bytearray()
    offset = 0
    for size, mode in zip(sizes, modes):
        chunk = data[offset : offset + size]
        if mode == "xor":
            out += ks.xor(chunk)
        elif mode == "xor_into":
            buf = bytearray(chunk)
            ks.xor_into(buf)
            out += buf
        else:  # a writable memoryview into the middle of a bigger buffer
            big = bytearray(b"\xaa" * 5) + bytearray(chunk) + bytearray(b"\xbb" * 5)
            ks.xor_into(memoryview(big)[5 : 5 + size])
            assert big[:5] == b"\xaa" * 5 and big[5 + size :] == b"\xbb" * 5
            out += big[5 : 5 + size]
        offset += size
        assert ks.position == position + offset
    assert bytes(out) == want


def test_keystream_defaults_and_big_buffers() -> None:
    """Default nonce is 12 zero bytes; buffers past the GIL threshold agree."""
    key = os.urandom(32)
    data = os.urandom(3 * 65536 + 17)
    ks = Keystream(key)
    assert ks.position == 0
    out = ks.xor(data[:100]) + ks.xor(data[100:70000]) + ks.xor(data[70000:])
    assert out == ref_xor(key, bytes(12), 0, data)
    assert ks.position == len(data)
    assert ks.xor(b"") == b"" and ks.position == len(data)


@FAST
@given(
    keys=st.lists(
        st.tuples(st.binary(min_size=32, max_size=32), st.binary(min_size=12, max_size=12)),
        min_size=0,
        max_size=6,
    ),
    sizes=chunkings,
    start=st.integers(min_value=0, max_value=200),
)
def test_xor_layers_equals_one_by_one(
    keys: list[tuple[bytes, bytes]], sizes: list[int], start: int
) -> None:
    layers = [Keystream(k, n, position=start + i) for i, (k, n) in enumerate(keys)]
    refs = [Cipher(algorithms.ChaCha20(k, bytes(4) + n), mode=None).encryptor() for k, n in keys]
    for i, enc in enumerate(refs):
        enc.update(bytes(start + i))
    rng = random.Random(len(sizes))
    for size in sizes:
        data = rng.randbytes(size)
        want = data
        for enc in refs:
            want = enc.update(want)
        buf = bytearray(data)
        xor_layers(layers if size % 2 else tuple(layers), buf)
        assert bytes(buf) == want
    total = sum(sizes)
    assert [ks.position for ks in layers] == [start + i + total for i in range(len(keys))]


def test_xor_layers_same_layer_twice_advances_twice() -> None:
    key, nonce = os.urandom(32), os.urandom(12)
    ks = Keystream(key, nonce)
    buf = bytearray(os.urandom(100))
    data = bytes(buf)
    xor_layers([ks, ks], buf)
    stream = ref_xor(key, nonce, 0, bytes(200))
    assert bytes(buf) == bytes(a ^ b ^ c for a, b, c in zip(data, stream[:100], stream[100:]))
    assert ks.position == 200


def test_xor_layers_big_buffer_many_layers() -> None:
    keys = [(os.urandom(32), os.urandom(12)) for _ in range(5)]
    data = os.urandom(65536 + 3)
    buf = bytearray(data)
    xor_layers([Keystream(k, n) for k, n in keys], buf)
    want = data
    for k, n in keys:
        want = ref_xor(k, n, 0, want)
    assert bytes(buf) == want


# --- AEAD against cryptography ------------------------------------------------

frames = st.lists(st.binary(min_size=0, max_size=2000), min_size=0, max_size=10)


@FAST
@given(
    key=st.binary(min_size=32, max_size=32),
    batches=st.lists(frames, min_size=1, max_size=4),
)
def test_seal_open_equal_cryptography(key: bytes, batches: list[list[bytes]]) -> None:
    sealer, opener = AeadSealer(key), AeadOpener(key)
    n = 0
    for i, batch in enumerate(batches):
        if i % 2:
            sealed = sealer.seal_many(batch)
        else:
            sealed = [sealer.seal(bytearray(pt)) for pt in batch]
        assert sealed == [ref_seal(key, n + j, pt) for j, pt in enumerate(batch)]
        if i % 3 == 1:
            opened = opener.open_many(tuple(memoryview(c) for c in sealed))
        else:
            opened = [opener.open(c) for c in sealed]
        assert opened == batch
        assert all(type(p) is bytes for p in opened)
        n += len(batch)


def test_seal_big_frames_and_open_cryptography_output() -> None:
    key = os.urandom(32)
    plaintexts = [os.urandom(16384) for _ in range(4)] + [b""]
    sealed = AeadSealer(key).seal_many(plaintexts)
    assert sealed == [ref_seal(key, n, pt) for n, pt in enumerate(plaintexts)]
    opener = AeadOpener(key)
    assert [opener.open(ref_seal(key, n, pt)) for n, pt in enumerate(plaintexts)] == plaintexts


@FAST
@given(
    key=st.binary(min_size=32, max_size=32),
    plaintext=st.binary(min_size=0, max_size=300),
    data=st.data(),
)
def test_flipped_bit_fails_for_good(key: bytes, plaintext: bytes, data: st.DataObject) -> None:
    sealer, opener = AeadSealer(key), AeadOpener(key)
    good = [sealer.seal(plaintext) for _ in range(3)]
    assert opener.open(good[0]) == plaintext
    bit = data.draw(st.integers(min_value=0, max_value=8 * len(good[1]) - 1))
    bad = bytearray(good[1])
    bad[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(DecryptError):
        opener.open(bytes(bad))
    with pytest.raises(InvalidTag):  # the reference agrees the frame is bad
        ChaCha20Poly1305(key).decrypt(noise_nonce(1), bytes(bad), None)
    # Failed for good: even the right frame, even open_many, even nothing.
    for call in (
        lambda: opener.open(good[1]),
        lambda: opener.open_many([good[1], good[2]]),
        lambda: opener.open_many([]),
        lambda: opener.open(b""),
        lambda: opener.open(42),
    ):
        with pytest.raises(DecryptError):
            call()


def test_open_failures() -> None:
    key = os.urandom(32)
    sealed = [AeadSealer(key).seal(b"x")]
    for bad in (b"", bytes(15)):  # shorter than the tag
        opener = AeadOpener(key)
        with pytest.raises(DecryptError):
            opener.open(bad)
        with pytest.raises(DecryptError):
            opener.open(sealed[0])
    # Wrong key, wrong order, replay.
    with pytest.raises(DecryptError):
        AeadOpener(os.urandom(32)).open(sealed[0])
    s = AeadSealer(key)
    a, b = s.seal(b"a"), s.seal(b"b")
    with pytest.raises(DecryptError):
        AeadOpener(key).open(b)
    opener = AeadOpener(key)
    assert opener.open(a) == b"a"
    with pytest.raises(DecryptError):
        opener.open(a)
    # open_many: a bad frame anywhere fails the call and the opener.
    s, opener = AeadSealer(key), AeadOpener(key)
    batch = s.seal_many([b"1", b"2", b"3"])
    with pytest.raises(DecryptError, match="message 1 "):
        opener.open_many([batch[0], batch[2], batch[1]])
    with pytest.raises(DecryptError):
        opener.open(batch[0])
    opener = AeadOpener(key)
    with pytest.raises(DecryptError):
        opener.open_many([batch[0], b"short"])
    assert issubclass(DecryptError, ValueError)


def test_decrypt_error_is_the_references_class() -> None:
    """One except clause catches DecryptError from either backend."""
    from globalnet.crypto import layers

    assert DecryptError is layers.DecryptError
    assert gnc.MAX_KEYSTREAM_BYTES == layers.MAX_KEYSTREAM_BYTES
    assert gnc.MAX_AEAD_MESSAGE_LEN == layers.MAX_AEAD_MESSAGE_LEN
    assert gnc.AEAD_TAG_LEN == layers.AEAD_TAG_LEN


@pytest.mark.parametrize(
    "first",
    ["globalnet._gnetcrypto", "globalnet.crypto", "globalnet.crypto.layers"],
)
def test_import_order_does_not_matter(first: str) -> None:
    """The extension imports layers.py for DecryptError, and layers' package
    imports the extension: either can come first (fresh interpreter)."""
    code = (
        f"import {first}\n"
        "import globalnet._gnetcrypto as g, globalnet.crypto as c\n"
        "from globalnet.crypto import layers\n"
        "assert c.BACKEND_NAME == 'cext', c.BACKEND_NAME\n"
        "assert c.Keystream is g.Keystream\n"
        "assert g.DecryptError is layers.DecryptError is c.DecryptError\n"
    )
    env = {**os.environ, "GNET_CRYPTO": ""}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root, timeout=60)


def test_aead_noise_size_bounds() -> None:
    """Noise messages are at most 65535 bytes, tag included."""
    key = os.urandom(32)
    biggest = bytes(gnc.MAX_AEAD_MESSAGE_LEN - 16)
    sealer = AeadSealer(key)
    with pytest.raises(ValueError):
        sealer.seal(biggest + b"x")
    with pytest.raises(ValueError):
        sealer.seal_many([b"ok", biggest + b"x"])
    sealed = sealer.seal(biggest)  # nonce 0: the refused calls consumed nothing
    assert len(sealed) == 65535 and sealed == ref_seal(key, 0, biggest)
    assert AeadOpener(key).open(sealed) == biggest
    too_long = ChaCha20Poly1305(key).encrypt(noise_nonce(0), biggest + b"x", None)
    opener = AeadOpener(key)
    with pytest.raises(DecryptError):  # even with a valid tag
        opener.open(too_long)
    with pytest.raises(DecryptError):
        opener.open(sealed)
    opener = AeadOpener(key)
    with pytest.raises(DecryptError):
        opener.open_many([too_long])


def test_sixteen_byte_ciphertext_is_empty_plaintext() -> None:
    key = os.urandom(32)
    sealed = AeadSealer(key).seal(b"")
    assert len(sealed) == 16
    assert AeadOpener(key).open(sealed) == b""


# --- argument checking ----------------------------------------------------------


def test_keystream_argument_checks() -> None:
    key = os.urandom(32)
    for bad_key in (b"", bytes(16), bytes(31), bytes(33)):
        with pytest.raises(ValueError):
            Keystream(bad_key)
    for bad_nonce in (b"", bytes(8), bytes(11), bytes(13), bytes(16)):
        with pytest.raises(ValueError):
            Keystream(key, bad_nonce)
    for not_bytes in ("k" * 32, None, 32, [0] * 32):
        with pytest.raises(TypeError):
            Keystream(not_bytes)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            Keystream(key, not_bytes)  # type: ignore[arg-type]
    Keystream(bytearray(key), memoryview(bytes(12)))  # any bytes-like is fine
    with pytest.raises(TypeError):
        Keystream()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Keystream(key, bytes(12), 0)  # type: ignore[misc]  # position is keyword-only

    ks = Keystream(key)
    for read_only in (b"abc", memoryview(b"abc"), "abc"):
        with pytest.raises(TypeError):
            ks.xor_into(read_only)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ks.xor_into(memoryview(bytearray(10))[::2])  # not contiguous
    for not_bytes in ("abc", None, 3, [1, 2]):
        with pytest.raises(TypeError):
            ks.xor(not_bytes)  # type: ignore[arg-type]
    assert ks.position == 0  # failed calls consume nothing
    with pytest.raises(AttributeError):
        ks.position = 5  # type: ignore[misc]
    assert ks.xor(b"abc") == ref_xor(key, bytes(12), 0, b"abc")


def test_keystream_position_keyword_checks() -> None:
    key = os.urandom(32)
    for bad in (-1, MAX + 1, 2**64, -(2**70)):
        with pytest.raises(ValueError):
            Keystream(key, position=bad)
    for not_int in (1.0, "5", None):
        with pytest.raises(TypeError):
            Keystream(key, position=not_int)  # type: ignore[arg-type]
    assert Keystream(key, position=MAX).position == MAX


def test_keystream_refuses_to_pass_max() -> None:
    key, nonce = os.urandom(32), os.urandom(12)
    ks = Keystream(key, nonce, position=MAX - 100)
    # The last block (counter 2**32 - 1) still matches the reference.
    assert ks.xor(bytes(90)) == ref_xor(key, nonce, MAX - 100, bytes(90))
    buf = bytearray(b"\x01" * 11)
    with pytest.raises(ValueError):
        ks.xor_into(buf)
    assert buf == b"\x01" * 11 and ks.position == MAX - 10
    with pytest.raises(ValueError):
        ks.xor(bytes(11))
    assert ks.position == MAX - 10
    assert ks.xor(bytes(10)) == ref_xor(key, nonce, MAX - 10, bytes(10))
    assert ks.position == MAX
    assert ks.xor(b"") == b""
    with pytest.raises(ValueError):
        ks.xor(b"\0")
    full = Keystream(key, position=MAX)
    with pytest.raises(ValueError):
        full.xor_into(bytearray(1))


def test_xor_layers_checks_everything_before_mutating() -> None:
    key = os.urandom(32)
    a, b = Keystream(key), Keystream(os.urandom(32), position=7)
    near_end = Keystream(key, position=MAX - 10)
    buf = bytearray(b"\x5a" * 20)

    def unchanged() -> None:
        assert buf == b"\x5a" * 20
        assert (a.position, b.position, near_end.position) == (0, 7, MAX - 10)

    with pytest.raises(TypeError):
        xor_layers([a, b, "not a layer"], buf)  # type: ignore[list-item]
    unchanged()
    with pytest.raises(TypeError):
        xor_layers([a, None], buf)  # type: ignore[list-item]
    unchanged()
    with pytest.raises(TypeError):
        xor_layers([a, AeadSealer(key)], buf)  # type: ignore[list-item]
    unchanged()
    with pytest.raises(ValueError):
        xor_layers([a, b, near_end], buf)
    unchanged()
    with pytest.raises(ValueError):  # 2 x 6 bytes > 10 left: counted per object
        xor_layers([near_end, a, near_end], bytearray(6))
    unchanged()
    with pytest.raises(TypeError):
        xor_layers([a, b], bytes(buf))  # type: ignore[arg-type]
    unchanged()
    with pytest.raises(TypeError):
        xor_layers(a, buf)  # type: ignore[arg-type]  # not a sequence
    with pytest.raises(TypeError):
        xor_layers(42, buf)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        xor_layers([a])  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        xor_layers([a], buf, buf)  # type: ignore[call-arg]
    unchanged()
    xor_layers([], buf)
    xor_layers([a, b], bytearray())
    unchanged()
    xor_layers(iter([a, b]), buf)  # any iterable of layers
    assert (a.position, b.position) == (20, 27)


def test_aead_argument_checks() -> None:
    key = os.urandom(32)
    for cls in (AeadSealer, AeadOpener):
        for bad_key in (b"", bytes(16), bytes(31), bytes(33)):
            with pytest.raises(ValueError):
                cls(bad_key)
        for not_bytes in ("k" * 32, None, 7):
            with pytest.raises(TypeError):
                cls(not_bytes)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            cls()  # type: ignore[call-arg]
    sealer, opener = AeadSealer(key), AeadOpener(key)
    for wrong in ("text", None, 5, [b"a"]):
        with pytest.raises(TypeError):
            sealer.seal(wrong)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            opener.open(wrong)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sealer.seal_many(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="item 2"):
        sealer.seal_many([b"a", b"b", "c"])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        opener.open_many([b"\0" * 16, None])  # type: ignore[list-item]
    # None of that consumed a nonce or failed the opener.
    first = sealer.seal(b"first")
    assert first == ref_seal(key, 0, b"first")
    assert opener.open(first) == b"first"
    assert sealer.seal_many([]) == [] and opener.open_many([]) == []


# --- threads: the GIL is released, objects are guarded ---------------------------


def test_threads_big_buffers_agree() -> None:
    jobs = [(os.urandom(32), os.urandom(12), os.urandom(200_000)) for _ in range(4)]
    results: dict[int, bytes] = {}

    def work(i: int) -> None:
        key, nonce, data = jobs[i]
        ks = Keystream(key, nonce)
        out = bytearray()
        for off in range(0, len(data), 65536):
            buf = bytearray(data[off : off + 65536])
            ks.xor_into(buf)
            out += buf
        results[i] = bytes(out)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (key, nonce, data) in enumerate(jobs):
        assert results[i] == ref_xor(key, nonce, 0, data)


def test_threads_sharing_one_object_never_crash() -> None:
    """Two threads on one Keystream: each call either runs whole or gets a
    RuntimeError (busy); the stream stays consistent."""
    key, nonce = os.urandom(32), os.urandom(12)
    ks = Keystream(key, nonce)
    done = {"bytes": 0, "busy": 0}
    lock = threading.Lock()

    def work() -> None:
        for _ in range(200):
            buf = bytearray(65536)
            try:
                ks.xor_into(buf)
            except RuntimeError:
                with lock:
                    done["busy"] += 1
            else:
                with lock:
                    done["bytes"] += len(buf)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ks.position == done["bytes"]
    assert ks.xor(bytes(10)) == ref_xor(key, nonce, ks.position - 10, bytes(10))


# --- leaks ------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_no_leaks_million_small_calls() -> None:
    key = os.urandom(32)
    sealer, opener, ks = AeadSealer(key), AeadOpener(key), Keystream(key)
    layer2 = Keystream(os.urandom(32))
    buf = bytearray(64)
    frame = b"f" * 48

    def happy(rounds: int) -> None:
        seal, open_, xor_into = sealer.seal, opener.open, ks.xor_into
        for _ in range(rounds):
            open_(seal(frame))
            xor_into(buf)
        seal_many, open_many = sealer.seal_many, opener.open_many
        for _ in range(rounds // 20):
            open_many(seal_many([frame, frame]))
            xor_layers((ks, layer2), buf)

    def errors(rounds: int) -> None:
        for _ in range(rounds):
            for call in (
                lambda: ks.xor_into(b"ro"),
                lambda: xor_layers([ks, 1], buf),
                lambda: sealer.seal_many([b"a", None]),
                lambda: Keystream(b"short"),
                lambda: Keystream(key, position=-1),
                lambda: AeadOpener(key).open(b"\0" * 20),
            ):
                try:
                    call()
                except (TypeError, ValueError):
                    pass

    happy(20_000)
    errors(2_000)
    gc.collect()
    before, blocks_before = rss_bytes(), sys.getallocatedblocks()
    happy(333_334)  # ~1,000,000 calls of seal, open and xor_into
    errors(20_000)  # 120,000 failing calls
    for _ in range(20_000):  # construction and dealloc
        Keystream(key), AeadSealer(key), AeadOpener(key)
    gc.collect()
    grown = rss_bytes() - before
    assert grown < 4 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB"
    # Python-allocator blocks are exact: a leak on any path above would be
    # tens of thousands of blocks, too little to see in RSS.
    blocks = sys.getallocatedblocks() - blocks_before
    assert blocks < 1000, f"{blocks} Python memory blocks leaked"
