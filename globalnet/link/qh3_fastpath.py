"""Per-datagram work that qh3 2.1's Python layer does even with no qlog attached,
and a receive path that keeps a GRO buffer whole.

Why: profiling a bridge under load (bench/profile_relay.py) showed
`QuicConnection.datagrams_to_send` parsing the header of every packet it sends
(`_log_packets` -> `_pull_quic_header`, a slice copy each) only to hand it to a
qlog logger that is None, and `receive_many_datagrams` calling a logging
function per received datagram for the same nothing: together ~5-7% of a
relay's CPU. When no `quic_logger` is configured (we never configure one),
those two methods below do exactly what qh3's do minus the logging; with a
logger, qh3's own methods run unchanged. `transmit` (the protocol's) then
walked the list of (bytes, address) tuples a second time; here it takes each
datagram from the native core straight into its GSO batch.

Whole GRO buffers: with UDP GRO the kernel hands over up to 64 KiB of one
peer's datagrams as one buffer, and qh3's quinn-udp reader splits it into a
Python bytes object and a (bytes, address) tuple per datagram, ~45 for each
buffer, which the connection then walks again. qh3's native core also takes
the buffer as it came (`receive_gro_buffer`), so `on_readable` reads it with
recvmsg and hands it whole to a protocol that has `gro_buffers_received`
(our links and listener). Datagrams that arrive one by one (ACKs, a path
without GRO) gain nothing from that and would cost a recvmsg each, so after
LONE_READS of them in a row, and no coalesced buffer, qh3's reader (recvmmsg,
many per call) takes the rest of that wake-up. Any other protocol, or a socket
without GRO, keeps qh3's reader. Measured on the 1-stream bench path (5
alternating pairs, under a helper's load of 2-3): CPU per MiB summed over the
four nodes 28.7 -> 25.6 ms, the client's 7.1 -> 6.0. GNET_GRO_WHOLE=0 keeps
qh3's reader everywhere (for such before/after runs).

Patched on the classes at import (like qh3_tuning), pinned by `qh3>=2.1,<2.2`;
tests/test_udp_path.py checks that they deliver what the originals do.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from qh3.asyncio import _transport as qh3_transport
from qh3.asyncio.protocol import QuicConnectionProtocol
from qh3.quic.connection import NetworkAddress, QuicConnection, QuicConnectionError
from qh3.quic.packet import QuicErrorCode

_original_datagrams_to_send = QuicConnection.datagrams_to_send
_original_receive_many = QuicConnection.receive_many_datagrams
_original_on_readable = qh3_transport.OptimizedDatagramTransport._on_readable
_original_transmit = QuicConnectionProtocol.transmit


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


def transmit(self: Any) -> None:
    """QuicConnectionProtocol.transmit in one pass: each datagram the native core gives
    goes straight into the batch for its address (qh3 builds a list of (bytes, address)
    tuples first, then walks it again), then the timer is re-armed as qh3 does."""
    quic = self._quic
    core = quic._core
    sendto_many = self._sendto_many
    if sendto_many is None or core is None or quic._quic_logger is not None:
        _original_transmit(self)
        return
    self._transmit_task = None
    now = self._loop_time()
    poll = core.poll_transmit
    datagrams: list[bytes] = []
    send_addr: Any = None
    try:
        while (sent := poll(now)) is not None:
            addr = sent[1]
            if datagrams and addr != send_addr:
                sendto_many(datagrams, send_addr)
                datagrams = []
            datagrams.append(sent[0])
            send_addr = addr
    except RuntimeError as exc:  # what qh3's _call_core does with a native failure
        raise QuicConnectionError(QuicErrorCode.INTERNAL_ERROR, None, str(exc)) from exc
    if datagrams:
        sendto_many(datagrams, send_addr)
    timer_at = quic.get_timer()
    if self._timer is not None and self._timer_at != timer_at:
        self._timer.cancel()
        self._timer = None
    if self._timer is None and timer_at is not None:
        self._timer = self._loop.call_at(timer_at, self._handle_timer)
    self._timer_at = timer_at


def takes_gro_buffer(quic: QuicConnection) -> bool:
    """Whether `receive_gro_buffer` below can hand `quic` a whole buffer (else split it)."""
    return quic._core is not None and quic._handshake_complete and quic._quic_logger is None


def receive_gro_buffer(quic: Any, buffer: bytes, segment_size: int, addr: NetworkAddress, now: float) -> None:
    """qh3's `receive_gro_buffer` minus its per-datagram logging call; `takes_gro_buffer(quic)` must hold."""
    quic._call_core(quic._core.receive_gro_buffer, buffer, segment_size, quic._normalize_address(addr), now)
    quic._drain_core()


def split_gro_buffers(buffers: Iterable[tuple[bytes, int]]) -> list[bytes]:
    """GRO buffers as the datagrams they hold, in order (each buffer's last may be shorter)."""
    datagrams: list[bytes] = []
    for buffer, size in buffers:
        if 0 < size < len(buffer):
            datagrams.extend(buffer[i : i + size] for i in range(0, len(buffer), size))
        else:
            datagrams.append(buffer)
    return datagrams


#: Room for every control message the socket may carry: quinn-udp turns on more than the
#: GRO segment size (ECN, packet info), and a truncated set would lose the size.
ANCILLARY_BYTES = 512
#: Lone datagrams in a row, with no coalesced buffer in the same wake-up, before the rest
#: of the wake-up goes to qh3's own reader.
LONE_READS = 4


def on_readable(self: Any) -> None:
    """The transport's read callback: whole GRO buffers to a protocol with
    `gro_buffers_received([(buffer, segment_size), ...], addr)`, what one wake-up
    finds (at most qh3's burst limit of reads), grouped by sender, in order."""
    take = getattr(self._protocol, "gro_buffers_received", None)
    if take is None or not self._gro_enabled:
        _original_on_readable(self)
        return
    if self._closing or self._paused:
        return
    recvmsg = self._sock.recvmsg
    groups: list[tuple[list[tuple[bytes, int]], Any]] = []
    error: OSError | None = None
    lone = 0  # datagrams that came alone (no GRO) in this wake-up
    coalesced = False  # a buffer of several datagrams came in this wake-up
    handoff = False  # the rest of the wake-up goes to qh3's reader
    for _ in range(qh3_transport._RECV_BURST_LIMIT):
        try:
            data, ancdata, flags, addr = recvmsg(self._recv_buf_size, ANCILLARY_BYTES)
        except BlockingIOError:
            break
        except InterruptedError:
            continue
        except OSError as exc:
            error = exc
            break
        if flags & qh3_transport._MSG_TRUNC:  # as qh3 does: a larger buffer next time; this one is lost
            if self._recv_buf_size < qh3_transport._MAX_GRO_BUF:
                self._recv_buf_size = min(2 * self._recv_buf_size, qh3_transport._MAX_GRO_BUF)
            continue
        if not data:  # an empty datagram is no QUIC packet (and a segment size of 0 to QUIC's core)
            continue
        segment = qh3_transport._parse_gro_segment_size(ancdata) if ancdata and not flags & qh3_transport._MSG_CTRUNC else None
        if segment is None or segment <= 0 or len(data) <= segment:
            segment = len(data)
            lone += 1
        else:
            coalesced = True
        if groups and groups[-1][1] == addr:
            groups[-1][0].append((data, segment))
        else:
            groups.append(([(data, segment)], addr))
        if lone >= LONE_READS and not coalesced:  # qh3's reader (recvmmsg) takes the rest
            handoff = True
            break
    else:
        if self._reader_registered:
            self._loop.call_soon(self._on_readable)  # more may wait: after the loop's other work
    for buffers, addr in groups:
        if self._closing:
            return
        take(buffers, addr)
    if error is not None:
        if not self._closing:
            self._report_error(error)
    elif handoff and not self._closing and not self._paused:
        _original_on_readable(self)


def apply() -> None:
    QuicConnection.datagrams_to_send = datagrams_to_send  # type: ignore[method-assign]
    QuicConnection.receive_many_datagrams = receive_many_datagrams  # type: ignore[method-assign]
    QuicConnectionProtocol.transmit = transmit  # type: ignore[method-assign]
    if os.environ.get("GNET_GRO_WHOLE", "1") != "0":
        qh3_transport.OptimizedDatagramTransport._on_readable = on_readable  # type: ignore[method-assign]


apply()
