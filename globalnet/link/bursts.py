"""A receive burst in slices: what one step hands to QUIC and on to the streams.

Why slices: a relay that waited for a CPU reads what its socket buffer holds in one
burst (measured up to 2.8 MiB; ~110 KiB on average), and every byte of it existed
three or four times at once (datagram, QUIC event, joined chunk, XORed copy) before
the first went out: the peaks of a relay's memory under load. Handled a slice at a
time, a slice's bytes are freed before the next slice's copies are made.
"""

from __future__ import annotations

from collections.abc import Iterator

#: What one step of a receive burst hands to QUIC and on to the streams.
BURST_SLICE = 256 * 1024


def slices(data: list[bytes], limit: int) -> Iterator[list[bytes]]:
    """`data` in runs of at most `limit` bytes (a larger datagram alone), in order.

    A burst that fits is `data` itself. A larger one is taken out of `data` (which ends
    empty) as it goes, so a slice's datagrams are freed once the slice is handled, not
    when the whole burst is."""
    if sum(map(len, data)) <= limit:
        yield data
        return
    data.reverse()
    while data:
        part = [data.pop()]
        size = len(part[0])
        while data and size + len(data[-1]) <= limit:
            size += len(data[-1])
            part.append(data.pop())
        yield part
