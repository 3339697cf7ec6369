"""Disjoint-path lookups (S/Kademlia, Baumgart & Mies 2007, section 4.4), as a sans-IO core.

Why: a plain Kademlia lookup follows whichever nodes answer closest to the
key. A Sybil that answers with only other Sybils (ground next to the key)
captures the whole crawl, and the value is never seen. Here a lookup runs d
independent crawls ("paths"). The initial contacts are dealt round-robin,
closest first, so every path starts near the key; paths may hear of the
same nodes, but a node is queried by the first path that asks it and never by
another, so the paths share no queried node and one liar can steer one path
at most. The result is the
valid value with the highest sequence number over all paths: a path that a
liar fed an old (but validly signed) value cannot hide the newer one.

The core only keeps state: `next_queries()` says which node to ask on which
path, the shell asks (dht/participant.py over links; bench/dht_adversary.py
over a model) and feeds back `answer_nodes`, `answer_value` or
`answer_failed`. Values it is fed must already be validated (the shell runs
values.validate_value; a forged value is an `answer_failed`).

With a DiversityPolicy, the k closest a path follows (and `closest`, where a
publish stores) hold at most 2 nodes per /16 while other networks are known:
Sybils ground next to a key from a few networks cannot fill them.

A path ends when the k closest live nodes it knows have all answered, when
it found a value, or after MAX_QUERIES_PER_PATH queries (liars could
otherwise feed it endless fresh ids).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..netdiversity import DiversityPolicy
from .values import ValidValue

PATHS = 3
MAX_QUERIES_PER_PATH = 64


@dataclass(frozen=True)
class Contact:
    node_id: bytes
    host: str
    port: int


@dataclass(frozen=True)
class Query:
    path: int
    contact: Contact


@dataclass
class _Path:
    known: dict[bytes, Contact] = field(default_factory=dict)
    asked: set[bytes] = field(default_factory=set)
    answered: set[bytes] = field(default_factory=set)
    failed: set[bytes] = field(default_factory=set)
    inflight: set[bytes] = field(default_factory=set)
    value: ValidValue | None = None
    rounds: int = 0
    done: bool = False


class DisjointLookup:
    """State of one lookup over `paths` node-disjoint crawls towards `key`."""

    def __init__(
        self,
        key: bytes,
        seeds: Iterable[Contact],
        own_id: bytes | None = None,
        paths: int = PATHS,
        k: int = 20,
        alpha: int = 3,
        want_value: bool = True,
        policy: DiversityPolicy | None = None,
    ) -> None:
        if paths < 1:
            raise ValueError("a lookup needs at least one path")
        self.key = key
        self._target = int.from_bytes(key, "big")
        self.k, self.alpha, self.want_value = k, alpha, want_value
        self._own_id = own_id
        self.policy = policy
        self._paths = [_Path() for _ in range(paths)]
        self._owner: dict[bytes, int] = {}  # node id -> the one path that queried it
        if own_id is not None:
            self._owner[own_id] = -1
        ordered = sorted({c.node_id: c for c in seeds}.values(), key=self._distance)
        for i, contact in enumerate(ordered):
            self._learn(i % paths, contact)

    def _distance(self, contact: Contact) -> int:
        return int.from_bytes(contact.node_id, "big") ^ self._target

    def _learn(self, index: int, contact: Contact) -> None:
        if self._owner.get(contact.node_id, index) == index:  # not us, not queried by another path
            self._paths[index].known.setdefault(contact.node_id, contact)

    def _frontier(self, index: int) -> list[Contact]:
        """The k closest nodes a path knows that have not failed and no other path has queried
        (with a policy: at most 2 per /16 among them, see netdiversity.diverse_closest)."""
        path = self._paths[index]
        live = [c for nid, c in path.known.items() if nid not in path.failed and self._owner.get(nid, index) == index]
        return self._closest_of(live, self.k)

    def _closest_of(self, contacts: list[Contact], n: int) -> list[Contact]:
        if self.policy is None:
            return heapq.nsmallest(n, contacts, key=self._distance)
        return self.policy.diverse_closest(sorted(contacts, key=self._distance), n, lambda c: c.host)

    # -- what to ask ---------------------------------------------------------
    def next_queries(self) -> list[Query]:
        queries = []
        for index, path in enumerate(self._paths):
            if path.done:
                continue
            fresh = [c for c in self._frontier(index) if c.node_id not in path.asked]
            room = self.alpha - len(path.inflight)
            budget = MAX_QUERIES_PER_PATH - len(path.asked)
            batch = fresh[: max(0, min(room, budget))]
            for contact in batch:
                self._owner[contact.node_id] = index  # disjointness: no other path will ask it
                path.asked.add(contact.node_id)
                path.inflight.add(contact.node_id)
                queries.append(Query(index, contact))
            if batch:
                path.rounds += 1
            elif not path.inflight:
                path.done = True  # the k closest answered (or failed), or the budget is spent
        return queries

    # -- what came back --------------------------------------------------------
    def answer_nodes(self, query: Query, contacts: Iterable[Contact]) -> None:
        path = self._paths[query.path]
        path.inflight.discard(query.contact.node_id)
        path.answered.add(query.contact.node_id)
        for contact in contacts:
            self._learn(query.path, contact)

    def answer_value(self, query: Query, value: ValidValue) -> None:
        """A validated value: this path is finished (its value counts if it is the newest)."""
        path = self._paths[query.path]
        path.inflight.discard(query.contact.node_id)
        path.answered.add(query.contact.node_id)
        if path.value is None or value.seq > path.value.seq:
            path.value = value
        if self.want_value:
            path.done = True

    def answer_failed(self, query: Query) -> None:
        """No answer, a malformed one, or a forged value: that node is no help."""
        path = self._paths[query.path]
        path.inflight.discard(query.contact.node_id)
        path.failed.add(query.contact.node_id)

    # -- results -----------------------------------------------------------------
    @property
    def done(self) -> bool:
        return all(p.done for p in self._paths)

    def result(self) -> ValidValue | None:
        """The valid value with the highest sequence number any path found."""
        values = [p.value for p in self._paths if p.value is not None]
        return max(values, key=lambda v: v.seq) if values else None

    def closest(self, n: int) -> list[Contact]:
        """The n closest nodes that answered, over all paths (where a publish stores)."""
        answered = [c for p in self._paths for nid, c in p.known.items() if nid in p.answered]
        return self._closest_of(answered, n)

    def path_rounds(self) -> list[int]:
        return [p.rounds for p in self._paths]

    def asked(self) -> int:
        return sum(len(p.asked) for p in self._paths)

    def failures(self) -> int:
        return sum(len(p.failed) for p in self._paths)
