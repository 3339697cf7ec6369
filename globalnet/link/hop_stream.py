"""One bidirectional QUIC stream of a link, as a circuit hop uses it, and who receives its bytes.

A `HopStream` sends through the link that carries it (`StreamCarrier`, which
`quic_link.Link` satisfies): a protocol, so this module and quic_link.py do not import
each other.
"""

from __future__ import annotations

from typing import Protocol

from ..errors import ErrorKind


class StreamHandler(Protocol):
    """Who receives a hop stream's bytes (a bridge, a circuit, a relay hop)."""

    def stream_data(self, data: bytes, end: bool) -> None: ...

    def stream_reset(self, kind: ErrorKind) -> None: ...


class StreamCarrier(Protocol):
    """What a hop stream needs of its link (`quic_link.Link`)."""

    @property
    def peer_id(self) -> bytes: ...

    def label(self) -> str: ...
    def send_stream(self, stream_id: int, data: bytes | bytearray | memoryview, end: bool) -> None: ...
    def reset_stream(self, stream_id: int, code: int) -> None: ...
    def send_buffer_size(self, stream_id: int) -> int: ...
    def maybe_forget(self, hs: HopStream) -> None: ...


class _Unclaimed:
    """Handler of a stream nobody took: drop it."""

    def stream_data(self, data: bytes, end: bool) -> None:
        pass

    def stream_reset(self, kind: ErrorKind) -> None:
        pass


class HopStream:
    """One bidirectional QUIC stream of a link; a circuit uses one per hop."""

    __slots__ = ("bytes_in", "bytes_out", "closed", "finished_receiving", "finished_sending", "handler", "link", "stream_id")

    def __init__(self, link: StreamCarrier, stream_id: int) -> None:
        self.link = link
        self.stream_id = stream_id
        self.handler: StreamHandler = _Unclaimed()
        self.finished_sending = False
        self.finished_receiving = False
        self.closed = False  # reset: neither direction carries more
        self.bytes_in = 0
        self.bytes_out = 0

    def send(self, data: bytes | bytearray | memoryview, end: bool = False) -> None:
        if self.closed or self.finished_sending:
            return
        self.bytes_out += len(data)
        self.link.send_stream(self.stream_id, data, end)
        if end:
            self.finished_sending = True
            self.link.maybe_forget(self)

    def reset(self, kind: ErrorKind) -> None:
        """Abort both directions; the peer sees RESET_STREAM with `kind` as code."""
        if self.closed:
            return
        self.closed = True
        self.link.reset_stream(self.stream_id, int(kind))

    def buffered(self) -> int:
        """Bytes queued in QUIC for this stream and not yet sent."""
        return self.link.send_buffer_size(self.stream_id)
