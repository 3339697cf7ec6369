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

Start-up is treated as one more burst: SETTLE seconds after start, once quiet, one
trim hands back what imports and the first links left between live chunks.

`BurstTrim` is the decision (fed the node's traffic counter and the time); `run()` is
the shell: it reads the counter every CHECK_EVERY seconds and calls glibc, through the
C extension (not ctypes: ~0.3 MiB with libffi for one call); ctypes only when the
extension is not built. On a libc without malloc_trim it does nothing.
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
#: Start-up is a burst too (imports, keys, the first links and the DHT join leave freed
#: chunks between live ones, ~0.6 MiB on an idle relay): one trim this long after start,
#: once quiet, unless a burst's trim came first.
SETTLE = 10.0


class BurstTrim:
    """When to trim: once per burst, after it ended."""

    __slots__ = ("_last_change", "_last_total", "_moved", "_settle_at")

    def __init__(self, now: float, total: int = 0, settle: float | None = None) -> None:
        self._last_total = total
        self._last_change = now
        self._moved = 0
        self._settle_at = None if settle is None else now + settle  # the start-up trim, if any

    def observe(self, now: float, total: int) -> bool:
        """`total`: bytes the node ever moved. True when it is time to trim."""
        if total != self._last_total:
            self._moved += max(0, total - self._last_total)
            self._last_total = total
            self._last_change = now
            return False
        if now - self._last_change < QUIET:
            return False
        if self._settle_at is not None and now >= self._settle_at:
            self._settle_at = None
            self._moved = 0
            return True
        if self._moved >= BURST:
            self._moved = 0
            self._settle_at = None  # this trim also handed back what start-up left
            return True
        return False


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where there is none (musl, macOS).

    From the C extension when it is built (cext/gnetcrypto.c, which has it only on
    glibc); else through ctypes, loaded only now (~0.3 MiB with libffi)."""
    if sys.platform != "linux":
        return None
    try:
        from .._gnetcrypto import malloc_trim as from_cext  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        return from_cext
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
    core = BurstTrim(time.monotonic(), sum(traffic()), settle=SETTLE)
    trim: Callable[[int], int] | None = None
    while True:
        await asyncio.sleep(CHECK_EVERY)
        if core.observe(time.monotonic(), sum(traffic())):
            trim = trim or malloc_trim()
            if trim is None:
                return
            trim(0)
