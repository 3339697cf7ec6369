"""DatagramFlow: UDP datagrams through one circuit's sessions, on a fake clock with exact counts."""

from __future__ import annotations

import pytest

from globalnet.endpoint.datagram_flow import DatagramFlow
from globalnet.endpoint.session import WINDOW, FrameSession
from globalnet.errors import ErrorKind, GnetError
from globalnet.wire.datagram import MAX_DATAGRAM, Datagram
from tests.test_session import pair


def flows(now: float = 0.0, idle: float = 120.0) -> tuple[DatagramFlow, DatagramFlow]:
    a, b = pair()
    return DatagramFlow(a, now, idle), DatagramFlow(b, now, idle)


def test_a_datagram_crosses_whole_and_credit_comes_back_at_once() -> None:
    client, exit_ = flows()
    wire = client.send("127.0.0.1", 53, b"query", now=1.0)
    got = exit_.receive(wire, now=1.0)
    assert got.datagrams == [Datagram("127.0.0.1", 53, b"query")]
    assert got.wire  # a CREDIT frame: the receiver holds nothing
    assert client.session.send_credit < WINDOW
    assert client.receive(got.wire, now=1.0).datagrams == []
    assert client.session.send_credit == WINDOW
    assert client.counters.sent == 1 and exit_.counters.received == 1


def test_an_oversize_datagram_is_dropped_and_counted_never_split() -> None:
    client, _ = flows()
    assert client.send("", 0, b"x" * (MAX_DATAGRAM + 1), now=0.0) == b""
    assert client.counters.dropped_oversize == 1 and client.counters.sent == 0
    assert client.send("", 0, b"x" * MAX_DATAGRAM, now=0.0) != b""


def test_a_full_window_drops_instead_of_queueing() -> None:
    client, exit_ = flows()
    sent = []
    for _ in range(100):
        wire = client.send("", 0, b"y" * 8000, now=0.0)
        if wire:
            sent.append(wire)
    assert sum(map(len, sent)) <= WINDOW  # never more than the window in flight
    assert client.counters.dropped_window == 100 - len(sent) > 0
    # the receiver delivers all that was sent, and the credit reopens the window
    got = exit_.receive(b"".join(sent), now=0.0)
    assert len(got.datagrams) == len(sent)
    client.receive(got.wire, now=0.0)
    assert client.send("", 0, b"z", now=0.0) != b""


def test_idle_expiry_on_a_fake_clock() -> None:
    client, exit_ = flows(now=0.0, idle=120.0)
    assert client.get_timer() == 120.0
    assert not client.handle_timer(119.9)
    wire = client.send("", 0, b"keep", now=100.0)  # activity moves the timer
    assert client.get_timer() == 220.0
    exit_.receive(wire, now=100.0)
    assert exit_.get_timer() == 220.0
    assert not exit_.handle_timer(219.0)
    assert exit_.handle_timer(220.0) and exit_.expired


def test_a_tampered_datagram_resets_the_circuit() -> None:
    client, exit_ = flows()
    wire = bytearray(client.send("", 0, b"data", now=0.0))
    wire[-1] ^= 1
    with pytest.raises(GnetError) as err:
        exit_.receive(bytes(wire), now=0.0)
    assert err.value.kind is ErrorKind.TAMPERED


def test_stream_data_on_a_udp_circuit_is_a_protocol_error() -> None:
    a, b = pair()
    exit_ = DatagramFlow(b, 0.0)
    with pytest.raises(GnetError) as err:
        exit_.receive(a.send_data(b"tcp bytes"), now=0.0)
    assert err.value.kind is ErrorKind.PROTOCOL


def test_the_session_refuses_datagrams_after_end() -> None:
    a, _ = pair()
    assert isinstance(a, FrameSession)
    a.send_end()
    assert a.send_datagram(b"late") is None
