"""One authenticated QUIC connection to a peer, and the hop streams on it.

This is the thin asyncio shell around qh3: it moves stream bytes to
`StreamHandler`s and back, and runs the control stream's `ControlChannel`.
It knows nothing of circuits; its deadlines (authentication, liveness) are
`LivenessCore`'s (link/liveness.py), its control stream `ControlChannel`'s.
qh3's own StreamReader/StreamWriter adapters are
bypassed on purpose: a relay's hot path is one callback per received chunk,
straight into the bridge, with no queue in between.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import structlog
from qh3.asyncio.protocol import QuicConnectionProtocol
from qh3.quic import events
from qh3.quic.connection import QuicConnection

from ..errors import ErrorKind, GnetError
from ..identity import Identity
from ..wire.records import NodeRecord, short_id
from . import qh3_fastpath, qh3_tuning  # noqa: F401  (qh3_tuning raises qh3's stream limit before any connection exists)
from .auth import ControlChannel, LinkReady, PeerClosed, PeersReceived, PongReceived, listener_key
from .bursts import BURST_SLICE, slices
from .dht_streams import DhtStreams
from .hop_stream import HopStream
from .liveness import LinkDead, LinkDeadlines, LinkIdle, LivenessCore, SendPing

log = structlog.get_logger("globalnet.link")

#: The listener opens the control stream first: server-initiated bidi stream 1.
CONTROL_STREAM_ID = 1
ALPN = "gnet/1"
#: What a stream id carries (`Link._by_kind`): the control stream, the DHT
#: (unidirectional streams), or a hop stream (every other bidirectional one).
_CONTROL, _DHT, _HOP = 0, 1, 2


class LinkOwner(Protocol):
    """What a link needs from the LinkManager that owns it (who we are, where to report):
    a protocol, so link/quic_link.py and link/manager.py do not import each other."""

    @property
    def identity(self) -> Identity: ...
    @property
    def settings(self) -> LinkDeadlines: ...
    @property
    def on_peers(self) -> Callable[[Link, list[bytes]], None]: ...
    @property
    def on_dht(self) -> Callable[[Link, bytes], None]: ...

    def own_record(self) -> NodeRecord: ...
    def link_ready(self, link: Link) -> None: ...
    def incoming_stream(self, hs: HopStream) -> None: ...
    def link_closed(self, link: Link) -> None: ...


def _buffer_bytes(item: tuple[bytes, int]) -> int:
    return len(item[0])


class Link(QuicConnectionProtocol):
    """A QUIC connection with our control stream and hop streams on top."""

    def __init__(
        self,
        quic: QuicConnection,
        stream_handler: Any = None,
        *,
        manager: LinkOwner,
        dialler: bool,
        expected_id: bytes | None = None,
        address: tuple[str, int] | None = None,
    ) -> None:
        super().__init__(quic, None)
        self.manager = manager
        self.dialler = dialler
        self.expected_id = expected_id
        self.address = address
        self.peer: NodeRecord | None = None
        self.control: ControlChannel | None = None
        self.streams: dict[int, HopStream] = {}
        self.ready: asyncio.Future[Link] = asyncio.get_running_loop().create_future()
        self.created = time.monotonic()
        settings = manager.settings
        self.liveness = LivenessCore(self._loop_time(), settings.dial_timeout, idle_close=settings.idle_close)
        #: Not `_timer`: that is QuicConnectionProtocol's own (QUIC loss recovery and idle timeout),
        #: and sharing it made each cancel the other's (make testnet found links whose checks stopped).
        self._liveness_timer: asyncio.TimerHandle | None = None
        self.total_in = 0  # stream bytes over the link's life, every stream (the console's `list links`)
        self.total_out = 0
        self.closing = False
        self.close_reason: GnetError | None = None
        self.owned_transport = False  # dialled links own their UDP socket
        self.retiring = False  # a duplicate link kept only until its streams end
        #: Kept up while idle (a bootstrap peer, one of a relay's minimum links); else a link
        #: we dialled closes after IDLE_CLOSE without streams or DHT messages (liveness.py).
        self.kept = False
        self._finished = False
        self._dht = DhtStreams()
        self._gathering: dict[HopStream, list[bytes]] | None = None  # a burst's bytes per stream
        self._forgotten: set[int] = set()
        self._forgotten_order: deque[int] = deque()
        self._by_kind = (self._on_control_data, self._on_dht_data, self._on_hop_data)
        self._on_event: dict[type, Callable[[Any], None]] = {
            events.StreamDataReceived: self._on_stream_event,
            events.StreamReset: self._on_reset_event,
            events.StopSendingReceived: self._on_reset_event,
            events.HandshakeCompleted: self._on_handshake,
            events.ConnectionTerminated: self._on_terminated,
        }

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_timer()  # an accepted connection that does not authenticate in time is dropped

    # -- the liveness core's timer -------------------------------------------
    @property
    def last_heard(self) -> float:
        return self.liveness.last_heard

    @property
    def rtt(self) -> float | None:
        return self.liveness.rtt

    def _arm_timer(self) -> None:
        when = self.liveness.get_timer()
        if self._liveness_timer is not None:
            self._liveness_timer.cancel()
        self._liveness_timer = None if when is None else asyncio.get_running_loop().call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._liveness_timer = None
        if self._finished:
            return
        carrying = bool(self.streams) and self.is_ready and not self._connection_gone()
        may_close = self.dialler and not self.kept
        for ev in self.liveness.handle_timer(self._loop_time(), carrying, may_close):
            if isinstance(ev, SendPing):
                log.debug("link quiet, pinging", **self.statistics())
                self._send_control(self.control.ping(ev.nonce) if self.control is not None else b"")
            elif isinstance(ev, LinkDead):
                self.close_link(ev.kind, ev.reason)
            elif isinstance(ev, LinkIdle):
                log.debug("idle link closed", link=self.label(), idle_s=round(ev.idle_for))
                self.close_link(ErrorKind.CLOSED, "idle")
        if not self._finished:
            self._arm_timer()

    def error_received(self, exc: Exception) -> None:
        """The UDP socket reported an error (a dialled peer's port is closed)."""
        if isinstance(exc, ConnectionRefusedError) and not self.closing:
            reason = f"{self.address_text()} refused (no node listening)"
            self.close_reason = GnetError(ErrorKind.NO_ROUTE, reason)
            self._quic.close(error_code=0x100 + int(ErrorKind.NO_ROUTE), reason_phrase=reason)
            self._finish()

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        self.liveness.last_heard = self._loop_time()
        if self.address is None:
            self.address = (addr[0], addr[1])
        super().datagram_received(data, addr)

    def datagrams_received(self, data: list[bytes], addr: Any) -> None:
        """A burst of datagrams: each hop stream gets one `stream_data` call for its bytes of
        each BURST_SLICE of it.

        Why: qh3 merges a stream's consecutive frames into one event (~45 KiB for one busy
        circuit), but 128 circuits on a link interleave, and each ~1.4 KiB frame was an event
        with its own XOR, queue check and onward write (bridge CPU per MiB nearly doubled).
        A lone chunk is passed on as is (b"".join of one item copies nothing). Why slices:
        link/bursts.py. `data` may be emptied."""
        now = self._loop_time()
        self.liveness.last_heard = now
        for part in slices(data, BURST_SLICE, len):
            self._quic.receive_many_datagrams(part, addr, now=now)
            del part  # this slice's bytes go before the next slice's copies are made
            self._deliver_events()
        self.transmit()

    def gro_buffers_received(self, buffers: list[tuple[bytes, int]], addr: Any) -> None:
        """GRO buffers (each: datagrams of its segment size, the last maybe shorter), whole
        into QUIC once the handshake is done (qh3_fastpath.on_readable); the streams get
        their bytes once per BURST_SLICE, as in `datagrams_received`. `buffers` is emptied."""
        quic = self._quic
        if not qh3_fastpath.takes_gro_buffer(quic):
            self.datagrams_received(qh3_fastpath.split_gro_buffers(buffers), addr)
            return
        now = self._loop_time()
        self.liveness.last_heard = now
        for part in slices(buffers, BURST_SLICE, _buffer_bytes):
            for buffer, segment_size in part:
                qh3_fastpath.receive_gro_buffer(quic, buffer, segment_size, addr, now)
            del part  # this slice's buffers go before the next slice's copies are made
            self._deliver_events()
        self.transmit()

    def _deliver_events(self) -> None:
        """QUIC's events for what was just received; each hop stream's bytes in one call."""
        gathered: dict[HopStream, list[bytes]] = {}
        self._gathering = gathered
        try:
            self._process_events()
        finally:
            self._gathering = None
        if gathered:
            self._deliver_gathered(gathered)

    def statistics(self) -> dict[str, object]:
        return {
            "peer": self.label(),
            "address": self.address_text(),
            "dialled": self.dialler,
            "age": round(time.monotonic() - self.created, 1),
            "streams": len(self.streams),
            "bytes_in": sum(h.bytes_in for h in self.streams.values()),
            "bytes_out": sum(h.bytes_out for h in self.streams.values()),
            "rtt_ms": round(self.rtt * 1000, 2) if self.rtt is not None else None,
            "queued": self.send_buffer_size_total(),
            "quiet": round(self._loop_time() - self.last_heard, 2),
        }

    def send_buffer_size_total(self) -> int:
        try:
            return int(self._quic.get_send_buffer_size())
        except Exception:  # noqa: BLE001 — qh3 raises assorted types on a closed connection
            return 0

    # -- identity ------------------------------------------------------------
    @property
    def peer_id(self) -> bytes:
        assert self.peer is not None
        return self.peer.node_id

    @property
    def is_ready(self) -> bool:
        return self.peer is not None and self.ready.done() and not self.closing

    def label(self) -> str:
        return short_id(self.peer.node_id) if self.peer else "?"

    # -- sending ---------------------------------------------------------
    def open_stream(self) -> HopStream:
        # allocate now (not at first write): a bridge opens its stream before it
        # has bytes to send, and two bridges must never get the same id
        if self.closing:
            raise GnetError(ErrorKind.LINK_LOST, f"link to {self.label()} is closing")
        try:
            sid = self._quic._open_stream()
        except ValueError as exc:  # the peer's stream limit
            raise GnetError(ErrorKind.RESOURCE_LIMIT, f"link to {self.label()}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 — qh3: the connection closed under us (its event not seen yet)
            self.close_reason = self.close_reason or GnetError(ErrorKind.LINK_LOST, str(exc))
            self._finish()
            raise GnetError(ErrorKind.LINK_LOST, f"link to {self.label()}: {exc}") from None
        hs = HopStream(self, sid)
        self._add_stream(hs)
        return hs

    def _add_stream(self, hs: HopStream) -> None:
        self.streams[hs.stream_id] = hs
        if len(self.streams) == 1 and self.liveness.carrying_started(self._loop_time()):
            self._arm_timer()  # silence matters again: the link's timer from rare to every second

    def send_stream(self, stream_id: int, data: bytes | bytearray | memoryview, end: bool) -> None:
        try:
            self._quic.send_stream_data(stream_id, data, end)
        except Exception as exc:  # noqa: BLE001 — qh3 raises on a stream it already closed, or a closed connection
            if self._connection_gone():
                return
            log.debug("stream write failed", link=self.label(), stream=stream_id, error=str(exc))
            return
        self.total_out += len(data)
        self._transmit_soon()

    def _connection_gone(self) -> bool:
        """qh3 closed the connection itself (its ConnectionTerminated may come only after the
        draining period, or not at all): finish the link now, so its circuits are reset
        instead of stalling."""
        closed = getattr(self._quic, "_close_event", None)
        if closed is None:
            return False
        if not self._finished:
            reason = getattr(closed, "reason_phrase", "") or f"QUIC error {getattr(closed, 'error_code', '?')}"
            log.debug("link closed by QUIC", link=self.label(), reason=reason, code=getattr(closed, "error_code", None))
            self.close_reason = self.close_reason or GnetError(ErrorKind.LINK_LOST, f"connection closed: {reason}")
            self._finish()
        return True

    def forget(self, stream_id: int) -> None:
        if self.streams.pop(stream_id, None) is None:
            return
        if not self.streams:
            self.liveness.used(self._loop_time())  # idle from now on
        self._forgotten.add(stream_id)
        self._forgotten_order.append(stream_id)
        if len(self._forgotten_order) > 4096:
            self._forgotten.discard(self._forgotten_order.popleft())

    def reset_stream(self, stream_id: int, code: int) -> None:
        self.forget(stream_id)
        if self.closing:
            return
        try:
            self._quic.reset_stream(stream_id, code)
            self._quic.stop_stream(stream_id, code)
        except Exception:  # noqa: BLE001, S110 — already finished on one side: nothing to abort
            pass
        self._transmit_soon()

    def send_buffer_size(self, stream_id: int) -> int:
        try:
            return int(self._quic.get_send_buffer_size(stream_id))
        except Exception:  # noqa: BLE001 — qh3 raises assorted types on a finished stream
            return 0

    def maybe_forget(self, hs: HopStream) -> None:
        """Drop a stream from the table once neither direction can carry more."""
        if hs.finished_sending and hs.finished_receiving:
            self.forget(hs.stream_id)

    def send_ping(self) -> None:
        if self.control is None or not self.is_ready:
            return
        self._send_control(self.control.ping(self.liveness.ping(self._loop_time())))

    def send_peers(self, records: list[bytes]) -> None:
        if self.control is not None and self.is_ready and records:
            self._send_control(self.control.peers(records))

    def close_link(self, kind: ErrorKind, reason: str) -> None:
        """Say why (CLOSE on the control stream), then close the QUIC connection."""
        if self.closing:
            return
        if self.control is not None and self.peer is not None:
            self._send_control(self.control.close(kind, reason))
        self.close_reason = self.close_reason or GnetError(kind, reason)
        self._quic.close(error_code=0x100 + int(kind), reason_phrase=reason[:100])
        self.transmit()

    def _send_control(self, data: bytes) -> None:
        if data:
            self.send_stream(CONTROL_STREAM_ID, data, False)

    # -- receiving -------------------------------------------------------
    def quic_event_received(self, event: events.QuicEvent) -> None:
        self._guarded(self._on_event.get(type(event)), event)

    def _deliver_gathered(self, gathered: dict[HopStream, list[bytes]]) -> None:
        for hs, chunks in gathered.items():
            self._guarded(self._deliver, hs, chunks)

    @staticmethod
    def _deliver(hs: HopStream, chunks: list[bytes]) -> None:
        if not hs.closed:
            hs.handler.stream_data(b"".join(chunks), False)

    def _guarded(self, handler: Callable[..., None] | None, *args: Any) -> None:
        """Run an event's handler; what it raises costs this link at most, never the node."""
        try:
            if handler is not None:  # other QUIC events (ping acks, new tokens...) need nothing
                handler(*args)
        except GnetError as exc:
            log.info("link closed", link=self.label(), address=self.address, reason=str(exc))
            self.close_reason = exc
            self.close_link(exc.kind, exc.detail or exc.kind.describe)
        except Exception:  # a bug of ours must cost this link at most, never the node
            log.exception("link event handling failed", link=self.label())
            self.close_link(ErrorKind.LOCAL_PROTOCOL, "internal error")

    def _on_stream_event(self, event: events.StreamDataReceived) -> None:
        sid = event.stream_id
        data = event.data
        self.total_in += len(data)
        kind = _CONTROL if sid == CONTROL_STREAM_ID else (_DHT if sid & 2 else _HOP)
        self._by_kind[kind](sid, data, event.end_stream)

    def _on_reset_event(self, event: events.StreamReset | events.StopSendingReceived) -> None:
        self._on_stream_reset(event.stream_id, event.error_code)

    def _on_handshake(self, event: events.HandshakeCompleted) -> None:
        if event.alpn_protocol != ALPN:
            raise GnetError(ErrorKind.PROTOCOL, f"peer does not speak {ALPN}")
        identity, record = self.manager.identity, self.manager.own_record()
        if self.dialler:
            cert = self._quic.get_peercert()
            spki = None if cert is None else cert.public_key()
            key = listener_key(spki, self.expected_id, self.address_text())
            self.control = ControlChannel(identity, record, dialler=True, expected_peer_key=key)
        else:
            self.control = ControlChannel(identity, record, dialler=False)
            sid = self._quic.get_next_available_stream_id()
            if sid != CONTROL_STREAM_ID:
                raise GnetError(ErrorKind.LOCAL_PROTOCOL, "control stream id out of sync")
            self._send_control(self.control.start())

    def address_text(self) -> str:
        if self.address is None:
            return "peer"
        host, port = self.address[0], self.address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    # -- the control stream
    def _on_control_data(self, sid: int, data: bytes, end: bool) -> None:
        if self.control is None:
            raise GnetError(ErrorKind.PROTOCOL, "control data before the handshake")
        if end:
            raise GnetError(ErrorKind.PROTOCOL, "peer closed the control stream")
        reply, evts = self.control.receive(data)
        self._send_control(reply)
        for ev in evts:
            if isinstance(ev, LinkReady):
                self.peer = ev.peer
                self.liveness.link_ready(self._loop_time())
                self._arm_timer()
                self.manager.link_ready(self)
            elif isinstance(ev, PongReceived):
                self.liveness.pong(ev.nonce, self._loop_time())
            elif isinstance(ev, PeersReceived):
                self.manager.on_peers(self, list(ev.records))
            elif isinstance(ev, PeerClosed):
                # the peer is going: stop using the link now, not after QUIC's draining period
                self.close_reason = GnetError(ev.kind, f"peer closed the link: {ev.reason}")
                self._finish()
                return

    # -- hop streams: one handler each
    def _on_hop_data(self, sid: int, data: bytes, end: bool) -> None:
        hs = self.streams.get(sid)
        if hs is None:
            if not self.is_ready:
                raise GnetError(ErrorKind.PROTOCOL, "hop stream before the link was authenticated")
            if bool(sid & 1) == (not self.dialler):
                return  # one of ours that we already forgot: late bytes
            if sid in self._forgotten:
                return  # a stream we closed; late bytes
            hs = HopStream(self, sid)
            self._add_stream(hs)
            self.manager.incoming_stream(hs)
        hs.bytes_in += len(data)
        gathering = self._gathering
        if gathering is not None:
            chunks = gathering.get(hs)
            if not end:
                if chunks is None:
                    gathering[hs] = [data]
                else:
                    chunks.append(data)
                return
            if chunks is not None:  # what came before the end goes first
                del gathering[hs]
                self._deliver(hs, chunks)
        hs.handler.stream_data(data, end)
        if end:
            hs.finished_receiving = True
            self.maybe_forget(hs)

    # -- the DHT streams (link/dht_streams.py)
    def send_dht(self, message: bytes) -> None:
        if not self.is_ready:
            return
        if self._dht.out_id is None:
            try:
                self._dht.out_id = self._quic._open_stream(is_unidirectional=True)
            except Exception:  # noqa: BLE001 — qh3 closed the connection; the RPC times out like a lost datagram (make testnet)
                self._connection_gone()
                return
        self.liveness.used(self._loop_time())
        self.send_stream(self._dht.out_id, self._dht.encode(message), False)

    def _on_dht_data(self, sid: int, data: bytes, end: bool) -> None:
        if not self.is_ready:
            raise GnetError(ErrorKind.PROTOCOL, "DHT data before the link was authenticated")
        self.liveness.used(self._loop_time())
        for message in self._dht.received(sid, data):
            self.manager.on_dht(self, message)

    def _on_stream_reset(self, sid: int, code: int) -> None:
        hs = self.streams.get(sid)
        if hs is None or hs.closed:
            return
        if self._gathering and (chunks := self._gathering.pop(hs, None)):
            self._deliver(hs, chunks)  # the bytes before the reset, as they would have come without gathering
        self.forget(sid)
        hs.closed = True
        try:
            self._quic.reset_stream(sid, code)
        except Exception:  # noqa: BLE001, S110 — qh3 raises assorted types on a finished stream
            pass
        self._transmit_soon()
        hs.handler.stream_reset(ErrorKind.from_wire(code))

    def _on_terminated(self, event: events.ConnectionTerminated) -> None:
        if self.close_reason is None:
            reason = event.reason_phrase or f"QUIC error {event.error_code:#x}"
            kind = ErrorKind.from_wire(event.error_code - 0x100) if event.error_code > 0x100 else ErrorKind.LINK_LOST
            self.close_reason = GnetError(kind, reason)
        self._finish()

    def _finish(self) -> None:
        """The link is gone: reset its streams, fail waiters, tell the manager (once)."""
        if self._finished:
            return
        self._finished = True
        self.closing = True
        assert self.close_reason is not None
        streams, self.streams = self.streams, {}
        for hs in streams.values():
            if not hs.closed:
                hs.closed = True
                hs.handler.stream_reset(ErrorKind.LINK_LOST)
        if not self.ready.done():
            self.ready.set_exception(self.close_reason)
            self.ready.exception()  # retrieved: a failed dial nobody awaits is not an error
        if self._liveness_timer is not None:
            self._liveness_timer.cancel()
            self._liveness_timer = None
        self._closed.set()
        self.manager.link_closed(self)
        if self.owned_transport and self._transport is not None:
            self._transport.close()
