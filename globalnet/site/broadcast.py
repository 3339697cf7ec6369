"""Broadcast to a site's peers (sans-IO): ZeroNet's peerBroadcast, signed by the site's key.

Why: mirrors must learn of a new manifest within seconds, without a central
tracker and without anyone learning who the mirrors are. The owner signs a
small message (an update: "seq N, manifest hash H", or a short announcement
for visitors) and floods it among the site's mirrors over circuits; each
mirror checks it, delivers it once, and forwards it to its other peers while
its TTL lasts.

Only messages signed by the site key flood: a mirror cannot forge an update
(it is signed) nor replay an old one past the dedupe window (timestamps out of
the window are refused) nor roll a site back (an update with a seq not above
the highest one seen is refused). Every input is bounded: message size, TTL,
the dedupe table, and a token bucket per peer so one peer cannot make a node
flood the others.

Wire (big-endian):

    magic "gnet-bcast" | version u8 (1) | site key 32 | kind u8 | message id 16 |
    timestamp u64 | body blob16 (<= MAX_BODY) | signature 64 | ttl u8

The signature covers everything before it; the TTL comes last and is not
signed, because every hop decrements it.
"""

from __future__ import annotations

import enum
import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing

from ..errors import ProtocolError
from ..wire.buffer import Reader, blob16, u8, u64

MAGIC = b"gnet-bcast"
VERSION = 1
MAX_BODY = 1024
MAX_TTL = 8
DEFAULT_TTL = 5
MAX_MESSAGE = len(MAGIC) + 1 + 32 + 1 + 16 + 8 + 2 + MAX_BODY + 64 + 1
WINDOW = 600.0  # seconds: older or further-future messages are refused; ids are remembered this long
MAX_SEEN = 4096  # dedupe table bound (oldest forgotten first)
PEER_RATE = 2.0  # messages per second a peer may send us (token bucket)
PEER_BURST = 10.0
MAX_PEERS_TRACKED = 256


class BroadcastKind(enum.IntEnum):
    UPDATE = 1  # body: seq u64 | SHA-256 of the encoded manifest (32)
    ANNOUNCE = 2  # body: UTF-8 text for visitors


@dataclass(frozen=True)
class BroadcastMessage:
    site_key: bytes
    kind: BroadcastKind
    message_id: bytes
    timestamp: int
    body: bytes
    signature: bytes
    ttl: int

    def signed_part(self) -> bytes:
        return MAGIC + u8(VERSION) + self.site_key + u8(int(self.kind)) + self.message_id + u64(self.timestamp) + blob16(self.body, MAX_BODY)

    def encode(self) -> bytes:
        return self.signed_part() + self.signature + u8(self.ttl)

    @property
    def update(self) -> tuple[int, bytes]:
        """(seq, manifest hash) of an UPDATE message."""
        reader = Reader(self.body)
        seq, digest = reader.pull_u64(), reader.pull_bytes(32)
        reader.expect_end()
        return seq, digest


def make_message(seed: bytes, kind: BroadcastKind, body: bytes, timestamp: int, nonce: bytes, ttl: int = DEFAULT_TTL) -> BroadcastMessage:
    """A message signed by the site key `seed`; `nonce` (random, from the shell) makes its id."""
    if len(body) > MAX_BODY:
        raise ValueError(f"a broadcast body has at most {MAX_BODY} bytes")
    if not 0 < ttl <= MAX_TTL:
        raise ValueError(f"ttl must be 1..{MAX_TTL}")
    key = nacl.signing.SigningKey(seed)
    site_key = bytes(key.verify_key)
    message_id = hashlib.blake2b(b"gnet bcast id" + site_key + nonce + body, digest_size=16).digest()
    unsigned = BroadcastMessage(site_key, kind, message_id, timestamp, body, b"", ttl)
    signature = bytes(key.sign(unsigned.signed_part()).signature)
    return BroadcastMessage(site_key, kind, message_id, timestamp, body, signature, ttl)


def update_body(seq: int, manifest_bytes: bytes) -> bytes:
    return u64(seq) + hashlib.sha256(manifest_bytes).digest()


def decode_message(data: bytes) -> BroadcastMessage:
    """Parse and verify a message; ProtocolError says why it is refused."""
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"broadcast of {len(data)} bytes exceeds {MAX_MESSAGE}")
    reader = Reader(data)
    if reader.pull_bytes(len(MAGIC)) != MAGIC:
        raise ProtocolError("not a site broadcast")
    if reader.pull_u8() != VERSION:
        raise ProtocolError("unknown broadcast version")
    site_key = reader.pull_bytes(32)
    try:
        kind = BroadcastKind(reader.pull_u8())
    except ValueError:
        raise ProtocolError("unknown broadcast kind") from None
    message_id, timestamp, body = reader.pull_bytes(16), reader.pull_u64(), reader.pull_blob16(MAX_BODY)
    signature, ttl = reader.pull_bytes(64), reader.pull_u8()
    reader.expect_end()
    if ttl > MAX_TTL:
        raise ProtocolError(f"broadcast ttl {ttl} exceeds {MAX_TTL}")
    message = BroadcastMessage(site_key, kind, message_id, timestamp, body, signature, ttl)
    try:
        nacl.signing.VerifyKey(site_key).verify(message.signed_part(), signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.RuntimeError):
        raise ProtocolError("the broadcast's signature does not verify") from None
    if kind is BroadcastKind.UPDATE:
        message.update  # noqa: B018 - raises ProtocolError on a malformed body
    elif not is_text(body):
        raise ProtocolError("an announcement is printable UTF-8")
    return message


def is_text(body: bytes) -> bool:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch == "\n" for ch in text)


@dataclass(frozen=True)
class Deliver:
    """A new, verified message for this node (an update to fetch, an announcement to show)."""

    message: BroadcastMessage
    from_peer: str | None


@dataclass(frozen=True)
class Send:
    """Bytes for the shell to send to `peer` over its circuit to that mirror."""

    peer: str
    data: bytes


@dataclass(frozen=True)
class Refused:
    """Dropped input and why (for a debug log and tests; the peer learns nothing)."""

    from_peer: str | None
    reason: str


Event = Deliver | Send | Refused


class _Bucket:
    __slots__ = ("at", "tokens")

    def __init__(self, now: float) -> None:
        self.tokens, self.at = PEER_BURST, now

    def take(self, now: float) -> bool:
        self.tokens = min(PEER_BURST, self.tokens + (now - self.at) * PEER_RATE)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class SiteBroadcast:
    """One site's broadcast state on one node: peers, seen ids, highest seq, per-peer rate."""

    def __init__(self, site_key: bytes, highest_seq: int = 0) -> None:
        self.site_key = site_key
        self.highest_seq = highest_seq
        self._peers: list[str] = []
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def set_peers(self, peers: Iterable[str]) -> None:
        self._peers = list(dict.fromkeys(peers))

    def originate(self, message: BroadcastMessage, now: float) -> list[Event]:
        """Send our own (already signed) message to every peer."""
        if message.site_key != self.site_key:
            raise ValueError("a message for another site")
        return self._accept(message, None, now)

    def receive(self, data: bytes, from_peer: str, now: float) -> list[Event]:
        bucket = self._buckets.pop(from_peer, None) or _Bucket(now)
        self._buckets[from_peer] = bucket
        while len(self._buckets) > MAX_PEERS_TRACKED:
            self._buckets.popitem(last=False)
        if not bucket.take(now):
            return [Refused(from_peer, "rate limit")]
        try:
            message = decode_message(data)
        except ProtocolError as exc:
            return [Refused(from_peer, str(exc))]
        if message.site_key != self.site_key:
            return [Refused(from_peer, "a broadcast for another site")]
        return self._accept(message, from_peer, now)

    def _accept(self, message: BroadcastMessage, from_peer: str | None, now: float) -> list[Event]:
        self.handle_timer(now)
        if message.message_id in self._seen:
            return [Refused(from_peer, "duplicate")]
        if abs(message.timestamp - now) > WINDOW:
            return [Refused(from_peer, "timestamp outside the window")]
        if message.kind is BroadcastKind.UPDATE:
            seq, _ = message.update
            if seq <= self.highest_seq:
                self._remember(message, now)
                return [Refused(from_peer, f"seq {seq} is not above {self.highest_seq} (no rollback)")]
            self.highest_seq = seq
        self._remember(message, now)
        events: list[Event] = [Deliver(message, from_peer)]
        ttl = message.ttl - 1 if from_peer is not None else message.ttl
        if ttl > 0:
            forwarded = BroadcastMessage(message.site_key, message.kind, message.message_id, message.timestamp, message.body, message.signature, ttl).encode()
            events += [Send(peer, forwarded) for peer in self._peers if peer != from_peer]
        return events

    def _remember(self, message: BroadcastMessage, now: float) -> None:
        # Remembered until its timestamp has left the window: a replay after that is refused by age.
        self._seen[message.message_id] = max(now, message.timestamp) + WINDOW + 1
        while len(self._seen) > MAX_SEEN:
            self._seen.popitem(last=False)

    def get_timer(self) -> float | None:
        return min(self._seen.values(), default=None)

    def handle_timer(self, now: float) -> None:
        for message_id in [m for m, expires in self._seen.items() if expires <= now]:
            del self._seen[message_id]
