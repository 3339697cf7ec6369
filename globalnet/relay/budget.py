"""A relay's memory budget (sans-IO): a cap per circuit and a total.

Theory of operation. What a relay holds for a circuit is what waits in QUIC
send buffers toward its next hop or its client. Two rules bound it without
parsing anything:
- Per circuit and direction: no well-behaved end has more than the protocol's
  MAX_WINDOW in flight, so a stream that queues more (plus RELAY_SLACK for
  control frames) broke the protocol; `BridgeCore` resets it on the spot.
- Per relay: windows may grow to MAX_WINDOW, so many circuits could together
  hold far more than a small relay wants to give. Every `interval` seconds
  (`get_timer()`), the shell reports the relay's total (`handle_timer()`);
  above `soft` (3/4 of the budget) the circuits holding the most are named,
  largest first, until what stays is under `low` (1/2 of the budget). The
  shell resets them: the nearest real mechanism to "stop reading from them"
  that qh3 offers (its native core grants QUIC stream credit by itself as it
  hands data out; no API defers that per stream), and what Tor's OOM handler
  does with circuits over MaxMemInQueues. Well-behaved circuits hold little
  (their senders back off as queues build), so the ones that hold the most
  are the ones that do not read.
The margin between `soft` and the budget absorbs what arrives between two
checks. A relay whose event loop is busy may run its timer late, so the shell
also checks after every `PRESSURE_BYTES` it forwards onto streams that
already queue more than `PRESSURE_QUEUE` (one addition per chunk, no more):
a backed-up relay checks often, an idle or flowing one almost never. Bytes,
not chunks: a link hands a stream one chunk per burst of datagrams, so a
chunk may be 1.4 KiB or 100 KiB (link/quic_link.py).
A relay that holds little (at most `calm`, 1/16 of the budget) checks every
CALM_INTERVAL instead: every relay of a network carries a few long-lived
circuits (services' introduction circuits, DHT circuits), and a check every
20 ms each summing every link's queue was most of an idle relay's wake-ups
(make testnet: 50 of 66 a second at N=30). Held bytes grow only on streams
that back up, and those trigger the early check above, so a calm relay
still notices a flood within PRESSURE_BYTES of it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

from ..endpoint.congestion import MAX_WINDOW
from ..endpoint.session import RELAY_SLACK

#: What one circuit may queue in one direction (BridgeCore's cap).
PER_CIRCUIT = MAX_WINDOW + RELAY_SLACK
#: A relay's default total, and how often it is checked.
DEFAULT_BUDGET = 64 * 1024 * 1024
MIN_BUDGET = 4 * 1024 * 1024
CHECK_INTERVAL = 0.02
#: How often a relay that holds at most 1/16 of its budget checks.
CALM_INTERVAL = 1.0
#: A stream that queues more than this makes what it is given count toward an early check...
PRESSURE_QUEUE = 32 * 1024
#: ...one every this many such bytes (relay-wide).
PRESSURE_BYTES = 64 * 1024


class RelayBudget:
    """The total a relay may hold for others' circuits, and who pays when it is passed."""

    def __init__(self, total: int = DEFAULT_BUDGET, now: float = 0.0, interval: float = CHECK_INTERVAL) -> None:
        if total < MIN_BUDGET:
            raise ValueError(f"a relay budget must be at least {MIN_BUDGET >> 20} MiB")
        self.total = total
        self.soft = total * 3 // 4
        self.low = total // 2
        self.calm = total // 16
        self.per_circuit = PER_CIRCUIT
        self.interval = interval
        self._next = now + interval
        self.peak = 0  # the most seen at a check (statistics)
        self.shed = 0  # circuits reset for the budget
        self._pressure = 0

    def get_timer(self) -> float:
        return self._next

    def handle_timer(
        self, now: float, held: int, holdings: Callable[[], Iterable[tuple[int, Hashable]]]
    ) -> list[Hashable]:
        """The periodic check (see `check()`); the next one sooner while the relay holds more than `calm`."""
        self.schedule(now, held)
        return self.check(held, holdings)

    def schedule(self, now: float, held: int) -> None:
        """The next periodic check: soon while the relay holds more than `calm`, else CALM_INTERVAL away."""
        self._next = now + (self.interval if held > self.calm else max(self.interval, CALM_INTERVAL))

    def pressed(self, size: int) -> bool:
        """`size` bytes went onto a stream queueing over PRESSURE_QUEUE: True when it is time to `check()`."""
        self._pressure += size
        if self._pressure < PRESSURE_BYTES:
            return False
        self._pressure = 0
        return True

    def check(self, held: int, holdings: Callable[[], Iterable[tuple[int, Hashable]]]) -> list[Hashable]:
        """`held`: bytes the relay holds now. Returns the circuits (keys of
        `holdings()`, called only when over) to reset, largest holder first."""
        self.peak = max(self.peak, held)
        if held <= self.soft:
            return []
        victims: list[Hashable] = []
        excess = held - self.low
        for amount, key in sorted(holdings(), key=lambda item: item[0], reverse=True):
            if excess <= 0 or amount <= 0:
                break
            victims.append(key)
            excess -= amount
        self.shed += len(victims)
        return victims
