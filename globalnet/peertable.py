"""The relays a node knows: verified node records, persisted in the data dir.

Why persist: a node restarted with its data dir must rejoin without any
bootstrap node still up, so it keeps the records it verified (Tor's cached
consensus, without the authorities). Only records whose signature checked
out (and whose id carries the proof of work, see wire/records.py) ever enter
the table; expired ones leave it; the table is bounded.

Diversity (issue 11, netdiversity.py): peers are grouped in buckets by the
length of the prefix their id shares with ours, as Kademlia does; a bucket
holds at most 2 peers from one /24 (IPv6 /48) and the table at most 10 from
one /16 (/32). A verified record over a limit is kept as a replacement only:
it is not offered for paths or PEERS exchange, and it is promoted when a
peer leaves and the limits allow it. Loopback is exempt unless the table is
given a stricter `DiversityPolicy` (every local test network is on 127.0.0.1).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog

from .errors import GnetError
from .identity import verify_node_record
from .netdiversity import DEFAULT_POLICY, DiversityPolicy, Networks
from .storage.atomic import write_atomic
from .wire.buffer import Reader, u16
from .wire.records import FLAG_RELAY, MAX_RECORD_SIZE, NodeRecord, id_work_refusal

MAX_PEERS = 4096
#: Seconds a relay that failed is left out of path selection, per failure.
FAILURE_REST = 60.0
log = structlog.get_logger("globalnet.peers")

FILE_NAME = "peers.dat"
#: Record encodings remembered as verified (add_bytes).
MAX_VERIFIED = 2 * MAX_PEERS
MAX_REPLACEMENTS = 512


@dataclass
class PeerEntry:
    record: NodeRecord
    last_seen: float
    failures: int = 0
    failed_at: float = 0.0

    def resting(self, now: float) -> bool:
        """A relay that just failed sits out a while (longer after each failure)."""
        return self.failures > 0 and now - self.failed_at < FAILURE_REST * self.failures


def bucket_of(own_id: bytes, node_id: bytes) -> int:
    """Bits of prefix `node_id` shares with `own_id` (the Kademlia bucket index)."""
    distance = int.from_bytes(own_id, "big") ^ int.from_bytes(node_id, "big")
    return len(own_id) * 8 - distance.bit_length()


class PeerTable:
    def __init__(self, own_id: bytes, data_dir: Path | None = None, policy: DiversityPolicy = DEFAULT_POLICY) -> None:
        self.own_id = own_id
        self.path = data_dir / FILE_NAME if data_dir is not None else None
        self.policy = policy
        self._peers: dict[bytes, PeerEntry] = {}
        self._replacements: dict[bytes, PeerEntry] = {}  # verified, over a diversity limit
        self.last_refusal = ""  # why the last record was refused, for logs and tests
        self._verified: dict[bytes, NodeRecord] = {}  # record bytes whose signature checked out
        self.changed = False
        #: time.time() when a node was last new to the table: path choice
        #: waits while the table is still growing, and decides once it is not.
        self.last_new = 0.0

    # -- diversity ---------------------------------------------------------
    def _networks(self, record: NodeRecord) -> Networks | None:
        return self.policy.networks(record.addresses[0][0]) if record.addresses else None

    def _admits(self, record: NodeRecord) -> bool:
        mine = self._networks(record)
        if mine is None:
            return True
        bucket = bucket_of(self.own_id, record.node_id)
        in_bucket = in_table = 0
        for entry in self._peers.values():
            theirs = self._networks(entry.record)
            if theirs is None or theirs.large != mine.large:
                continue
            in_table += 1
            if theirs.small == mine.small and bucket_of(self.own_id, entry.record.node_id) == bucket:
                in_bucket += 1
        return in_bucket < self.policy.per_bucket_small and in_table < self.policy.per_table_large

    def replacements(self) -> list[NodeRecord]:
        return [e.record for e in self._replacements.values()]

    def _promote(self) -> None:
        """A peer left: the newest replacements the limits now admit take its place."""
        for node_id in reversed(list(self._replacements)):
            if len(self._peers) >= MAX_PEERS:
                return
            entry = self._replacements[node_id]
            if self._admits(entry.record):
                del self._replacements[node_id]
                self._peers[node_id] = entry
                self.changed = True

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, node_id: bytes) -> bool:
        return node_id in self._peers

    def add(self, record: NodeRecord, now: float | None = None) -> bool:
        """Add or refresh a verified record; True if the node is new (and took a slot)."""
        if record.node_id == self.own_id:
            return False
        refusal = id_work_refusal(record.node_id)
        if refusal is not None:
            self.last_refusal = refusal
            return False
        now = time.time() if now is None else now
        entry = self._peers.get(record.node_id)
        if entry is not None:
            if record.seq >= entry.record.seq:
                entry.record = record
            entry.last_seen = now
            entry.failures = 0
            return False
        if not self._admits(record):
            self._replacements.pop(record.node_id, None)
            self._replacements[record.node_id] = PeerEntry(record, now)
            while len(self._replacements) > MAX_REPLACEMENTS:
                self._replacements.pop(next(iter(self._replacements)))
            return False
        self._replacements.pop(record.node_id, None)
        if len(self._peers) >= MAX_PEERS:
            self._evict(now)
        self._peers[record.node_id] = PeerEntry(record, now)
        self.changed = True
        self.last_new = time.time()
        return True

    def add_bytes(self, data: bytes, now: float | None = None) -> NodeRecord | None:
        """Verify then add; None (and nothing added) if the record is bad (`last_refusal` says why).

        The same bytes verified before are not verified again, only checked for expiry (the
        one check that changes with time): peer exchange sends a relay mostly records it
        has, and their signatures were most of an idle relay's CPU (make testnet)."""
        seen = self._verified.get(data)
        if seen is not None and seen.expires > (time.time() if now is None else now):
            self.add(seen, now)
            return seen
        try:
            record = verify_node_record(data, now)
        except GnetError as exc:
            self.last_refusal = exc.detail or exc.kind.describe
            log.debug("peer record refused", reason=self.last_refusal)
            return None
        if len(self._verified) >= MAX_VERIFIED:
            self._verified.clear()  # a cache: it only saves a verification
        self._verified[bytes(data)] = record
        self.add(record, now)
        return record

    def get(self, node_id: bytes) -> NodeRecord | None:
        entry = self._peers.get(node_id)
        return entry.record if entry else None

    def entries(self) -> list[PeerEntry]:
        return list(self._peers.values())

    def relays(self, now: float | None = None) -> list[NodeRecord]:
        """Records usable as hops: relay flag, an address, not expired."""
        now = time.time() if now is None else now
        return [
            e.record
            for e in self._peers.values()
            if e.record.flags & FLAG_RELAY and e.record.addresses and e.record.expires > now and not e.resting(now)
        ]

    def sample(self, n: int, rng: random.Random | None = None) -> list[NodeRecord]:
        """A bounded random sample for PEERS exchange."""
        relays = self.relays()
        return (rng or random).sample(relays, min(n, len(relays)))

    def failed(self, node_id: bytes) -> None:
        """A node we could not reach; three strikes and it leaves the table."""
        entry = self._peers.get(node_id)
        if entry is None:
            return
        entry.failures += 1
        entry.failed_at = time.time()
        if entry.failures >= 3:
            del self._peers[node_id]
            self.changed = True
            self._promote()

    def expire(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        dead = [k for k, e in self._peers.items() if e.record.expires <= now]
        for k in dead:
            del self._peers[k]
        for k in [k for k, e in self._replacements.items() if e.record.expires <= now]:
            del self._replacements[k]
        self.changed = self.changed or bool(dead)
        if dead:
            self._promote()
        return len(dead)

    def _evict(self, now: float) -> None:
        self.expire(now)
        if len(self._peers) >= MAX_PEERS:
            oldest = min(self._peers, key=lambda k: self._peers[k].last_seen)
            del self._peers[oldest]

    # -- persistence -------------------------------------------------------
    def save(self) -> None:
        if self.path is None:
            return
        data = b"".join(u16(len(raw)) + raw for raw in (e.record.encode() for e in self._peers.values()))
        write_atomic(self.path, data)
        self.changed = False

    def load(self, now: float | None = None) -> int:
        """Read the saved table, keeping records that still verify; returns how many."""
        if self.path is None or not self.path.exists():
            return 0
        raw = self.path.read_bytes()[: MAX_PEERS * (MAX_RECORD_SIZE + 2)]
        reader = Reader(raw)
        count = 0
        try:
            while reader.remaining():
                if self.add_bytes(reader.pull_blob16(MAX_RECORD_SIZE), now) is not None:
                    count += 1
        except GnetError:
            pass  # a truncated tail: keep what verified
        return count

    def update_many(self, records: Iterable[bytes]) -> list[NodeRecord]:
        """Verify and add each; returns the records that were new."""
        new = []
        for data in records:
            before = len(self._peers)
            record = self.add_bytes(data)
            if record is not None and len(self._peers) > before:
                new.append(record)
        return new
