"""Fetching a file from several mirrors (sans-IO): chunk scheduling, verification, bad-mirror avoidance.

Why: a large file should come from several mirrors in parallel, and a mirror
that serves bad bytes must cost one chunk, never a corrupt page. The core
hands out chunk requests (at most PER_MIRROR in flight per mirror), checks
every returned chunk against its SHA-256 in the signed manifest, and on a
mismatch marks the mirror bad for this site and gives the chunk to another
mirror. The file exists (FileDone) only once every chunk verified; until
then not a byte of it leaves the core, except to the shell's `sink` (if it
gives one): each verified chunk goes there at once and is not kept here, so a
1 GiB file is never held in memory (the shell writes it to a partial file). The shell moves the requests over
circuits and feeds replies and failures back; `now` drives the timeouts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .manifest import CHUNK, FileEntry, verify_chunk

PER_MIRROR = 4  # chunk requests in flight per mirror
REQUEST_TIMEOUT = 30.0


@dataclass(frozen=True)
class Request:
    mirror: str
    index: int
    offset: int
    length: int


@dataclass(frozen=True)
class FileDone:
    data: bytes  # the whole file; b"" when a sink took every chunk


@dataclass(frozen=True)
class MirrorBad:
    mirror: str
    reason: str


@dataclass(frozen=True)
class FetchFailed:
    reason: str


Event = Request | FileDone | MirrorBad | FetchFailed


class FileFetch:
    def __init__(
        self, entry: FileEntry, mirrors: list[str], bad: set[str] | None = None, sink: Callable[[int, bytes], None] | None = None
    ) -> None:
        self.entry = entry
        self._sink = sink
        self.bad: set[str] = set(bad or ())
        self._mirrors = [m for m in dict.fromkeys(mirrors) if m not in self.bad]
        self._chunks: dict[int, bytes] = {}
        self._todo = list(range(len(entry.chunks)))
        self._inflight: dict[tuple[str, int], float] = {}  # (mirror, index) -> deadline
        self._next = 0
        self.done = False
        self._waiting = False  # the shell may still add mirrors

    def expect_mirrors(self, waiting: bool, now: float) -> list[Event]:
        """While `waiting`, no mirror left is not a failure yet; when it ends, it may be."""
        self._waiting = waiting
        return self._schedule(now)

    def start(self, now: float) -> list[Event]:
        return self._schedule(now)

    def add_mirror(self, mirror: str, now: float) -> list[Event]:
        """Another mirror became reachable (its session opened later): share the remaining chunks with it."""
        if mirror in self.bad or mirror in self._mirrors or self.done:
            return []
        self._mirrors.append(mirror)
        return self._schedule(now)

    def _schedule(self, now: float) -> list[Event]:
        if self.done:
            return []
        if not self._todo and not self._inflight:
            self.done = True
            return [FileDone(b"".join(self._chunks[i] for i in range(len(self.entry.chunks))) if self._sink is None else b"")]
        alive = [m for m in self._mirrors if m not in self.bad]
        if not alive and self._waiting:
            return []  # more mirrors may come (add_mirror); the shell gives up when none will
        if not alive:
            self.done = True
            return [FetchFailed("no mirror served verified bytes")]
        events: list[Event] = []
        load = {m: sum(1 for (mm, _) in self._inflight if mm == m) for m in alive}
        while self._todo:
            free = [m for m in alive if load[m] < PER_MIRROR]
            if not free:
                break
            mirror = free[self._next % len(free)]  # round robin: parallel over every good mirror
            self._next += 1
            index = self._todo.pop(0)
            self._inflight[(mirror, index)] = now + REQUEST_TIMEOUT
            load[mirror] += 1
            offset = index * CHUNK
            events.append(Request(mirror, index, offset, min(CHUNK, self.entry.size - offset)))
        return events

    def _fail(self, mirror: str, index: int, reason: str, now: float) -> list[Event]:
        self._inflight.pop((mirror, index), None)
        if index not in self._chunks and index not in self._todo:
            self._todo.insert(0, index)
        events: list[Event] = []
        if mirror not in self.bad:
            self.bad.add(mirror)
            events.append(MirrorBad(mirror, reason))
        return events + self._schedule(now)

    def on_data(self, mirror: str, index: int, data: bytes, now: float) -> list[Event]:
        if (mirror, index) not in self._inflight:
            return []  # late or unasked-for: ignored
        if not verify_chunk(self.entry, index, data):
            return self._fail(mirror, index, f"chunk {index} does not match the manifest", now)
        del self._inflight[(mirror, index)]
        if self._sink is not None:
            self._sink(index, data)
            data = b""  # kept only as "done"
        self._chunks[index] = data
        return self._schedule(now)

    def on_error(self, mirror: str, index: int, reason: str, now: float) -> list[Event]:
        if (mirror, index) not in self._inflight:
            return []
        return self._fail(mirror, index, reason, now)

    def get_timer(self) -> float | None:
        return min(self._inflight.values(), default=None)

    def handle_timer(self, now: float) -> list[Event]:
        events: list[Event] = []
        for (mirror, index), deadline in list(self._inflight.items()):
            if deadline <= now and (mirror, index) in self._inflight:
                events += self._fail(mirror, index, "timed out", now)
        return events
