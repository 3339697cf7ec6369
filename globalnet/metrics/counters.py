"""What the node counts as it runs (circuit build times, DHT lookups), in plain numbers.

Why not Prometheus objects: every node counts, but only a node run with -metrics
serves them; the registry (registry.py, prometheus_client and the HTTP and email
modules it pulls in, ~3 MiB a process) is loaded only then and reads these
numbers at scrape time.
"""

from __future__ import annotations

import bisect

#: Upper bounds (seconds) of the circuit build histogram's buckets (+Inf is implied).
BUILD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class NodeCounters:
    """`circuit_built(seconds)` and `dht_lookup(ok)` are called by the node."""

    def __init__(self) -> None:
        self.build_buckets = [0] * (len(BUILD_BUCKETS) + 1)  # per bucket, not cumulative; last: +Inf
        self.build_sum = 0.0
        self.dht_lookups = 0
        self.dht_failures = 0

    @property
    def build_count(self) -> int:
        return sum(self.build_buckets)

    def circuit_built(self, seconds: float) -> None:
        self.build_buckets[bisect.bisect_left(BUILD_BUCKETS, seconds)] += 1
        self.build_sum += seconds

    def dht_lookup(self, ok: bool) -> None:
        self.dht_lookups += 1
        if not ok:
            self.dht_failures += 1

    def build_histogram(self) -> list[tuple[str, int]]:
        """Cumulative (le, count) pairs, Prometheus style, ending with +Inf."""
        pairs, total = [], 0
        for bound, count in zip((*(repr(float(b)) for b in BUILD_BUCKETS), "+Inf"), self.build_buckets, strict=True):
            total += count
            pairs.append((bound, total))
        return pairs
