"""Bootstrap progress, as Tor reports it: `bootstrapped N% (phase)` and one `ready` line.

Why a tracker of its own: "is my node usable yet?" is the first question an
operator asks, and the answer spans several layers (links, the peer table,
the DHT, guards, hidden services). This sans-IO class is fed facts by the node
(and by whoever adds guards or services: `guards_chosen(n)`,
`service_published(name)`) and returns the progress lines to log; it never
reads a clock or logs by itself. Percentages only go up: a link lost later
does not make the node "less bootstrapped" (the console's `stats` shows the
live counts).

Phases, in order (each only when the node needs it); the percentage says how
far the node got, the phase what it is doing now:

=======  ==============================================================
  0 %    starting: no link up yet
 10-60   linked, learning relays: known relays against the number the paths need
 60      joining the DHT (a relay finds contacts and stores its record)
 70      choosing guards
 80-95   publishing services: each hosted service's descriptor
100      ready: every tunnel, proxy and service can work
=======  ==============================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .wire.pathspec import HopAddr, PathSpec, TargetService

__all__ = ["BootstrapTracker", "Progress", "relays_needed"]

#: Relays a circuit to a hidden service (or to the DHT through a circuit) picks: rand, rand, access point.
SERVICE_PATH_RELAYS = 3


@dataclass(frozen=True)
class Progress:
    """One step forward: log `bootstrapped {percent}% ({phase})`, or `ready` at 100."""

    percent: int
    phase: str

    @property
    def ready(self) -> bool:
        return self.percent >= 100

    def line(self) -> str:
        return "ready" if self.ready else f"bootstrapped {self.percent}% ({self.phase})"


def relays_needed(specs: tuple[PathSpec, ...], services: int, listening: bool) -> int:
    """How many relays the node must know before its paths can be chosen.

    A fully pinned path (every hop host:port, a fixed target) needs none: it is
    usable at once. A `rand` hop or a bare node id needs the peer table; a
    service target or a hosted service needs a 3-relay path; a relay needs one
    other node to be part of the network.
    """
    needed = 1 if listening else 0
    for spec in specs:
        if isinstance(spec.target, TargetService):
            needed = max(needed, SERVICE_PATH_RELAYS)
        if not all(isinstance(hop, HopAddr) for hop in spec.hops):
            needed = max(needed, len(spec.hops))
    if services:
        needed = max(needed, SERVICE_PATH_RELAYS)
    return needed


@dataclass
class BootstrapTracker:
    """Fed facts, returns the Progress to log (None when nothing moved forward)."""

    relays_needed: int
    expect_links: bool = True  # False for a fully pinned client or a lone first relay
    expect_dht: bool = False  # a listening relay takes part in the DHT
    expect_guards: bool = False  # set by the guards code when it is wired
    services: tuple[str, ...] = ()
    links: int = 0
    relays_known: int = 0
    dht_is_joined: bool = False
    guards: int = 0
    published: set[str] = field(default_factory=set)
    percent: int = 0
    phase: str = "starting"
    listening: bool = False  # start() was called: every tunnel, proxy and console listens

    # -- facts ---------------------------------------------------------------
    def links_up(self, count: int) -> Progress | None:
        self.links = count
        return self._advance()

    def relays_learned(self, count: int) -> Progress | None:
        self.relays_known = count
        return self._advance()

    def dht_joined(self) -> Progress | None:
        self.dht_is_joined = True
        return self._advance()

    def guards_chosen(self, count: int) -> Progress | None:
        """Hook for the guards code: `count` guards are chosen (and persisted)."""
        self.expect_guards = True
        self.guards = count
        return self._advance()

    def service_published(self, name: str) -> Progress | None:
        """Hook for the hidden-service code: `name`'s descriptor is stored in the DHT."""
        if name in self.services:
            self.published.add(name)
        return self._advance()

    def start(self) -> Progress | None:
        """Every listener is up: `ready` may be said from now on (a pinned client is ready here)."""
        self.listening = True
        return self._advance()

    # -- the state -----------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.percent >= 100

    def status(self) -> dict[str, object]:
        """What `stats` and the status page show."""
        return {
            "percent": self.percent,
            "phase": self.phase,
            "ready": self.ready,
            "relays_known": self.relays_known,
            "relays_needed": self.relays_needed,
            "dht_joined": self.dht_is_joined,
            "guards": self.guards,
            "services_published": sorted(self.published),
            "services": list(self.services),
        }

    def _current(self) -> tuple[int, str]:
        """The furthest phase the facts reach (not yet made monotonic)."""
        if self.expect_links and self.links == 0 and self.relays_known == 0:
            return 0, "starting: no link up yet"
        if self.relays_needed and self.relays_known < self.relays_needed:
            share = 50 * self.relays_known // self.relays_needed
            return 10 + share, f"linked, learning relays: {self.relays_known} of {self.relays_needed} known"
        if self.expect_dht and not self.dht_is_joined:
            return 60, "joining the DHT"
        if self.expect_guards and self.guards == 0:
            return 70, "choosing guards"
        missing = [name for name in self.services if name not in self.published]
        if missing:
            share = 15 * len(self.published) // len(self.services)
            return 80 + share, f"publishing services: {len(self.published)} of {len(self.services)}"
        return 100, "ready"

    def _advance(self) -> Progress | None:
        percent, phase = self._current()
        if percent >= 100 and not self.listening:
            return None  # ready only once the tunnels and proxies listen: said by start()
        first = self.phase == "starting"  # the start line is said even at 0 %
        if percent <= self.percent and not first:
            return None
        self.percent, self.phase = percent, phase
        return Progress(percent, phase)
