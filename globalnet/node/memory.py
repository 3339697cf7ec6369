"""Give the heap memory a burst of traffic used back to the OS once the burst is over.

Why: measured on a bridge under 8 busy circuits (glibc's mallinfo2), the heap grew
from 9 to 27 MiB, 18 of it in use; after the burst only 9 MiB were still in use, yet
the heap stayed at 20 MiB and RSS at 71 MiB instead of ~58: the freed chunks (qh3's
stream buffers, received datagrams) sit between live ones, and glibc returns only the
top of the heap by itself. `malloc_trim(0)` also releases whole free pages in the
middle. It walks the heap, so it runs once after a burst (at least BURST bytes moved,
then QUIET seconds without traffic), never while traffic flows. Fixed malloc
thresholds were tried instead and dropped: they returned memory on every free and
cost 40-50 % more CPU per MiB.

`BurstTrim` is the decision (fed the node's traffic counter and the time); `run()` is
the shell: it reads the counter every CHECK_EVERY seconds and calls glibc. On a libc
without malloc_trim it does nothing. ctypes (~0.3 MiB with libffi) is loaded at the
first trim, so a relay that never carries a burst never loads it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable

#: A burst worth trimming after, and the quiet that says it ended.
BURST = 4 * 1024 * 1024
QUIET = 2.0
CHECK_EVERY = 1.0


class BurstTrim:
    """When to trim: once per burst, after it ended."""

    __slots__ = ("_last_change", "_last_total", "_moved")

    def __init__(self, now: float, total: int = 0) -> None:
        self._last_total = total
        self._last_change = now
        self._moved = 0

    def observe(self, now: float, total: int) -> bool:
        """`total`: bytes the node ever moved. True when it is time to trim."""
        if total != self._last_total:
            self._moved += max(0, total - self._last_total)
            self._last_total = total
            self._last_change = now
            return False
        if self._moved >= BURST and now - self._last_change >= QUIET:
            self._moved = 0
            return True
        return False


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where there is none (musl, macOS)."""
    if sys.platform != "linux":
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):
            return None
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


async def run(traffic: Callable[[], tuple[int, int]]) -> None:
    """Trim after each burst of the node's traffic (stream bytes in + out), until cancelled."""
    if sys.platform != "linux":
        return
    core = BurstTrim(time.monotonic(), sum(traffic()))
    trim: Callable[[int], int] | None = None
    while True:
        await asyncio.sleep(CHECK_EVERY)
        if core.observe(time.monotonic(), sum(traffic())):
            trim = trim or malloc_trim()
            if trim is None:
                return
            trim(0)
