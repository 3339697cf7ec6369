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
- Being unknown: a guard whose record the node no longer has (it cannot be
  dialled) for DROP_RESERVE_AFTER is replaced.
- While a guard is down, circuits use the other guards of the set.

When every guard of the set is down (after Tor's guard-spec: sampled,
primary and confirmed guards, and its retry schedules): the set above is
the *primary* guards; behind it the node keeps a bounded *sample* of
reserve guards, persisted with the rest. Whenever fewer than `size` sampled
guards are usable (dialable: the node knows their record, and not known to
be down), the sample grows by new relays, but never beyond `sample_cap`
guards in all (primaries included). A circuit tries, in order: the usable
primaries (shuffled), the usable reserves in sample order (confirmed ones,
those we have linked to, first), then the down primaries and the down
reserves. So when the primaries are all unreachable (say, they died while
the node was down) circuits start at a reserve at once, and the down
primaries are dialled again on their back-off (`due_for_retry`); the moment
one answers it is usable and first again. Reserves are never probed (they
are tried when needed). A primary given up (expired or long unreachable) is
replaced by a usable reserve, confirmed ones first, before any new relay.

Why the cap (12 entry, 8 second-layer): each new guard is one more relay
that sees us as its direct client. An adversary who can make our guards
look down (blocking links for a moment) can at most push us onto the
sample, not onto an open-ended stream of guards of its choosing: once the
sample is full, the node retries the guards it has instead of sampling
more. Tor caps its sample at 60 of several thousand guards (20 %); our
networks are far smaller, so the cap is absolute and small.
Reserves leave the sample only when they expire, or when unreachable
(MIN_FAILURES attempts in a row) or unknown to the node for DROP_RESERVE_AFTER.

Choice: relays from distinct /16 networks (IPv6: /32), non-exit relays
preferred for entry guards (an exit's bandwidth is scarce, and a node seen
as both our guard and our exit learns both ends). The set is plain data:
`to_json()` / `from_json()`; the node writes it atomically to its data dir.
Every decision takes `now` and an RNG; nothing here reads a clock.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field

from ..wire.records import NodeRecord, short_id
from .paths import network_of

DAY = 86400.0
#: Attempts in a row that must fail before unreachability counts at all.
MIN_FAILURES = 3
MAX_GUARDS = 16  # bound on what a guards file may hold (per list)
#: A reserve unreachable (MIN_FAILURES attempts) or unknown this long leaves the sample.
DROP_RESERVE_AFTER = DAY


@dataclass(frozen=True)
class GuardPolicy:
    """How many guards of one layer, how long they live, when they are given up."""

    layer: str  # "entry" or "middle": for logs and the console
    size: int
    lifetime: tuple[float, float]  # seconds, drawn uniformly per guard
    replace_after: float  # unreachable this long (and MIN_FAILURES attempts): replaced
    prefer_non_exit: bool
    retry_after: float = 60.0  # a down guard is dialled again after this, doubling per failure
    sample_cap: int = 12  # primaries + reserves: at most this many guards ever sampled at once


ENTRY = GuardPolicy("entry", 3, (30 * DAY, 60 * DAY), 3600.0, True)
MIDDLE = GuardPolicy("middle", 4, (1 * DAY, 12 * DAY), 3600.0, False, sample_cap=8)
MAX_RETRY = 600.0  # Tor retries a down primary every 10 minutes (guard-spec PRIMARY_GUARDS_RETRY_SCHED)


@dataclass
class Guard:
    node_id: bytes
    added: float
    expires: float
    failures: int = 0  # link attempts that failed in a row
    down_since: float | None = None  # first of those failures
    last_ok: float | None = None
    last_try: float | None = None  # the last failed attempt (for the retry back-off)
    unlisted_since: float | None = None  # first update that did not know its record


    def usable(self) -> bool:
        return self.failures == 0

    def confirmed(self) -> bool:
        """We have linked to it at least once (Tor's confirmed guards come first)."""
        return self.last_ok is not None

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
    guards: list[Guard] = field(default_factory=list)  # the primary guards
    reserves: list[Guard] = field(default_factory=list)  # the rest of the sample, in the order sampled

    # -- keeping the sample full and fresh ---------------------------------------
    def update(
        self, relays: Sequence[NodeRecord], now: float, rng: random.Random, known: Collection[bytes] = ()
    ) -> list[GuardChange]:
        """Drop expired and long-unreachable guards, fill the primaries (from the sample first),
        then grow the sample while fewer than `size` of its guards are usable (up to the cap).
        `known`: guards the caller can still dial although `relays` no longer lists them."""
        listed = {r.node_id for r in relays if r.addresses} | set(known)
        for guard in self.sample():
            if guard.node_id in listed:
                guard.unlisted_since = None
            elif guard.unlisted_since is None:
                guard.unlisted_since = now
        vacated: list[GuardChange] = []  # primaries given up: paired with what takes their place
        for guard in list(self.guards):
            reason = self._why_replace(guard, now)
            if reason is not None:
                self.guards.remove(guard)
                vacated.append(GuardChange(self.policy.layer, None, guard.node_id, reason))
        changes: list[GuardChange] = []
        for guard in list(self.reserves):
            reason = self._why_drop_reserve(guard, now)
            if reason is not None:
                self.reserves.remove(guard)
                changes.append(GuardChange(self.policy.layer, None, guard.node_id, reason))
        while len(self.guards) < self.policy.size:
            promoted = self._promote(listed)
            added = promoted or self._sample(relays, now, rng)
            if added is None:
                break
            self.guards.append(added)
            if vacated:
                old = vacated.pop(0)
                changes.append(GuardChange(self.policy.layer, added.node_id, old.removed, old.reason))
            else:
                why = "promoted from the sample" if promoted else "new guard"
                changes.append(GuardChange(self.policy.layer, added.node_id, None, why))
        changes = vacated + changes  # given up with nothing to take their place (no relay known)
        while self.usable_count(listed) < self.policy.size and len(self.sample()) < self.policy.sample_cap:
            reserve = self._sample(relays, now, rng)
            if reserve is None:
                break
            self.reserves.append(reserve)
            changes.append(GuardChange(self.policy.layer, reserve.node_id, None, "sampled: too few usable guards"))
        return changes

    def usable_count(self, listed: Collection[bytes]) -> int:
        """Sampled guards we can dial and do not know to be down."""
        return sum(1 for g in self.sample() if g.usable() and g.node_id in listed)

    def _promote(self, listed: Collection[bytes]) -> Guard | None:
        """The reserve that becomes a primary: usable ones, confirmed first, in sample order."""
        usable = [g for g in self.reserves if g.usable() and g.node_id in listed]
        pick = next((g for g in usable if g.confirmed()), None) or next(iter(usable), None)
        if pick is not None:
            self.reserves.remove(pick)
        return pick

    def _sample(self, relays: Sequence[NodeRecord], now: float, rng: random.Random) -> Guard | None:
        pick = self._choose(relays, rng)
        if pick is None:
            return None
        low, high = self.policy.lifetime
        return Guard(pick.node_id, now, now + rng.uniform(low, high))

    def _why_replace(self, guard: Guard, now: float) -> str | None:
        if now >= guard.expires:
            return f"rotated after {round((now - guard.added) / DAY, 1)} days"
        if (
            guard.failures >= MIN_FAILURES
            and guard.down_since is not None
            and now - guard.down_since >= self.policy.replace_after
        ):
            return f"unreachable for {int(now - guard.down_since)} s ({guard.failures} attempts in a row)"
        if guard.unlisted_since is not None and now - guard.unlisted_since >= DROP_RESERVE_AFTER:
            return f"unknown for {int(now - guard.unlisted_since)} s"
        return None

    def _why_drop_reserve(self, guard: Guard, now: float) -> str | None:
        if now >= guard.expires:
            return "reserve expired"
        if guard.failures >= MIN_FAILURES and guard.down_since is not None and now - guard.down_since >= DROP_RESERVE_AFTER:
            return f"reserve unreachable for {int(now - guard.down_since)} s"
        if guard.unlisted_since is not None and now - guard.unlisted_since >= DROP_RESERVE_AFTER:
            return f"reserve unknown for {int(now - guard.unlisted_since)} s"
        return None

    def _choose(self, relays: Sequence[NodeRecord], rng: random.Random) -> NodeRecord | None:
        taken = {g.node_id for g in self.sample()}
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
        """A link to `node_id` could not be made; True if it is one of ours (primary or reserve)."""
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
        """Down primaries to dial again now (a link attempt, not a circuit), backing off per
        failure up to MAX_RETRY: a primary that comes back is preferred again within that.
        Reserves are not probed: they are tried when a circuit needs them."""
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
        """The guards in the order to try them for one circuit: usable primaries (shuffled),
        usable reserves (confirmed first, then in sample order), down primaries, down reserves;
        never a guard the last `update` did not know (no record: it cannot be dialled)."""
        def ok(g: Guard) -> bool:
            return g.unlisted_since is None and (usable is None or usable(g.node_id))

        up = [g.node_id for g in self.guards if g.usable() and ok(g)]
        down = [g.node_id for g in self.guards if not g.usable() and ok(g)]
        rng.shuffle(up)
        rng.shuffle(down)
        spare = sorted((g for g in self.reserves if g.usable() and ok(g)), key=lambda g: not g.confirmed())
        spare_down = [g.node_id for g in self.reserves if not g.usable() and ok(g)]
        return up + [g.node_id for g in spare] + down + spare_down

    def sample(self) -> list[Guard]:
        """Every sampled guard: the primaries, then the reserves."""
        return self.guards + self.reserves

    def is_primary(self, node_id: bytes) -> bool:
        return any(g.node_id == node_id for g in self.guards)

    def _find(self, node_id: bytes) -> Guard | None:
        return next((g for g in self.sample() if g.node_id == node_id), None)

    def __contains__(self, node_id: bytes) -> bool:
        return self._find(node_id) is not None

    def rows(self, now: float) -> list[dict[str, object]]:
        return [{"layer": self.policy.layer, **g.as_row(now)} for g in self.guards] + [
            {"layer": f"{self.policy.layer} reserve", **g.as_row(now)} for g in self.reserves
        ]

    # -- on disk -----------------------------------------------------------------
    def to_json(self) -> list[dict[str, object]]:
        return _guards_to_json(self.guards)

    def reserves_to_json(self) -> list[dict[str, object]]:
        return _guards_to_json(self.reserves)

    @classmethod
    def from_json(cls, policy: GuardPolicy, rows: object, reserve_rows: object = None) -> GuardSet:
        """A set from what `to_json` / `reserves_to_json` wrote; anything malformed raises ValueError."""
        guards = _guards_from_json(rows)[: policy.size]
        taken = {g.node_id for g in guards}
        reserves = [g for g in _guards_from_json([] if reserve_rows is None else reserve_rows) if g.node_id not in taken]
        return cls(policy, guards, reserves[: max(0, policy.sample_cap - len(guards))])


def _guards_to_json(guards: list[Guard]) -> list[dict[str, object]]:
    return [{**asdict(g), "node_id": g.node_id.hex()} for g in guards]


def _guards_from_json(rows: object) -> list[Guard]:
    if not isinstance(rows, list) or len(rows) > MAX_GUARDS:
        raise ValueError("guards: expected a list of at most 16 guards")
    guards: list[Guard] = []
    for row in rows:
        if not isinstance(row, dict):
            raise ValueError("guards: each guard is an object")  # noqa: TRY004 (one error type for a bad file)
        try:
            node_id = bytes.fromhex(str(row["node_id"]))
            guard = Guard(
                node_id,
                float(row["added"]),
                float(row["expires"]),
                int(row.get("failures", 0)),
                _optional_time(row, "down_since"),
                _optional_time(row, "last_ok"),
                _optional_time(row, "last_try"),
                _optional_time(row, "unlisted_since"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"guards: a malformed entry ({exc})") from None
        if len(node_id) != 20 or guard.failures < 0 or any(g.node_id == node_id for g in guards):
            raise ValueError("guards: a malformed entry")
        guards.append(guard)
    return guards


def _optional_time(row: dict[str, object], key: str) -> float | None:
    value = row.get(key)
    return None if value is None else float(value)  # type: ignore[arg-type]


def dump_layers(entry: GuardSet, middle: GuardSet) -> bytes:
    return json.dumps(
        {"version": 1, "entry": entry.to_json(), "middle": middle.to_json(),
         "entry_reserves": entry.reserves_to_json(), "middle_reserves": middle.reserves_to_json()},
        indent=1,
    ).encode()


def load_layers(data: bytes) -> tuple[GuardSet, GuardSet]:
    """Both layers from a guards file; ValueError when it is not one (a file without reserves,
    written before the sample existed, is one)."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"guards: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("version") != 1:
        raise ValueError("guards: unknown version")
    return (
        GuardSet.from_json(ENTRY, doc.get("entry", []), doc.get("entry_reserves", [])),
        GuardSet.from_json(MIDDLE, doc.get("middle", []), doc.get("middle_reserves", [])),
    )
