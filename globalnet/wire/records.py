"""Signed node records: who a node is and how to reach it.

A record binds a node's Ed25519 identity key to its current X25519 onion key,
its addresses and its flags. It is signed by the identity key (see
`identity.sign_node_record` / `identity.verify_node_record`); this module only
encodes and decodes, with a bound on every field, and checks nothing
cryptographic.

Layout (big-endian): magic "GNR1" | identity key 32 | onion key 32 | flags u8 |
n_addrs u8 | n x (host str8, port u16) | exit policy str8 | published u64 |
expires u64 | seq u64 | signature 64.  The signature covers everything before it.

Costly ids (S/Kademlia's static puzzle, Baumgart & Mies 2007, section 4.1):
a node id is BLAKE2b-160 of the identity key, and it is valid only if
BLAKE2b(ID_WORK_CONTEXT | node id) starts with ID_WORK_BITS zero bits. A node
meets this by generating keys until one passes (`identity.Identity.generate`);
the key file then *is* the proof, so nothing new goes on the wire and a
restart never re-solves. Because the puzzle is a function of the id alone,
any id -- including a bare (id, host, port) contact in a DHT answer -- is
checked without its record, and an id whose first p bits are chosen (an id
ground next to a descriptor key) costs 2^(ID_WORK_BITS + p) key generations,
not 2^p: the puzzle multiplies the price of every position.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..errors import ProtocolError
from .buffer import Reader, str8, u8, u16, u64

MAGIC = b"GNR1"
MAX_RECORD_SIZE = 4096
MAX_ADDRESSES = 4
SIGNATURE_SIZE = 64
NODE_ID_SIZE = 20

#: Leading zero bits BLAKE2b(ID_WORK_CONTEXT | node id) must have: a network
#: constant. 12 bits = 4,096 key generations on average, ~0.13 s for a node on
#: this project's 2-core test machine (32 us per Ed25519 key + hash, PyNaCl).
ID_WORK_BITS = 12
ID_WORK_CONTEXT = b"globalnet id work v1|"
_required_work = ID_WORK_BITS

FLAG_RELAY = 0x01
FLAG_EXIT = 0x02


def node_id_of(identity_key: bytes) -> bytes:
    """BLAKE2b-160 of the Ed25519 identity public key: the node id (and Kademlia id)."""
    return hashlib.blake2b(identity_key, digest_size=NODE_ID_SIZE).digest()


def id_work(node_id: bytes) -> int:
    """Leading zero bits of BLAKE2b(ID_WORK_CONTEXT | node_id): the work the id carries."""
    digest = int.from_bytes(hashlib.blake2b(ID_WORK_CONTEXT + node_id, digest_size=32).digest(), "big")
    return 256 - digest.bit_length()


def required_id_work() -> int:
    """The difficulty records are checked against (ID_WORK_BITS unless a simulation lowered it)."""
    return _required_work


def has_id_work(node_id: bytes) -> bool:
    return len(node_id) == NODE_ID_SIZE and id_work(node_id) >= _required_work


def id_work_refusal(node_id: bytes) -> str | None:
    """Why an id is refused (no proof of work), or None if it carries enough."""
    if has_id_work(node_id):
        return None
    return (
        f"node id {short_id(node_id)} carries no proof of work: BLAKE2b of it has {id_work(node_id)} leading"
        f" zero bits, the network requires {_required_work}"
    )


def set_required_id_work_for_simulation(bits: int) -> int:
    """Lower (or restore) the difficulty in this process; returns the previous value.

    Only the DHT simulation (bench/dht_sim.py) and unit tests that build
    thousands of ids call this; nodes, the CLI and every process test use
    ID_WORK_BITS. Nothing in config can reach it.
    """
    global _required_work
    previous, _required_work = _required_work, bits
    return previous


def short_id(node_id: bytes) -> str:
    """The first 8 hex characters, for logs and consoles."""
    return node_id.hex()[:8]


@dataclass(frozen=True)
class NodeRecord:
    identity_key: bytes
    onion_key: bytes
    flags: int
    addresses: tuple[tuple[str, int], ...]
    exit_policy: str
    published: int
    expires: int
    seq: int
    signature: bytes = b""

    @property
    def node_id(self) -> bytes:
        return node_id_of(self.identity_key)

    @property
    def is_exit(self) -> bool:
        return bool(self.flags & FLAG_EXIT)

    def signed_part(self) -> bytes:
        """The bytes the identity key signs."""
        if len(self.addresses) > MAX_ADDRESSES:
            raise ValueError(f"at most {MAX_ADDRESSES} addresses")
        parts = [MAGIC, self.identity_key, self.onion_key, u8(self.flags), u8(len(self.addresses))]
        for host, port in self.addresses:
            parts += [str8(host), u16(port)]
        parts += [str8(self.exit_policy), u64(self.published), u64(self.expires), u64(self.seq)]
        return b"".join(parts)

    def encode(self) -> bytes:
        if len(self.signature) != SIGNATURE_SIZE:
            raise ValueError("record is not signed")
        return self.signed_part() + self.signature


def decode_node_record(data: bytes) -> NodeRecord:
    """Parse a record; raises ProtocolError on anything malformed (no signature check)."""
    if len(data) > MAX_RECORD_SIZE:
        raise ProtocolError(f"node record of {len(data)} bytes exceeds {MAX_RECORD_SIZE}")
    r = Reader(data)
    if r.pull_bytes(4) != MAGIC:
        raise ProtocolError("not a node record")
    identity_key = r.pull_bytes(32)
    onion_key = r.pull_bytes(32)
    flags = r.pull_u8()
    n_addrs = r.pull_u8()
    if n_addrs > MAX_ADDRESSES:
        raise ProtocolError(f"node record lists {n_addrs} addresses, at most {MAX_ADDRESSES}")
    addresses = []
    for _ in range(n_addrs):
        host = r.pull_str8()
        port = r.pull_u16()
        if not host or port == 0:
            raise ProtocolError("node record has an empty address")
        addresses.append((host, port))
    exit_policy = r.pull_str8()
    published = r.pull_u64()
    expires = r.pull_u64()
    seq = r.pull_u64()
    signature = r.pull_bytes(SIGNATURE_SIZE)
    r.expect_end()
    return NodeRecord(
        identity_key=identity_key,
        onion_key=onion_key,
        flags=flags,
        addresses=tuple(addresses),
        exit_policy=exit_policy,
        published=published,
        expires=expires,
        seq=seq,
        signature=signature,
    )
