"""Which access points this client recently failed to reach: tried last next time.

Why: a service replaces an access point it lost within seconds and publishes a new
descriptor, but a client keeps the descriptor it holds until it expires and, picking
an access point at random, would go on choosing the dead one on every connection.
Each such try costs a circuit build that waits for a relay that is gone (seconds to
tens of seconds on a loaded network), often the whole of the application's patience.
Tor's clients likewise remember intro-point failures per service.

Sans-IO: fed `now`, holds at most LIMIT entries, forgets a failure after REMEMBER.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TypeVar

REMEMBER = 600.0  # a failed access point is tried last for this long (s)
LIMIT = 1024  # access points remembered at most (oldest failure forgotten first)

T = TypeVar("T")


class AccessPointFailures:
    def __init__(self, remember: float = REMEMBER, limit: int = LIMIT) -> None:
        self.remember = remember
        self.limit = limit
        self._failed: OrderedDict[bytes, float] = OrderedDict()  # node id -> when it last failed

    def failed(self, node_id: bytes, now: float) -> None:
        self._failed[node_id] = now
        self._failed.move_to_end(node_id)
        while len(self._failed) > self.limit:
            self._failed.popitem(last=False)

    def reached(self, node_id: bytes) -> None:
        self._failed.pop(node_id, None)

    def failed_at(self, node_id: bytes, now: float) -> float | None:
        """When `node_id` last failed, if within `remember` of `now`."""
        at = self._failed.get(node_id)
        if at is not None and now - at >= self.remember:
            del self._failed[node_id]
            return None
        return at

    def order(self, entries: Sequence[T], node_id: Callable[[T], bytes], now: float, rng: random.Random | None = None) -> list[T]:
        """`entries` in random order, those that failed recently last (the longest ago first among them)."""
        fresh = list(entries)
        (rng or random).shuffle(fresh)
        stale = [(at, e) for e in fresh if (at := self.failed_at(node_id(e), now)) is not None]
        stale.sort(key=lambda pair: pair[0])
        bad = {id(e) for _, e in stale}
        return [e for e in fresh if id(e) not in bad] + [e for _, e in stale]
