"""Entry guards and second-layer guards (vanguards-lite), sans-IO.

Theory of operation (after Tor's prop 271 and vanguards-lite, prop 333).
Without guards every circuit's first hop is drawn afresh, so an adversary
who runs a fraction f of the relays is the first hop of some circuit within
about 1/f circuits, and at both ends within about 1/f^2: with enough
connections, a certainty. A client instead keeps a few long-lived entry
guards and starts every circuit at one of them: if none of them is hostile,
no circuit of this client ever has a hostile first hop; if one is, it is for
weeks, not for every new connection. The same holds one layer in for the
circuits of hidden services and their clients (access points, rendezvous,
the DHT), whose middle hop an adversary could otherwise walk to the guard
(a guard-discovery attack): those use a small set of second-layer guards
that rotate within days.

What replaces a guard, and what does not:
- Age: each guard is kept for a random lifetime (30 to 60 days for entry
  guards, 1 to 12 days for second-layer ones), so rotation is on a schedule
  an observer cannot align with.
- Being unreachable: only failures to *link* to the guard count (the node
  feeds `link_failed` / `link_ok`), never circuits that fail or are cut
  through it. A guard is replaced once it has been unreachable for
  `replace_after` seconds and at least MIN_FAILURES attempts in a row; a
  single success clears that. So an adversary who drops our circuits (or
  whom we reach only through such a guard) cannot make us rotate to a guard
  of its choice by dropping traffic; it would have to make the guard
  unreachable at the link layer for that long.
- While a guard is down, circuits use the other guards of the set.

Choice: relays from distinct /16 networks (IPv6: /32), non-exit relays
preferred for entry guards (an exit's bandwidth is scarce, and a node seen
as both our guard and our exit learns both ends). The set is plain data:
`to_json()` / `from_json()`; the node writes it atomically to its data dir.
Every decision takes `now` and an RNG; nothing here reads a clock.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from ..wire.records import NodeRecord, short_id
from .paths import network_of

DAY = 86400.0
#: Attempts in a row that must fail before unreachability counts at all.
MIN_FAILURES = 3
MAX_GUARDS = 16  # bound on what a guards file may hold


@dataclass(frozen=True)
class GuardPolicy:
    """How many guards of one layer, how long they live, when they are given up."""

    layer: str  # "entry" or "middle": for logs and the console
    size: int
    lifetime: tuple[float, float]  # seconds, drawn uniformly per guard
    replace_after: float  # unreachable this long (and MIN_FAILURES attempts): replaced
    prefer_non_exit: bool
    retry_after: float = 60.0  # a down guard is dialled again after this, doubling per failure


ENTRY = GuardPolicy("entry", 3, (30 * DAY, 60 * DAY), 3600.0, True)
MIDDLE = GuardPolicy("middle", 4, (1 * DAY, 12 * DAY), 3600.0, False)
MAX_RETRY = 1800.0


@dataclass
class Guard:
    node_id: bytes
    added: float
    expires: float
    failures: int = 0  # link attempts that failed in a row
    down_since: float | None = None  # first of those failures
    last_ok: float | None = None
    last_try: float | None = None  # the last failed attempt (for the retry back-off)

    def usable(self) -> bool:
        return self.failures == 0

    def as_row(self, now: float) -> dict[str, object]:
        return {
            "guard": short_id(self.node_id),
            "node_id": self.node_id.hex(),
            "added_days_ago": round((now - self.added) / DAY, 1),
            "expires_in_days": round((self.expires - now) / DAY, 1),
            "status": "up" if self.usable() else f"down {int(now - (self.down_since or now))} s",
            "failures": self.failures,
        }


@dataclass(frozen=True)
class GuardChange:
    """Something the node should log (and persist): a guard added or replaced."""

    layer: str
    added: bytes | None
    removed: bytes | None
    reason: str


@dataclass
class GuardSet:
    policy: GuardPolicy
    guards: list[Guard] = field(default_factory=list)

    # -- keeping the set full and fresh --------------------------------------
    def update(self, relays: Sequence[NodeRecord], now: float, rng: random.Random) -> list[GuardChange]:
        """Drop expired and long-unreachable guards, then fill the set from `relays`."""
        changes: list[GuardChange] = []
        for guard in list(self.guards):
            reason = self._why_replace(guard, now)
            if reason is not None:
                self.guards.remove(guard)
                changes.append(GuardChange(self.policy.layer, None, guard.node_id, reason))
        while len(self.guards) < self.policy.size:
            pick = self._choose(relays, rng)
            if pick is None:
                break
            low, high = self.policy.lifetime
            self.guards.append(Guard(pick.node_id, now, now + rng.uniform(low, high)))
            removed = next((c for c in changes if c.added is None and c.removed is not None), None)
            if removed is not None:
                changes.remove(removed)
                changes.append(GuardChange(self.policy.layer, pick.node_id, removed.removed, removed.reason))
            else:
                changes.append(GuardChange(self.policy.layer, pick.node_id, None, "new guard"))
        return changes

    def _why_replace(self, guard: Guard, now: float) -> str | None:
        if now >= guard.expires:
            return f"rotated after {round((now - guard.added) / DAY, 1)} days"
        if (
            guard.failures >= MIN_FAILURES
            and guard.down_since is not None
            and now - guard.down_since >= self.policy.replace_after
        ):
            return f"unreachable for {int(now - guard.down_since)} s ({guard.failures} attempts in a row)"
        return None

    def _choose(self, relays: Sequence[NodeRecord], rng: random.Random) -> NodeRecord | None:
        taken = {g.node_id for g in self.guards}
        nets = {network_of(r) for r in relays if r.node_id in taken}
        pool = [r for r in relays if r.node_id not in taken and r.addresses]
        if not pool:
            return None
        for prefer in (
            lambda r: network_of(r) not in nets and not (self.policy.prefer_non_exit and r.is_exit),
            lambda r: network_of(r) not in nets,
            lambda r: not (self.policy.prefer_non_exit and r.is_exit),
        ):
            preferred = [r for r in pool if prefer(r)]
            if preferred:
                return rng.choice(preferred)
        return rng.choice(pool)

    # -- what the node reports ---------------------------------------------------
    def link_failed(self, node_id: bytes, now: float) -> bool:
        """A link to `node_id` could not be made; True if it is one of ours."""
        guard = self._find(node_id)
        if guard is None:
            return False
        if guard.failures == 0:
            guard.down_since = now
        guard.failures += 1
        guard.last_try = now
        return True

    def link_ok(self, node_id: bytes, now: float) -> None:
        guard = self._find(node_id)
        if guard is not None:
            guard.failures = 0
            guard.down_since = None
            guard.last_ok = now

    def due_for_retry(self, now: float) -> list[bytes]:
        """Down guards to dial again now (a link attempt, not a circuit), backing off per failure."""
        due = []
        for g in self.guards:
            if g.failures and g.down_since is not None:
                wait = min(MAX_RETRY, self.policy.retry_after * 2 ** (g.failures - 1))
                last = g.last_try if g.last_try is not None else g.down_since
                if now - last >= wait:
                    due.append(g.node_id)
        return due

    # -- choosing for a circuit ------------------------------------------------
    def candidates(self, rng: random.Random, usable: Callable[[bytes], bool] | None = None) -> list[bytes]:
        """Our guards in the order to try them for one circuit: reachable ones first, shuffled."""
        up = [g.node_id for g in self.guards if g.usable() and (usable is None or usable(g.node_id))]
        down = [g.node_id for g in self.guards if not g.usable() and (usable is None or usable(g.node_id))]
        rng.shuffle(up)
        rng.shuffle(down)
        return up + down

    def _find(self, node_id: bytes) -> Guard | None:
        return next((g for g in self.guards if g.node_id == node_id), None)

    def __contains__(self, node_id: bytes) -> bool:
        return self._find(node_id) is not None

    def rows(self, now: float) -> list[dict[str, object]]:
        return [{"layer": self.policy.layer, **g.as_row(now)} for g in self.guards]

    # -- on disk -----------------------------------------------------------------
    def to_json(self) -> list[dict[str, object]]:
        return [{**asdict(g), "node_id": g.node_id.hex()} for g in self.guards]

    @classmethod
    def from_json(cls, policy: GuardPolicy, rows: object) -> GuardSet:
        """A set from what `to_json` wrote; anything malformed raises ValueError."""
        if not isinstance(rows, list) or len(rows) > MAX_GUARDS:
            raise ValueError("guards: expected a list of at most 16 guards")
        guards = []
        for row in rows:
            if not isinstance(row, dict):
                raise ValueError("guards: each guard is an object")  # noqa: TRY004 (one error type for a bad file)
            try:
                node_id = bytes.fromhex(str(row["node_id"]))
                down = row.get("down_since")
                last = row.get("last_ok")
                guard = Guard(
                    node_id,
                    float(row["added"]),
                    float(row["expires"]),
                    int(row.get("failures", 0)),
                    None if down is None else float(down),
                    None if last is None else float(last),
                    None if row.get("last_try") is None else float(row["last_try"]),  # type: ignore[arg-type]
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"guards: a malformed entry ({exc})") from None
            if len(node_id) != 20 or guard.failures < 0:
                raise ValueError("guards: a malformed entry")
            guards.append(guard)
        return cls(policy, guards[: policy.size])


def dump_layers(entry: GuardSet, middle: GuardSet) -> bytes:
    return json.dumps({"version": 1, "entry": entry.to_json(), "middle": middle.to_json()}, indent=1).encode()


def load_layers(data: bytes) -> tuple[GuardSet, GuardSet]:
    """Both layers from a guards file; ValueError when it is not one."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"guards: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("version") != 1:
        raise ValueError("guards: unknown version")
    return GuardSet.from_json(ENTRY, doc.get("entry", [])), GuardSet.from_json(MIDDLE, doc.get("middle", []))
