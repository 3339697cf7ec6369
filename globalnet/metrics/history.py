"""Bandwidth over the last minutes, for the status page's graphs (sans-IO: fed `now`)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    at: float  # seconds, the caller's clock
    rate_in: float  # bytes per second since the previous sample
    rate_out: float


class BandwidthHistory:
    """Turns monotonic byte totals into rates; keeps `span` seconds of samples (bounded)."""

    def __init__(self, span: float = 300.0, max_samples: int = 1000) -> None:
        self.span = span
        self.samples: deque[Sample] = deque(maxlen=max_samples)
        self._last: tuple[float, int, int] | None = None

    def feed(self, now: float, total_in: int, total_out: int) -> Sample | None:
        last, self._last = self._last, (now, total_in, total_out)
        if last is None or now <= last[0]:
            return None
        elapsed = now - last[0]
        # a total that went down (a counter reset) counts as no traffic, never negative
        sample = Sample(now, max(0, total_in - last[1]) / elapsed, max(0, total_out - last[2]) / elapsed)
        self.samples.append(sample)
        while self.samples and self.samples[0].at < now - self.span:
            self.samples.popleft()
        return sample

    def as_json(self, now: float) -> list[dict[str, float]]:
        """[{ago: seconds, in: B/s, out: B/s}], oldest first."""
        return [{"ago": round(now - s.at, 2), "in": round(s.rate_in, 1), "out": round(s.rate_out, 1)} for s in self.samples]
