"""RFC 8439 test vectors and a from-the-text ChaCha20 / Poly1305 / AEAD.

The reference shares no code with either crypto backend, so the layer tests
can check details the RFC vectors alone do not pin down for our use (the
Noise nonce layout, empty associated data) against an independent oracle.
Slow (pure Python): only for short test inputs.
"""

from __future__ import annotations

import struct

RFC_KEY = bytes(range(32))
SUNSCREEN = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip "
    b"for the future, sunscreen would be it."
)

# fmt: off
# Appendix A.1: ChaCha20 block function, (key, nonce, block counter, keystream).
A1_BLOCKS = [
    (bytes(32), bytes(12), 0,
     ("76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
     "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586")),
    (bytes(32), bytes(12), 1,
     ("9f07e7be5551387a98ba977c732d080dcb0f29a048e3656912c6533e32ee7aed"
     "29b721769ce64e43d57133b074d839d531ed1f28510afb45ace10a1f4b794d6f")),
    (bytes(31) + b"\x01", bytes(12), 1,
     ("3aeb5224ecf849929b9d828db1ced4dd832025e8018b8160b82284f3c949aa5a"
     "8eca00bbb4a73bdad192b5c42f73f2fd4e273644c8b36125a64addeb006c13a0")),
    (b"\x00\xff" + bytes(30), bytes(12), 2,
     ("72d54dfbf12ec44b362692df94137f328fea8da73990265ec1bbbea1ae9af0ca"
     "13b25aa26cb4a648cb9b9d1be65b2c0924a66c54d545ec1b7374f4872e99f096")),
    (bytes(32), bytes(11) + b"\x02", 0,
     ("c2c64d378cd536374ae204b9ef933fcd1a8b2288b3dfa49672ab765b54ee27c7"
     "8a970e0e955c14f3a88e741b97c286f75f8fc299e8148362fa198a39531bed6d")),
]

# (key, nonce, initial counter, plaintext, ciphertext): section 2.4.2 and A.2 #3.
ENCRYPTIONS = [
    (RFC_KEY, bytes.fromhex("000000000000004a00000000"), 1, SUNSCREEN,
     ("6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b"
     "f91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d8"
     "07ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736"
     "5af90bbf74a35be6b40b8eedf2785e42874d")),
    (bytes.fromhex("1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0"),
     bytes(11) + b"\x02", 42,
     (b"'Twas brillig, and the slithy toves\nDid gyre and gimble in the wabe:\n"
     b"All mimsy were the borogoves,\nAnd the mome raths outgrabe."),
     ("62e6347f95ed87a45ffae7426f27a1df5fb69110044c0d73118effa95b01e5cf"
     "166d3df2d721caf9b21e5fb14c616871fd84c54f9d65b283196c7fe4f60553eb"
     "f39c6402c42234e32a356b3e764312a61a5532055716ead6962568f87d3f3f77"
     "04c6a8d1bcd1bf4d50d6154b6da731b187b58dfd728afa36757a797ac188d1")),
]

# Section 2.8.2: AEAD_CHACHA20_POLY1305 (key, nonce, aad, plaintext, ciphertext || tag).
AEAD_282 = (
    bytes(range(0x80, 0xA0)),
    bytes.fromhex("070000004041424344454647"),
    bytes.fromhex("50515253c0c1c2c3c4c5c6c7"),
    SUNSCREEN,
    ("d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
    "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
    "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
    "3ff4def08e4b7a9de576d26586cec64b6116" "1ae10b594f09e26a7e902ecbd0600691"),
)
# fmt: on

_M32 = 0xFFFFFFFF
# Section 2.3: four column rounds, then four diagonal rounds.
# fmt: off
_DOUBLE_ROUND = ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15),
                 (0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14))
# fmt: on


def _quarter(s: list[int], a: int, b: int, c: int, d: int) -> None:
    for x, y, z, r in ((a, b, d, 16), (c, d, b, 12), (a, b, d, 8), (c, d, b, 7)):
        s[x] = (s[x] + s[y]) & _M32
        s[z] ^= s[x]
        s[z] = ((s[z] << r) & _M32) | (s[z] >> (32 - r))


def ref_block(key: bytes, counter: int, nonce: bytes) -> bytes:
    """RFC 8439 section 2.3, straight from the text."""
    constants = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    state = [*constants, *struct.unpack("<8I", key), counter, *struct.unpack("<3I", nonce)]
    w = list(state)
    for _ in range(10):
        for q in _DOUBLE_ROUND:
            _quarter(w, *q)
    return struct.pack("<16I", *((x + y) & _M32 for x, y in zip(w, state, strict=True)))


def ref_xor(key: bytes, counter: int, nonce: bytes, data: bytes) -> bytes:
    stream = b"".join(ref_block(key, counter + i, nonce) for i in range(len(data) // 64 + 1))
    return bytes(x ^ y for x, y in zip(data, stream, strict=False))  # stream is longer


def ref_poly1305(key: bytes, msg: bytes) -> bytes:
    """RFC 8439 section 2.5."""
    r = int.from_bytes(key[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = int.from_bytes(key[16:], "little")
    p, acc = (1 << 130) - 5, 0
    for i in range(0, len(msg), 16):
        acc = (acc + int.from_bytes(msg[i : i + 16] + b"\x01", "little")) * r % p
    return ((acc + s) & ((1 << 128) - 1)).to_bytes(16, "little")


def ref_aead_seal(key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """RFC 8439 section 2.8."""
    ciphertext = ref_xor(key, 1, nonce, plaintext)

    def pad(x: bytes) -> bytes:
        return bytes(-len(x) % 16)

    mac_data = aad + pad(aad) + ciphertext + pad(ciphertext)
    mac_data += struct.pack("<QQ", len(aad), len(ciphertext))
    return ciphertext + ref_poly1305(ref_block(key, 0, nonce)[:32], mac_data)


def noise_nonce(n: int) -> bytes:
    return bytes(4) + n.to_bytes(8, "little")
