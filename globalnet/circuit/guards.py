"""Entry guards and vanguards-lite (Tor prop 271 and 333, simplified), sans-IO.

Why guards: with a uniformly random first hop, an adversary running a
fraction f of the relays sits at both ends of some circuit after about 1/f^2
circuits. A client that enters the network through a few long-lived guards is
either unlucky once (a bad guard) or safe for weeks. The set is small (3),
chosen from different /16s, each guard kept for 30-60 days (its own random
expiry, so the set never turns over at once), persisted in the data dir.

A guard is replaced when it expires, or when the link to it has failed
`min_failures` times in a row over at least `unreachable_for` seconds. Nothing
else counts: a guard that accepts the link but drops circuits is NOT replaced,
since an adversary on the path could otherwise push a client to new guards
(until one of its own is chosen) by killing circuits.

Vanguards-lite: hidden services and clients of services also keep a second
layer (4 relays, each for 1-12 days) for the middle hop of circuits to access
points, rendezvous points and the DHT, so the guard is not found by running
relays and watching which ones a service's circuits come from.

The core never reads a clock: callers pass `now` (wall-clock seconds, since
the set outlives the process) and get events back for the log.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..wire.records import NODE_ID_SIZE, NodeRecord, short_id
from .paths import network_counts, network_of, weighted_choice

DAY = 86400.0
GUARD_COUNT = 3
GUARD_LIFETIME = (30 * DAY, 60 * DAY)
VANGUARD_COUNT = 4
VANGUARD_LIFETIME = (1 * DAY, 12 * DAY)
#: A guard is replaced after this many consecutive link failures...
MIN_FAILURES = 5
#: ...spread over at least this long (a restart of the guard is not a death).
UNREACHABLE_FOR = 3600.0
#: A guard whose link just failed is skipped this long (doubling), then tried again.
RETRY_AFTER = 30.0
RETRY_MAX = 1800.0
MAX_STORED = 16  # per layer, when loading a file someone edited
FILE_NAME = "guards.json"


@dataclass
class Guard:
    node_id: bytes
    host: str
    port: int
    network: str
    added: float
    expires: float
    failures: int = 0  # consecutive link failures
    first_failure: float = 0.0  # when this run of failures began
    last_failure: float = 0.0

    @property
    def short(self) -> str:
        return short_id(self.node_id)

    def retry_at(self) -> float:
        if not self.failures:
            return 0.0
        return self.last_failure + min(RETRY_AFTER * 2 ** (self.failures - 1), RETRY_MAX)

    def status(self, now: float) -> str:
        if not self.failures:
            return "up"
        return "retrying" if now >= self.retry_at() else "unreachable"

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["node_id"] = self.node_id.hex()
        return data

    @classmethod
    def from_json(cls, data: object) -> Guard | None:
        """A stored guard, or None if the entry is not one (a damaged file loses that entry only)."""
        if not isinstance(data, dict):
            return None
        try:
            node_id = bytes.fromhex(str(data["node_id"]))
            guard = cls(
                node_id, str(data["host"]), int(data["port"]), str(data["network"]),
                float(data["added"]), float(data["expires"]), int(data.get("failures", 0)),
                float(data.get("first_failure", 0.0)), float(data.get("last_failure", 0.0)),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError):
            return None
        if len(node_id) != NODE_ID_SIZE or not 0 < guard.port < 65536 or not guard.host:
            return None
        return guard


@dataclass(frozen=True)
class GuardEvent:
    """A change to the set, for the log: `added` or `removed`, and why."""

    layer: str
    change: str
    node_id: bytes
    reason: str


class GuardSet:
    """One layer of guards (entry guards or vanguards); see the module docstring."""

    def __init__(
        self,
        layer: str = "guard",
        count: int = GUARD_COUNT,
        lifetime: tuple[float, float] = GUARD_LIFETIME,
        min_failures: int = MIN_FAILURES,
        unreachable_for: float = UNREACHABLE_FOR,
        rng: random.Random | None = None,
    ) -> None:
        self.layer = layer
        self.count = count
        self.lifetime = lifetime
        self.min_failures = min_failures
        self.unreachable_for = unreachable_for
        self.rng = rng or random.SystemRandom()
        self.guards: list[Guard] = []
        self.changed = False

    def get(self, node_id: bytes | None) -> Guard | None:
        return next((g for g in self.guards if g.node_id == node_id), None)

    def maintain(self, candidates: Sequence[NodeRecord], now: float, exclude: frozenset[bytes] = frozenset()) -> list[GuardEvent]:
        """Drop expired and dead guards, then fill the set from `candidates`."""
        events = []
        for guard in list(self.guards):
            reason = None
            if now >= guard.expires:
                reason = "its rotation time came"
            elif guard.failures >= self.min_failures and now - guard.first_failure >= self.unreachable_for:
                reason = f"unreachable: {guard.failures} link failures over {(now - guard.first_failure) / 60:.0f} min"
            if reason:
                self.guards.remove(guard)
                events.append(GuardEvent(self.layer, "removed", guard.node_id, reason))
        why = "replaces a removed one" if events else ("first choice" if not self.guards else "set not full")
        taken = {g.node_id for g in self.guards} | set(exclude)
        nets = {g.network for g in self.guards}
        crowding = network_counts(candidates)
        while len(self.guards) < self.count:
            pool = [r for r in candidates if r.node_id not in taken and r.addresses]
            if not pool:
                break
            diverse = [r for r in pool if network_of(r) not in nets]
            record = weighted_choice(diverse or pool, crowding, self.rng)
            host, port = record.addresses[0]
            low, high = self.lifetime
            guard = Guard(record.node_id, host, port, network_of(record), now, now + self.rng.uniform(low, high))
            self.guards.append(guard)
            taken.add(record.node_id)
            nets.add(guard.network)
            events.append(GuardEvent(self.layer, "added", record.node_id, why))
        if events:
            self.changed = True
        return events

    def refresh_addresses(self, candidates: Sequence[NodeRecord]) -> None:
        """A guard that moved (a newer record with another address) is followed there."""
        by_id = {r.node_id: r for r in candidates if r.addresses}
        for guard in self.guards:
            record = by_id.get(guard.node_id)
            if record is not None and (guard.host, guard.port) != record.addresses[0]:
                guard.host, guard.port = record.addresses[0]
                self.changed = True

    def choose(self, now: float, exclude: set[bytes] | frozenset[bytes] = frozenset()) -> Guard | None:
        """A guard for the next circuit: one not resting after a link failure if any;
        else the one that rested longest (never a non-guard: that is what an
        adversary blocking our guards would want)."""
        allowed = [g for g in self.guards if g.node_id not in exclude]
        if not allowed:
            return None
        ready = [g for g in allowed if now >= g.retry_at()]
        if ready:
            return self.rng.choice(ready)
        return min(allowed, key=Guard.retry_at)

    def link_succeeded(self, node_id: bytes | None) -> None:
        guard = self.get(node_id)
        if guard is not None and guard.failures:
            guard.failures = 0
            guard.first_failure = 0.0
            self.changed = True

    def link_failed(self, node_id: bytes | None, now: float) -> None:
        """Only a failure to reach the guard at all (no link) counts, never a circuit failure."""
        guard = self.get(node_id)
        if guard is None:
            return
        if not guard.failures:
            guard.first_failure = now
        guard.failures += 1
        guard.last_failure = now
        self.changed = True

    def to_json(self) -> list[dict[str, object]]:
        return [g.to_json() for g in self.guards]

    def load_json(self, data: object) -> None:
        entries = data if isinstance(data, list) else []
        loaded = (Guard.from_json(item) for item in entries[:MAX_STORED])
        self.guards = [g for g in loaded if g is not None][: self.count]

    def rows(self, now: float) -> list[dict[str, object]]:
        """For the console: one row per guard."""
        return [
            {
                "layer": self.layer,
                "id": g.short,
                "added": g.added,
                "expires": g.expires,
                "status": g.status(now),
                "failures": g.failures,
            }
            for g in self.guards
        ]


class GuardStore:
    """Both layers, persisted together in `guards.json` (temp + fsync + rename, 0600)."""

    def __init__(self, data_dir: Path | None, guards: GuardSet | None = None, vanguards: GuardSet | None = None) -> None:
        self.path = data_dir / FILE_NAME if data_dir is not None else None
        self.guards = guards or GuardSet()
        self.vanguards = vanguards or GuardSet("vanguard", VANGUARD_COUNT, VANGUARD_LIFETIME)

    @property
    def changed(self) -> bool:
        return self.guards.changed or self.vanguards.changed

    def load(self) -> int:
        """Read the saved sets; a missing or damaged file means starting afresh. Returns guards loaded."""
        if self.path is None:
            return 0
        try:
            data = json.loads(self.path.read_bytes()[:65536])
        except (OSError, ValueError):
            return 0
        if not isinstance(data, dict):
            return 0
        self.guards.load_json(data.get("guards"))
        self.vanguards.load_json(data.get("vanguards"))
        return len(self.guards.guards)

    def save(self) -> None:
        if self.path is None:
            return
        body = json.dumps({"version": 1, "guards": self.guards.to_json(), "vanguards": self.vanguards.to_json()}, indent=1)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self.guards.changed = self.vanguards.changed = False


__all__ = ["FILE_NAME", "Guard", "GuardEvent", "GuardSet", "GuardStore"]
