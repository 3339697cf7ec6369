"""Per-datagram work that qh3 2.1's Python layer does even with no qlog attached.

Why: profiling a bridge under load (bench/profile_relay.py) showed
`QuicConnection.datagrams_to_send` parsing the header of every packet it sends
(`_log_packets` -> `_pull_quic_header`, a slice copy each) only to hand it to a
qlog logger that is None, and `receive_many_datagrams` calling a logging
function per received datagram for the same nothing. Together ~5-7% of a
relay's CPU. When no `quic_logger` is configured (we never configure one),
these two methods below do exactly what qh3's do minus the logging; with a
logger, qh3's own methods run unchanged.

Patched on the class at import (like qh3_tuning), pinned by `qh3>=2.1,<2.2`;
tests/test_udp_path.py checks that they deliver what the originals do.
"""

from __future__ import annotations

from typing import Any

from qh3.quic.connection import NetworkAddress, QuicConnection, QuicConnectionError
from qh3.quic.packet import QuicErrorCode

_original_datagrams_to_send = QuicConnection.datagrams_to_send
_original_receive_many = QuicConnection.receive_many_datagrams


def datagrams_to_send(self: Any, now: float) -> list[tuple[bytes, NetworkAddress]]:
    core = self._core
    if core is None or self._quic_logger is not None:
        return _original_datagrams_to_send(self, now)
    poll = core.poll_transmit
    out: list[tuple[bytes, NetworkAddress]] = []
    try:
        while (transmit := poll(now)) is not None:
            out.append((transmit[0], transmit[1]))
    except RuntimeError as exc:  # what qh3's _call_core does with a native failure
        raise QuicConnectionError(QuicErrorCode.INTERNAL_ERROR, None, str(exc)) from exc
    return out


def receive_many_datagrams(self: Any, datagrams: list[bytes], addr: NetworkAddress, now: float) -> None:
    if self._core is None or not self._handshake_complete or self._quic_logger is not None or not datagrams:
        _original_receive_many(self, datagrams, addr, now)
        return
    address = self._normalize_address(addr)
    self._call_core(self._core.receive_many_datagrams, datagrams, address, now)
    self._drain_core()


def apply() -> None:
    QuicConnection.datagrams_to_send = datagrams_to_send  # type: ignore[method-assign]
    QuicConnection.receive_many_datagrams = receive_many_datagrams  # type: ignore[method-assign]


apply()
