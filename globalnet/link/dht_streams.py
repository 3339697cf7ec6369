"""The DHT's streams on one link: one unidirectional QUIC stream each way, length-prefixed.

Sans-IO: the link opens the outgoing stream when the first message leaves and
feeds what arrives; this class keeps the rule that a peer uses one stream
only, and cuts the byte stream into messages under a bound.
"""

from __future__ import annotations

from ..errors import ErrorKind, GnetError
from ..wire.framing import MessageSplitter, prefix

#: Bytes held for incomplete messages: four maximum-size DHT messages.
MAX_PENDING = 4 * 65537


class DhtStreams:
    def __init__(self) -> None:
        self.out_id: int | None = None  # ours, opened on the first message
        self._in_id: int | None = None  # the peer's, fixed by its first bytes
        self._in = MessageSplitter(max_pending=MAX_PENDING)

    @staticmethod
    def encode(message: bytes) -> bytes:
        return prefix(message)

    def received(self, sid: int, data: bytes) -> list[bytes]:
        """Whole messages so far; a second stream from the peer is a protocol error."""
        if self._in_id is None:
            self._in_id = sid
        elif sid != self._in_id:
            raise GnetError(ErrorKind.PROTOCOL, "more than one DHT stream")
        self._in.push(data)
        messages = []
        while (message := self._in.pop()) is not None:
            messages.append(message)
        return messages
