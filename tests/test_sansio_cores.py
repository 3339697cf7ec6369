"""The sans-IO cores on a fake clock with exact bytes: the bridge's rules and
set-up deadline, a circuit end's credit and end-of-stream rules, a link's
liveness and authentication deadlines. Nothing here sleeps or opens a socket."""

from __future__ import annotations

import pytest

from globalnet.circuit.core import MAX_EARLY, CircuitState, ClientCircuitCore
from globalnet.crypto import AeadOpener, AeadSealer, Keystream
from globalnet.endpoint.session import (
    CREDIT_BATCH,
    WINDOW,
    DataReceived,
    EndReceived,
    FrameSession,
    MessageReceived,
    payload_for_credit,
)
from globalnet.endpoint.stream_core import READ_CHUNK, WRITE_LOW_WATER, Failed, Finished, StreamCore
from globalnet.errors import ErrorKind, GnetError
from globalnet.link.liveness import CHECK_EVERY, DEAD_AFTER, QUIET_PING, LinkDead, LivenessCore, SendPing
from globalnet.relay.bridge import BridgeCore
from globalnet.relay.hop import HopState
from tests.fakenet import FakeClock, Hop

K1 = bytes([1]) * 32
K2 = bytes([2]) * 32
K_AB = bytes([0xA1]) * 32
K_BA = bytes([0xB2]) * 32


def _bridge(max_queued: int = 1000, connected: bool = True) -> BridgeCore:
    return BridgeCore(Keystream(K1), Keystream(K2), max_queued, connected)


# -- the bridge ------------------------------------------------------------------


def test_bridge_xors_exactly_its_keystream_each_way() -> None:
    bridge = _bridge()
    data = bytes(range(200))
    out = bridge.toward_exit(data, queued=0)
    expected = bytearray(data)
    Keystream(K1).xor_into(expected)
    assert out == expected
    back = bridge.toward_client(data, queued=0)
    expected = bytearray(data)
    Keystream(K2).xor_into(expected)
    assert back == expected
    assert bridge.bytes_relayed == 400


def test_bridge_resets_a_circuit_that_overruns_its_cap() -> None:
    bridge = _bridge(max_queued=1000)
    bridge.toward_exit(b"x" * 600, queued=400)  # exactly at the cap: fine
    with pytest.raises(GnetError) as info:
        bridge.toward_exit(b"x", queued=1000)
    assert info.value.kind is ErrorKind.RESOURCE_LIMIT
    with pytest.raises(GnetError) as info:
        bridge.toward_client(b"x" * 2, queued=999)
    assert info.value.kind is ErrorKind.RESOURCE_LIMIT


def test_a_rendezvous_half_refuses_data_until_spliced() -> None:
    half, other = _bridge(connected=False), _bridge(connected=False)
    with pytest.raises(GnetError) as info:
        half.toward_exit(b"early", queued=0)
    assert info.value.kind is ErrorKind.PROTOCOL
    half.splice(other.backward)
    out = half.toward_exit(b"\x00" * 8, queued=0)
    both = bytearray(8)
    Keystream(K1).xor_into(both)
    Keystream(K2).xor_into(both)  # the partner's backward layer
    assert out == both


def test_hop_setup_deadline_on_a_fake_clock() -> None:
    clock = FakeClock()
    hop = Hop("hop1", seed=1)
    from globalnet.relay.hop import RelayHopCore

    core = RelayHopCore(hop.identity.onion.candidates(1_700_000_000), hop.node_id, clock.now, setup_timeout=10.0)
    assert core.get_timer() == clock.now + 10.0
    core.receive(b"\x00\x10partial")  # an incomplete first message
    core.handle_timer(clock.advance(9.9))  # not yet
    assert core.state is HopState.HANDSHAKE
    with pytest.raises(GnetError) as info:
        core.handle_timer(clock.advance(0.2))
    assert info.value.kind is ErrorKind.TIMEOUT
    assert core.get_timer() is None


# -- a circuit end pumped to TCP ---------------------------------------------------


def _ends() -> tuple[StreamCore, StreamCore]:
    a = FrameSession(AeadSealer(K_AB), AeadOpener(K_BA))
    b = FrameSession(AeadSealer(K_BA), AeadOpener(K_AB))
    return StreamCore(a), StreamCore(b)


def test_reads_only_what_the_credit_allows_and_credit_waits_for_tcp() -> None:
    a, b = _ends()
    assert a.read_size() == min(READ_CHUNK, payload_for_credit(WINDOW))  # the credit caps a read
    sent = 0
    wire = b""
    while (room := a.read_size()) > 0:
        chunk = a.upload(b"z" * room)
        wire += chunk
        sent += room
    assert a.session.send_credit < 100  # the window is used up: nothing more is read from TCP
    events = b.receive(wire, end=False)
    data = [e for e in events if isinstance(e, DataReceived)]
    assert sum(len(e.data) for e in data) == sent
    # TCP holds a lot: no credit until it has drained
    assert all(b.credit_after_write(e.wire_size, WRITE_LOW_WATER + 1) is None for e in data)
    credit = b.credit_after_drain()
    assert credit  # one CREDIT frame for the whole window
    a.receive(credit, end=False)
    assert a.session.send_credit == WINDOW
    assert b.credit_after_drain() == b""  # nothing more owed


def test_credit_right_away_while_tcp_is_short() -> None:
    a, b = _ends()
    (first,) = b.receive(a.upload(b"q" * 16_000), end=False)
    (second,) = b.receive(a.upload(b"r" * 16_000), end=False)
    assert isinstance(first, DataReceived) and isinstance(second, DataReceived)
    assert first.wire_size + second.wire_size < CREDIT_BATCH
    # under CREDIT_BATCH with more still unwritten: held back
    assert b.credit_after_write(first.wire_size, 0) == b""
    frame = b.credit_after_write(second.wire_size, 0)
    assert frame  # TCP took everything: the credit goes back now, in one frame
    a.receive(frame, end=False)
    assert a.session.send_credit == WINDOW


def test_frames_that_arrive_together_are_one_write() -> None:
    """A burst of DATA frames is one DataReceived (one TCP write), in order and with
    every frame's wire size; anything between DATA frames keeps its place."""
    a, b = _ends()
    first = b"".join(bytes([i]) * 16_384 for i in range(5))
    burst = a.upload(first)
    message = a.session.send_message("between")
    wire = burst + message + a.upload(b"tail")
    data1, text, data2 = b.receive(wire, end=False)
    assert isinstance(data1, DataReceived) and isinstance(data2, DataReceived)
    assert data1.data == first and data2.data == b"tail"
    assert text == MessageReceived("between")
    assert data1.wire_size == len(burst)  # credit covers every frame of the run
    assert data2.wire_size == len(wire) - len(burst) - len(message)


def test_clean_end_both_ways_finishes_once() -> None:
    a, b = _ends()
    end_a, finished = a.upload_end()
    assert finished is None  # b has not ended yet
    events = b.receive(end_a, end=False)
    assert events == [EndReceived()]
    end_b, finished_b = b.upload_end()
    assert finished_b == Finished()
    assert a.receive(end_b, end=True) == [EndReceived(), Finished()]
    assert a.receive(b"", end=True) == []  # done: nothing more happens


def test_fin_without_end_is_a_failure_not_a_clean_close() -> None:
    _, b = _ends()
    events = b.receive(b"", end=True)
    assert len(events) == 1 and isinstance(events[0], Failed)
    assert events[0].error.kind is ErrorKind.LINK_LOST and not events[0].tell_circuit
    assert b.read_size() == 0


def test_a_tampered_frame_fails_and_tells_the_circuit() -> None:
    a, b = _ends()
    wire = bytearray(a.upload(b"secret"))
    wire[5] ^= 1
    events = b.receive(bytes(wire), end=False)
    assert isinstance(events[-1], Failed)
    assert events[-1].error.kind is ErrorKind.TAMPERED and events[-1].tell_circuit
    assert b.fail(GnetError(ErrorKind.CLOSED, "again"), tell_circuit=True) is None  # one failure only


def test_a_datagram_frame_on_a_stream_circuit_is_a_protocol_error() -> None:
    a, b = _ends()
    wire = a.session.send_datagram(b"not for a stream")
    assert wire is not None
    events = b.receive(wire, end=False)
    assert len(events) == 1 and isinstance(events[0], Failed)
    assert events[0].error.kind is ErrorKind.PROTOCOL and events[0].tell_circuit


def test_data_before_a_protocol_error_is_delivered_first() -> None:
    a, b = _ends()
    kept = a.upload(b"kept")
    stray = a.session.send_datagram(b"not for a stream")
    assert stray is not None
    data, failed = b.receive(kept + stray, end=False)
    assert data == DataReceived(b"kept", len(kept))  # what came before the error, in order
    assert isinstance(failed, Failed) and failed.error.kind is ErrorKind.PROTOCOL


def test_early_data_before_attach_is_bounded() -> None:
    core = ClientCircuitCore()
    core.state = CircuitState.OPEN  # as after the last hop's reply
    assert core.receive(b"a" * 1000, end=False) == (None, None)
    assert core.take_early() == (b"a" * 1000, False)
    with pytest.raises(GnetError) as info:
        core.receive(b"b" * (MAX_EARLY + 1), end=False)
    assert info.value.kind is ErrorKind.RESOURCE_LIMIT


# -- a link's deadlines --------------------------------------------------------------


def test_a_link_that_does_not_authenticate_in_time_is_dropped() -> None:
    clock = FakeClock()
    core = LivenessCore(clock.now, auth_timeout=10.0)
    assert core.get_timer() == clock.now + 10.0
    assert core.handle_timer(clock.advance(5), carrying=False) == []
    assert core.handle_timer(clock.advance(5), carrying=False) == [LinkDead(ErrorKind.TIMEOUT, "link authentication timed out")]
    assert core.get_timer() is None


def test_a_busy_quiet_link_pings_then_is_dropped() -> None:
    clock = FakeClock()
    core = LivenessCore(clock.now, auth_timeout=10.0)
    core.link_ready(clock.now)
    core.heard(clock.now)
    pings = []
    dead = []
    for _ in range(int(DEAD_AFTER / 0.5) + 4):
        clock.advance(0.5)
        timer = core.get_timer()
        if timer is not None and clock.now >= timer:
            for ev in core.handle_timer(clock.now, carrying=True):
                (pings if isinstance(ev, SendPing) else dead).append((round(clock.now - 1000.0, 1), ev))
    assert pings and all(t > QUIET_PING for t, _ in pings)  # no ping while the link was heard from recently
    assert len(dead) == 1 and dead[0][0] > DEAD_AFTER
    assert dead[0][1].kind is ErrorKind.LINK_LOST
    assert len({ev.nonce for _, ev in pings}) == len(pings)


def test_an_idle_link_without_streams_is_left_alone_and_pongs_give_rtt() -> None:
    clock = FakeClock()
    core = LivenessCore(clock.now, auth_timeout=10.0)
    core.link_ready(clock.now)
    for _ in range(30):
        assert core.handle_timer(clock.advance(CHECK_EVERY), carrying=False) == []
    nonce = core.ping(clock.now)
    clock.advance(0.125)
    assert core.pong(nonce, clock.now) == pytest.approx(0.125)
    assert core.rtt == pytest.approx(0.125)
    assert core.pong(nonce, clock.now) is None  # a repeated PONG is ignored
