"""Give the heap memory a burst of traffic used back to the OS once the burst is over.

Why: measured on a bridge under 8 busy circuits (glibc's mallinfo2), the heap grew
from 9 to 27 MiB, 18 of it in use; after the burst only 9 MiB were still in use, yet
the heap stayed at 20 MiB and RSS at 71 MiB instead of ~58: the freed chunks (qh3's
stream buffers, received datagrams) sit between live ones, and glibc returns only the
top of the heap by itself. `malloc_trim(0)` also releases whole free pages in the
middle. It walks the heap, so it runs once after a burst (at least BURST bytes moved,
then QUIET seconds without traffic), never while traffic flows. Low fixed malloc
thresholds (128 KiB mmap, 256 KiB trim) were tried instead and dropped: they returned
memory on every free and cost 40-50 % more CPU per MiB. High ones are the opposite
(below): they keep memory while traffic flows, and this trim returns it afterwards.

Start-up is treated as one more burst: SETTLE seconds after start, once quiet, one
trim hands back what imports and the first links left between live chunks.

While traffic flows, the heap keeps what it freed: `steady_heap()` fixes glibc's mmap
threshold at MMAP_THRESHOLD and its trim threshold at TRIM_THRESHOLD when the node starts.
Why: by default glibc moves both with the sizes it sees (the mmap threshold rises to the
largest block freed, the trim threshold to twice that), so a node moving 64-256 KiB
buffers gave free memory back at the top of its heap between bursts and faulted the same
pages in again moments later: in a perf profile of a client under one download, page
faults, page clearing and unmapping were ~13 % of its CPU. With the thresholds fixed
(3 alternating pairs on the 1-stream bench path, load 4-5): the client's CPU per MiB
5.9-7.0 -> 4.2-5.0 ms, the four nodes' together 11-13 % lower, one stream 42-57 -> 52-71
MiB/s; relay RSS under 8 circuits no higher (median peak 55.8-59.0 -> 53.5-56.8 MiB).
The memory kept is handed back by the burst trim below, once the traffic pauses.

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


#: Blocks up to this size come from the heap (reused), larger ones are mapped on their own.
MMAP_THRESHOLD = 1024 * 1024
#: free() gives the top of the heap back only past this much; the burst trim does the rest.
TRIM_THRESHOLD = 4 * 1024 * 1024
#: glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


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


def _glibc(name: str) -> Callable[..., int] | None:
    """glibc's function `name` (malloc_trim, mallopt), or None where there is no glibc
    (musl, macOS). From the C extension when it is built (cext/gnetcrypto.c, which has
    them only on glibc); else through ctypes, loaded only now (~0.3 MiB with libffi)."""
    if sys.platform != "linux":
        return None
    try:
        from .. import _gnetcrypto  # type: ignore[attr-defined]
    except ImportError:
        pass
    else:
        function: Callable[..., int] | None = getattr(_gnetcrypto, name, None)
        if function is not None:
            return function  # else an extension built before it had `name`: ctypes below
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):
            return None
        from_libc: Callable[..., int] = getattr(libc, name)
    except (OSError, AttributeError):
        return None
    return from_libc


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim(pad), or None."""
    return _glibc("malloc_trim")


def mallopt() -> Callable[[int, int], int] | None:
    """glibc's mallopt(param, value), or None."""
    return _glibc("mallopt")


def steady_heap() -> bool:
    """Fix the heap's mmap and trim thresholds (see the module docstring); False where
    there is no glibc to ask."""
    setting = mallopt()
    if setting is None:
        return False
    return bool(setting(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(setting(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


async def run(traffic: Callable[[], tuple[int, int]]) -> None:
    """Keep the heap steady while traffic flows, and trim after each burst of the node's
    traffic (stream bytes in + out), until cancelled."""
    if sys.platform != "linux":
        return
    steady_heap()
    core = BurstTrim(time.monotonic(), sum(traffic()), settle=SETTLE)
    trim: Callable[[int], int] | None = None
    while True:
        await asyncio.sleep(CHECK_EVERY)
        if core.observe(time.monotonic(), sum(traffic())):
            trim = trim or malloc_trim()
            if trim is None:
                return
            trim(0)
