"""A mirror's schedule (sans-IO): when to (re)publish its record, when to sync, when to announce.

Why a core: the rules are easy to get subtly wrong in an asyncio loop (a
record that lapses at a period boundary, an update heard while a sync runs,
a failed publish retried in a busy loop), and they are testable exactly on a
fake clock. The shell feeds what happened and runs the actions this returns.

- The record is published for the current period, and also for the next one
  when the boundary is closer than a record's lifetime (clients may already
  ask for it), and again REPUBLISH_BEFORE its expiry; a failure is retried
  after RETRY; a record the node was not ready to publish (no descriptor or
  no whole copy yet) is tried again after NOT_READY_RECHECK.
- A sync runs at start, when an update with a higher seq is heard (at once),
  while the held seq is below the highest heard (every RETRY), and otherwise
  every SYNC_INTERVAL (a visit to the other mirrors in case a broadcast was missed).
- A publisher announces its seq (a broadcast) once its record is out, and again
  to the peers it did not reach (none known yet, or a session failed) every
  RETRY, ANNOUNCE_TRIES times at most.
"""

from __future__ import annotations

from dataclasses import dataclass

PERIOD = 24 * 3600  # = service/descriptor.PERIOD: records are blinded per period like descriptors
RECORD_LIFETIME = 3 * 3600
REPUBLISH_BEFORE = 1800.0
RETRY = 5.0
#: How soon a record is tried again when the node was not ready to publish it (the service's
#: descriptor or a whole copy still missing): a local check, no network, so it may be prompt.
NOT_READY_RECHECK = 1.0
SYNC_INTERVAL = 600.0
ANNOUNCE_TRIES = 12  # a minute of retries while no peer mirror is reachable
VERIFY_AFTER = 8.0  # after publishing, read our slot back once: another mirror may have taken it
#: a record's seq and expiry are rounded down to this: exact ones (ms) would tell a DHT node that two
#: records written the same millisecond, e.g. the records of two sites one node mirrors, come from one node
RECORD_GRAIN = 600


@dataclass(frozen=True)
class PublishRecord:
    periods: tuple[int, ...]
    expires: int
    seq: int  # grows with every publish by one record key (coarse time: RECORD_GRAIN)


@dataclass(frozen=True)
class VerifyRecord:
    period: int


@dataclass(frozen=True)
class Sync:
    pass


@dataclass(frozen=True)
class Announce:
    seq: int


Action = PublishRecord | VerifyRecord | Sync | Announce


class MirrorCore:
    def __init__(self, now: float, held_seq: int = 0, announce_seq: int = 0) -> None:
        self.held_seq = held_seq
        self.heard_seq = held_seq
        self._announce = announce_seq  # a publisher's new seq, until a peer mirror took it
        self._record_due: float | None = now
        self._verify_due: float | None = None
        self._verify_period = 0
        self._sync_due: float | None = now
        self._syncing = False
        self._announce_due: float | None = None
        self._announce_tries = 0
        self.record_expires = 0

    # -- what happened ------------------------------------------------------------
    def record_published(self, now: float, period: int, expires: int) -> None:
        self.record_expires = expires
        boundary = (period + 1) * PERIOD
        self._record_due = min(expires - REPUBLISH_BEFORE, boundary - RECORD_LIFETIME + 1) if boundary - now > RECORD_LIFETIME else expires - REPUBLISH_BEFORE
        self._record_due = max(self._record_due, now + RETRY)
        if self._verify_due is None:
            self._verify_due, self._verify_period = now + VERIFY_AFTER, period
        if self._announce and self._announce_due is None:
            self._announce_due = now

    def record_failed(self, now: float) -> None:
        self._record_due = now + RETRY

    def record_not_ready(self, now: float) -> None:
        """Nothing was sent (no descriptor or no whole copy yet): look again soon, not after RETRY."""
        self._record_due = now + NOT_READY_RECHECK

    def slot_lost(self, now: float) -> None:
        """Our slot holds another mirror's record: publish again (the shell picks another variant)."""
        self._record_due = now
        self._verify_due = None

    def slot_kept(self) -> None:
        self._verify_due = None

    def update_heard(self, seq: int, now: float) -> bool:
        """A verified broadcast says the site is at `seq`; True if that is news (sync now)."""
        if seq <= self.heard_seq:
            return False
        self.heard_seq = seq
        self._sync_due = now
        return True

    def sync_started(self) -> None:
        self._syncing = True
        self._sync_due = None

    def sync_done(self, now: float, held_seq: int, complete: bool) -> None:
        self._syncing = False
        self.held_seq = held_seq
        self.heard_seq = max(self.heard_seq, held_seq)
        behind = held_seq < self.heard_seq or not complete or held_seq == 0
        self._sync_due = now + (RETRY if behind else SYNC_INTERVAL)

    def announce(self, seq: int) -> None:
        """The publisher signed `seq`: announce it once the record is out."""
        self._announce, self._announce_tries = seq, 0
        self.held_seq = self.heard_seq = max(self.held_seq, seq)
        if self.record_expires:
            self._announce_due = 0.0

    def announced(self, now: float, everyone: bool) -> None:
        """`everyone`: every peer mirror known took the message; else the shell retries those that did not."""
        self._announce_tries += 1
        if everyone or self._announce_tries >= ANNOUNCE_TRIES:
            self._announce, self._announce_due = 0, None  # the rest find the seq when they sync
        else:
            self._announce_due = now + RETRY

    # -- timers -------------------------------------------------------------------
    def get_timer(self) -> float | None:
        due = [t for t in (self._record_due, self._verify_due, self._sync_due, self._announce_due) if t is not None]
        return min(due, default=None)

    def handle_timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        if self._record_due is not None and self._record_due <= now:
            self._record_due = None  # the shell reports the outcome
            period = int(now // PERIOD)
            periods = (period, period + 1) if (period + 1) * PERIOD - now < RECORD_LIFETIME else (period,)
            coarse = int(now) // RECORD_GRAIN * RECORD_GRAIN
            actions.append(PublishRecord(periods, coarse + RECORD_LIFETIME, coarse * 1000))
        if self._verify_due is not None and self._verify_due <= now:
            self._verify_due = None
            actions.append(VerifyRecord(self._verify_period))
        if self._sync_due is not None and self._sync_due <= now and not self._syncing:
            actions.append(Sync())
            self.sync_started()
        if self._announce_due is not None and self._announce_due <= now and self._announce:
            self._announce_due = None
            actions.append(Announce(self._announce))
        return actions
