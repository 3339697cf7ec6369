"""Bounded big-endian readers and writers for every codec in `wire/`.

Why one module: every decoder in the project pulls fields through `Reader`, so a
truncated or oversized field is always the same `ProtocolError` and never an
IndexError or struct.error escaping from some corner.
"""

from __future__ import annotations

import struct

from ..errors import ProtocolError

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class Reader:
    """Reads fields from one message; every pull checks the bytes are there."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def pull_bytes(self, n: int) -> bytes:
        if n < 0 or self._pos + n > len(self._data):
            raise ProtocolError(f"truncated: wanted {n} bytes, {self.remaining()} left")
        out = bytes(self._data[self._pos : self._pos + n])
        self._pos += n
        return out

    def pull_u8(self) -> int:
        return self.pull_bytes(1)[0]

    def pull_u16(self) -> int:
        return int(_U16.unpack(self.pull_bytes(2))[0])

    def pull_u32(self) -> int:
        return int(_U32.unpack(self.pull_bytes(4))[0])

    def pull_u64(self) -> int:
        return int(_U64.unpack(self.pull_bytes(8))[0])

    def pull_str8(self, max_len: int = 255) -> str:
        """A u8 length then UTF-8 text of at most `max_len` bytes."""
        n = self.pull_u8()
        if n > max_len:
            raise ProtocolError(f"string of {n} bytes exceeds {max_len}")
        try:
            return self.pull_bytes(n).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("string is not UTF-8") from exc

    def pull_blob16(self, max_len: int) -> bytes:
        """A u16 length then that many bytes, at most `max_len`."""
        n = self.pull_u16()
        if n > max_len:
            raise ProtocolError(f"field of {n} bytes exceeds {max_len}")
        return self.pull_bytes(n)

    def expect_end(self) -> None:
        if self.remaining():
            raise ProtocolError(f"{self.remaining()} trailing bytes")


def u8(v: int) -> bytes:
    return bytes((v,))


def u16(v: int) -> bytes:
    return _U16.pack(v)


def u32(v: int) -> bytes:
    return _U32.pack(v)


def u64(v: int) -> bytes:
    return _U64.pack(v)


def str8(text: str, max_len: int = 255) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > max_len:
        raise ValueError(f"string of {len(raw)} bytes exceeds {max_len}")
    return u8(len(raw)) + raw


def blob16(data: bytes, max_len: int) -> bytes:
    if len(data) > max_len:
        raise ValueError(f"field of {len(data)} bytes exceeds {max_len}")
    return u16(len(data)) + data
