"""The site protocol spoken inside a service session to a mirror (sans-IO codec).

Why a protocol of its own and not HTTP: one service session (a rendezvous,
seconds to build) carries many requests, pipelined, so a 20 MiB file is 80
chunk requests on a few sessions and not 80 rendezvous. Every message is
bounded; anything else is a protocol error that closes that session only.

    request:  type u8 | length u32 | body
    response: status u8 | length u32 | body      (in request order)

| type | request body | OK response body |
|---|---|---|
| 1 MANIFEST | empty | the signed manifest (the client verifies it) |
| 2 CHUNK | file SHA-256 32 \\| chunk index u32 | the chunk (the client checks its SHA-256) |
| 3 BROADCAST | a broadcast message (broadcast.py) | empty; REFUSED + reason if the mirror drops it |

Status: 0 OK, 1 NOT_FOUND (the mirror lacks it), 2 REFUSED (reason, UTF-8), 3 BAD_REQUEST.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from ..errors import ProtocolError
from .broadcast import MAX_MESSAGE
from .manifest import CHUNK, MAX_MANIFEST

HEADER = struct.Struct(">BI")
MAX_REQUEST_BODY = MAX_MESSAGE
MAX_RESPONSE_BODY = max(MAX_MANIFEST, CHUNK)
MAX_REASON = 512


class RequestType(enum.IntEnum):
    MANIFEST = 1
    CHUNK = 2
    BROADCAST = 3


class Status(enum.IntEnum):
    OK = 0
    NOT_FOUND = 1
    REFUSED = 2
    BAD_REQUEST = 3


@dataclass(frozen=True)
class SiteRequest:
    type: RequestType
    body: bytes

    @property
    def chunk(self) -> tuple[bytes, int]:
        """(file SHA-256, chunk index) of a CHUNK request."""
        if len(self.body) != 36:
            raise ProtocolError("a chunk request is 36 bytes")
        return self.body[:32], struct.unpack(">I", self.body[32:])[0]


@dataclass(frozen=True)
class SiteResponse:
    status: Status
    body: bytes


def encode_request(kind: RequestType, body: bytes = b"") -> bytes:
    if len(body) > MAX_REQUEST_BODY:
        raise ValueError("request body too large")
    return HEADER.pack(kind, len(body)) + body


def chunk_request(file_sha256: bytes, index: int) -> bytes:
    return encode_request(RequestType.CHUNK, file_sha256 + struct.pack(">I", index))


def encode_response(status: Status, body: bytes = b"") -> bytes:
    if len(body) > MAX_RESPONSE_BODY:
        raise ValueError("response body too large")
    return HEADER.pack(status, len(body)) + body


def refusal(status: Status, reason: str) -> bytes:
    return encode_response(status, reason.encode()[:MAX_REASON])


class _Decoder:
    """Splits a byte stream into (code, body) messages; a bound or code violation is a ProtocolError."""

    def __init__(self, max_body: int) -> None:
        self._buffer = bytearray()
        self._max = max_body

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        out: list[tuple[int, bytes]] = []
        while len(self._buffer) >= HEADER.size:
            code, length = HEADER.unpack_from(self._buffer)
            if length > self._max:
                raise ProtocolError(f"a site message of {length} bytes exceeds {self._max}")
            if len(self._buffer) < HEADER.size + length:
                break
            out.append((code, bytes(self._buffer[HEADER.size : HEADER.size + length])))
            del self._buffer[: HEADER.size + length]
        return out


class RequestDecoder(_Decoder):
    def __init__(self) -> None:
        super().__init__(MAX_REQUEST_BODY)

    def requests(self, data: bytes) -> list[SiteRequest]:
        out = []
        for code, body in self.feed(data):
            try:
                out.append(SiteRequest(RequestType(code), body))
            except ValueError:
                raise ProtocolError(f"unknown site request type {code}") from None
        return out


class ResponseDecoder(_Decoder):
    def __init__(self) -> None:
        super().__init__(MAX_RESPONSE_BODY)

    def responses(self, data: bytes) -> list[SiteResponse]:
        out = []
        for code, body in self.feed(data):
            try:
                out.append(SiteResponse(Status(code), body))
            except ValueError:
                raise ProtocolError(f"unknown site response status {code}") from None
        return out
