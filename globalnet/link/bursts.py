"""A receive burst in slices: what one step hands to QUIC and on to the streams.

Why slices: a relay that waited for a CPU reads what its socket buffer holds in one
burst (measured up to 2.8 MiB; ~110 KiB on average), and every byte of it existed
three or four times at once (datagram, QUIC event, joined chunk, XORed copy) before
the first went out: the peaks of a relay's memory under load. Handled a slice at a
time, a slice's bytes are freed before the next slice's copies are made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

#: What one step of a receive burst hands to QUIC and on to the streams.
BURST_SLICE = 256 * 1024

T = TypeVar("T")


def slices(data: list[T], limit: int, size: Callable[[T], int]) -> Iterator[list[T]]:
    """`data` in runs of at most `limit` bytes (a larger item alone), in order; `size` gives
    an item's bytes (datagrams: len; GRO buffers: their buffer's len).

    A burst that fits is `data` itself. A larger one is taken out of `data` (which ends
    empty) as it goes, so a slice's items are freed once the slice is handled, not
    when the whole burst is."""
    if sum(map(size, data)) <= limit:
        yield data
        return
    data.reverse()
    while data:
        part = [data.pop()]
        total = size(part[0])
        while data and total + size(data[-1]) <= limit:
            total += size(data[-1])
            part.append(data.pop())
        yield part
