"""Proof of work on rendezvous requests: the DoS defence of hidden services (Tor's prop 327 idea).

Why: a rendezvous request costs the service a circuit; anyone can ask for
thousands a second. The service advertises a random seed and a suggested
effort E in its (encrypted) descriptor and gives the same seed to each
access point. A client that wants to be served under load finds a nonce with

    BLAKE2b-32("gnet pow" | seed | registration id | nonce | E) * E <= 2^32 - 1

(about E hashes of work; checking is one hash). The access point checks the
proof and refuses replays; it keeps the waiting requests with the highest
effort when its queue is full, and the service joins queued requests in
order of effort. When the queue overflows or stays long, the service raises
the suggested effort (and republishes); when it is idle it lowers it again.

Everything here is sans-IO: fed `now`, never reading a clock.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

NONCE_SIZE = 16
MAX_EFFORT = 1 << 24  # a client never works harder than this (~10 s of hashing)
UINT32_MAX = (1 << 32) - 1
_CONTEXT = b"gnet pow"

T = TypeVar("T")


def _digest(seed: bytes, registration_id: bytes, nonce: bytes, effort: int) -> int:
    data = _CONTEXT + seed + registration_id + nonce + effort.to_bytes(4, "big")
    return int.from_bytes(hashlib.blake2b(data, digest_size=4).digest(), "big")


def check_work(seed: bytes, registration_id: bytes, nonce: bytes, effort: int) -> bool:
    """True when `nonce` is a valid proof of `effort` (effort 0 needs no work)."""
    if effort == 0:
        return True
    if not 0 < effort <= MAX_EFFORT or len(nonce) != NONCE_SIZE:
        return False
    return _digest(seed, registration_id, nonce, effort) * effort <= UINT32_MAX


def solve_work(seed: bytes, registration_id: bytes, effort: int, max_tries: int = 64 * MAX_EFFORT) -> bytes:
    """A nonce proving `effort` (on average `effort` hashes); effort 0 returns a zero nonce."""
    if effort <= 0:
        return bytes(NONCE_SIZE)
    effort = min(effort, MAX_EFFORT)
    start = int.from_bytes(os.urandom(8), "big")
    prefix = _CONTEXT + seed + registration_id
    suffix = effort.to_bytes(4, "big")
    bound = UINT32_MAX // effort
    for i in range(max_tries):
        nonce = ((start + i) % (1 << 64)).to_bytes(8, "big") + bytes(8)
        if int.from_bytes(hashlib.blake2b(prefix + nonce + suffix, digest_size=4).digest(), "big") <= bound:
            return nonce
    raise RuntimeError("no proof of work found")  # probability ~e^-64


class ReplayCache:
    """The nonces seen for one seed (bounded: the oldest are forgotten first)."""

    def __init__(self, limit: int = 65536) -> None:
        self.limit = limit
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def seen(self, nonce: bytes) -> bool:
        """Record `nonce`; True if it was already used."""
        if nonce in self._seen:
            return True
        self._seen[nonce] = None
        if len(self._seen) > self.limit:
            self._seen.popitem(last=False)
        return False


@dataclass(order=True)
class _Entry(Generic[T]):
    sort_key: tuple[int, int]
    deadline: float = field(compare=False)
    item: T = field(compare=False)


class EffortQueue(Generic[T]):
    """Bounded queue served highest effort first (FIFO within one effort).

    When full, a new request pushes out the lowest-effort one if it offers
    more, else it is itself refused: a flood without work cannot keep out a
    request with work. Entries older than `max_wait` are dropped."""

    def __init__(self, limit: int, max_wait: float) -> None:
        self.limit = limit
        self.max_wait = max_wait
        self._heap: list[_Entry[T]] = []  # min-heap on (-effort, arrival)
        self._order = itertools.count()
        self.dropped = 0  # refused or pushed out since the controller last looked

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, item: T, effort: int, now: float) -> T | None:
        """Queue `item`; returns what was refused or pushed out (None if nothing)."""
        entry = _Entry((-effort, next(self._order)), now + self.max_wait, item)
        if len(self._heap) < self.limit:
            heapq.heappush(self._heap, entry)
            return None
        self.dropped += 1
        lowest = max(self._heap)  # largest sort key = lowest effort, latest arrival
        if -lowest.sort_key[0] >= effort:
            return item
        self._heap.remove(lowest)
        heapq.heapify(self._heap)
        heapq.heappush(self._heap, entry)
        return lowest.item

    def pop(self, now: float) -> T | None:
        """The highest-effort request still within its wait, or None."""
        while self._heap:
            entry = heapq.heappop(self._heap)
            if entry.deadline > now:
                return entry.item
            self.dropped += 1
        return None

    def remove(self, item: T) -> bool:
        for entry in self._heap:
            if entry.item is item:
                self._heap.remove(entry)
                heapq.heapify(self._heap)
                return True
        return False

    def items(self) -> list[T]:
        return [e.item for e in self._heap]


class EffortController:
    """The suggested effort a service advertises: raised under load, lowered when idle.

    Every `interval` seconds: if requests were refused, or the queue stayed at
    least half full, the effort doubles (at least MIN_RAISE); if the queue
    stayed empty and nothing was refused, it halves (to 0 below MIN_RAISE)."""

    MIN_RAISE = 64
    MAX_SUGGESTED = 1 << 20

    def __init__(self, interval: float, limit: int, now: float) -> None:
        self.interval = interval
        self.limit = limit
        self.effort = 0
        self._next = now + interval
        self._peak = 0
        self._dropped = 0

    def observe(self, queue_length: int, dropped: int) -> None:
        self._peak = max(self._peak, queue_length)
        self._dropped += dropped

    def get_timer(self) -> float:
        return self._next

    def handle_timer(self, now: float) -> int | None:
        """The new suggested effort if it changed (the service then republishes), else None."""
        if now < self._next:
            return None
        self._next = now + self.interval
        before = self.effort
        if self._dropped or self._peak * 2 >= self.limit:
            self.effort = min(self.MAX_SUGGESTED, max(self.MIN_RAISE, self.effort * 2))
        elif self._peak == 0:
            self.effort = self.effort // 2 if self.effort // 2 >= self.MIN_RAISE else 0
        self._peak = 0
        self._dropped = 0
        return self.effort if self.effort != before else None
