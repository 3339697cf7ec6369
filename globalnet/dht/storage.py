"""The DHT's local storage: signed values, highest sequence wins, expiry enforced.

Replaces kademlia's ForgetfulStorage, which keeps whatever was stored last for
a week: here a store is validated, a lower sequence number never replaces a
higher one (no replay of an old descriptor), expired values are dropped, and
the number of values is bounded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from kademlia.storage import IStorage

from ..errors import ProtocolError
from .values import ValidValue, validate_value

MAX_VALUES = 4096


class SignedStorage(IStorage):
    def __init__(self, max_values: int = MAX_VALUES) -> None:
        self._values: dict[bytes, tuple[ValidValue, float]] = {}
        self.max_values = max_values
        self.refused = 0

    def put(self, key: bytes, value: bytes, now: float | None = None) -> bool:
        """Store if valid and not older than what we hold; True if stored."""
        now = time.time() if now is None else now
        try:
            valid = validate_value(key, value, now)
        except ProtocolError:
            self.refused += 1
            return False
        held = self._values.get(key)
        if held is not None and held[0].seq > valid.seq:
            self.refused += 1
            return False
        if held is None and len(self._values) >= self.max_values:
            self.cull(now)
            if len(self._values) >= self.max_values:
                soonest = min(self._values, key=lambda k: self._values[k][0].expires)
                del self._values[soonest]
        self._values[key] = (valid, now)
        return True

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.put(key, value)

    def get_valid(self, key: bytes, now: float | None = None) -> ValidValue | None:
        held = self._values.get(key)
        if held is None:
            return None
        now = time.time() if now is None else now
        if held[0].expires <= now:
            del self._values[key]
            return None
        return held[0]

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        valid = self.get_valid(key)
        return valid.value if valid is not None else default

    def __getitem__(self, key: bytes) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def cull(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for key in [k for k, (v, _) in self._values.items() if v.expires <= now]:
            del self._values[key]

    def iter_older_than(self, seconds_old: float) -> Iterator[tuple[bytes, bytes]]:
        """Values stored more than `seconds_old` ago that have not expired (for republishing)."""
        now = time.time()
        self.cull(now)
        return iter([(k, v.value) for k, (v, at) in self._values.items() if now - at >= seconds_old])

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        self.cull()
        return iter([(k, v.value) for k, (v, _) in self._values.items()])

    def __len__(self) -> int:
        return len(self._values)
