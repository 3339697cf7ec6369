"""The node's guards on disk and in its logs: loads, refreshes and saves both guard layers.

The decisions live in `guards.py` (sans-IO); this shell keeps the file
(`<data-dir>/guards.json`, written atomically, so a restart keeps the same
guards), the guards' node records (a guard stays dialable even when the peer
table drops it after failures), and one info line per change.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import structlog

from ..storage.atomic import write_atomic
from ..wire.records import NodeRecord, short_id
from .guards import ENTRY, MIDDLE, GuardChange, GuardSet, dump_layers, load_layers

log = structlog.get_logger("globalnet.guards")

FILE_NAME = "guards.json"


class GuardStore:
    def __init__(self, data_dir: Path | None, rng: random.Random | None = None) -> None:
        self.path = data_dir / FILE_NAME if data_dir is not None else None
        self.rng = rng or random.SystemRandom()
        self.entry = GuardSet(ENTRY)
        self.middle = GuardSet(MIDDLE)
        self.records: dict[bytes, NodeRecord] = {}

    def load(self) -> int:
        """Guards from the data dir (none on first run); a damaged file is set aside, not fatal."""
        if self.path is None or not self.path.exists():
            return 0
        try:
            self.entry, self.middle = load_layers(self.path.read_bytes())
        except (OSError, ValueError) as exc:
            log.warning("guards file unreadable, choosing new guards", file=str(self.path), reason=str(exc))
            try:
                os.replace(self.path, self.path.with_name(FILE_NAME + ".bad"))
            except OSError:
                pass
            return 0
        return len(self.entry.guards)

    def save(self) -> None:
        if self.path is None:
            return
        try:
            write_atomic(self.path, dump_layers(self.entry, self.middle))
        except OSError as exc:
            log.warning("cannot save the guards", file=str(self.path), reason=exc.strerror)

    def refresh(self, relays: list[NodeRecord], now: float | None = None) -> list[GuardChange]:
        """Keep the guards' records current, replace what must be, fill both sets."""
        now = time.time() if now is None else now
        for record in relays:
            if record.node_id in self.entry or record.node_id in self.middle:
                known = self.records.get(record.node_id)
                if known is None or record.seq >= known.seq:
                    self.records[record.node_id] = record
        dialable = set(self.records)  # sampled guards still dialable though the peer table dropped them
        changes = self.entry.update(relays, now, self.rng, dialable) + self.middle.update(relays, now, self.rng, dialable)
        for record in relays:
            if record.node_id in self.entry or record.node_id in self.middle:
                self.records.setdefault(record.node_id, record)
        for change in changes:
            if change.removed is not None and change.added is not None:
                log.info("guard replaced", layer=change.layer, old=short_id(change.removed),
                         new=short_id(change.added), reason=change.reason)
            elif change.added is not None:
                log.info("guard added", layer=change.layer, guard=short_id(change.added), reason=change.reason)
            elif change.removed is not None:
                log.info("guard dropped", layer=change.layer, guard=short_id(change.removed), reason=change.reason)
        for gone in [k for k in self.records if k not in self.entry and k not in self.middle]:
            del self.records[gone]
        if changes:
            self.save()
        return changes

    def entry_guards(self) -> list[NodeRecord]:
        """Entry guards to try for one circuit, in order (guards.py `candidates`): usable primaries,
        then usable reserves of the sample, then the down ones."""
        return [self.records[g] for g in self.entry.candidates(self.rng, lambda g: g in self.records)]

    def middle_guards(self, exclude: set[bytes]) -> list[NodeRecord]:
        ids = self.middle.candidates(self.rng, lambda g: g in self.records and g not in exclude)
        return [self.records[g] for g in ids]

    def link_failed(self, node_id: bytes, now: float | None = None) -> None:
        now = time.time() if now is None else now
        changed = self.entry.link_failed(node_id, now)
        changed = self.middle.link_failed(node_id, now) or changed
        if changed:
            log.debug("guard unreachable", guard=short_id(node_id))
            self.save()

    def link_ok(self, node_id: bytes, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for layer in (self.entry, self.middle):
            guard = next((g for g in layer.sample() if g.node_id == node_id), None)
            if guard is not None and (guard.failures or not guard.confirmed()):  # persist: back up, or newly confirmed
                layer.link_ok(node_id, now)
                self.save()
            elif guard is not None:
                layer.link_ok(node_id, now)

    def due_for_retry(self, now: float | None = None) -> list[NodeRecord]:
        now = time.time() if now is None else now
        ids = dict.fromkeys(self.entry.due_for_retry(now) + self.middle.due_for_retry(now))
        return [self.records[g] for g in ids if g in self.records]

    def rows(self, now: float | None = None) -> list[dict[str, object]]:
        now = time.time() if now is None else now
        return self.entry.rows(now) + self.middle.rows(now)
