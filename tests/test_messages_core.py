"""Console messages between nodes, sans-IO: notes, the sender's and the destination's end.

Two FrameSessions on fixed keys stand for the two ends of a message circuit;
a raw session on the sender's keys plays a sender that ignores the rules.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from globalnet.crypto import AeadOpener, AeadSealer
from globalnet.endpoint.messages import (
    BURST,
    MAX_REFUSALS,
    MAX_TEXT,
    RATE,
    MessageInbox,
    MessageOutbox,
    Note,
    decode_note,
    encode_note,
    escape_text,
)
from globalnet.endpoint.session import FrameSession
from globalnet.errors import ErrorKind, GnetError, ProtocolError

K_SD = bytes([0x51]) * 32  # sender seals, destination opens
K_DS = bytes([0xD5]) * 32


def ends(now: float = 100.0) -> tuple[MessageOutbox, MessageInbox, FrameSession]:
    sender = FrameSession(AeadSealer(K_SD), AeadOpener(K_DS))
    dest = FrameSession(AeadSealer(K_DS), AeadOpener(K_SD))
    raw = FrameSession(AeadSealer(K_SD), AeadOpener(K_DS))  # a second sealer on the same keys: forged order
    return MessageOutbox(sender), MessageInbox(dest, now), raw


NOTES = [
    (Note("msg", 1, "hello"), "msg 1 hello"),
    (Note("msg", 42, "two  spaces\tand tab"), "msg 42 two  spaces\tand tab"),
    (Note("ping", 7), "ping 7"),
    (Note("ok", 4294967295), "ok 4294967295"),
    (Note("err", 3, "too many messages, slow down"), "err 3 too many messages, slow down"),
]


@pytest.mark.parametrize(("note", "text"), NOTES)
def test_note_codec_both_ways(note: Note, text: str) -> None:
    assert encode_note(note) == text
    assert decode_note(text) == note


@pytest.mark.parametrize("bad", ["", "msg", "msg x hi", "msg 0 hi", "msg 01 hi", "MSG 1 hi", "msg  1", "verylongkind 1",
                                 "msg 4294967296", "msg 99999999999 x", " msg 1"])
def test_malformed_notes_are_protocol_errors(bad: str) -> None:
    with pytest.raises(ProtocolError):
        decode_note(bad)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_decode_note_never_raises_anything_else(text: str) -> None:
    try:
        decode_note(text)
    except ProtocolError:
        pass


def test_escape_makes_one_printable_line() -> None:
    assert escape_text("hi there") == "hi there"
    assert escape_text("a\nb\r\tc") == "a\\nb\\r\\tc"
    assert escape_text("\x1b[31mred") == "\\x1b[31mred"  # no terminal control
    assert escape_text("back\\slash") == "back\\\\slash"  # an escape cannot be forged
    assert escape_text("bidi\u202eevil") == "bidi\\u202eevil"
    assert escape_text("ünïcödé ✓") == "ünïcödé ✓"
    assert escape_text("x" * 100, limit=10) == "x" * 10 + "..."


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=500))
def test_escape_is_always_printable_and_bounded(text: str) -> None:
    out = escape_text(text, limit=300)
    assert out.isprintable() and len(out) <= 303


def test_message_is_shown_once_and_confirmed() -> None:
    outbox, inbox, _ = ends()
    seq, wire = outbox.request("msg", "hello there")
    got = inbox.receive(wire, 100.0)
    assert got.shown == ["hello there"] and not got.ended
    answer = outbox.receive(got.wire)
    assert answer.answers == [Note("ok", seq)]
    assert inbox.messages == 1


def test_ping_is_answered_and_not_shown() -> None:
    outbox, inbox, _ = ends()
    seq, wire = outbox.request("ping")
    got = inbox.receive(wire, 100.0)
    assert got.shown == []
    assert outbox.receive(got.wire).answers == [Note("pong", seq)]


def test_several_requests_in_one_read_get_answers_by_number() -> None:
    outbox, inbox, _ = ends()
    requests = [outbox.request("msg", f"m{i}") for i in range(3)] + [outbox.request("ping")]
    got = inbox.receive(b"".join(w for _, w in requests), 100.0)
    assert got.shown == ["m0", "m1", "m2"]
    assert [(n.kind, n.seq) for n in outbox.receive(got.wire).answers] == [("ok", 1), ("ok", 2), ("ok", 3), ("pong", 4)]


def test_answer_comes_from_the_destination_keys_only() -> None:
    """A relay cannot forge `ok`: anything not sealed with the destination's key fails."""
    outbox, _, _ = ends()
    seq, _ = outbox.request("msg", "hi")
    forger = FrameSession(AeadSealer(bytes(32)), AeadOpener(bytes(32)))
    with pytest.raises(GnetError) as err:
        outbox.receive(forger.send_message(f"ok {seq}"))
    assert err.value.kind is ErrorKind.TAMPERED


def test_sender_refuses_empty_and_too_long_text() -> None:
    outbox, _, _ = ends()
    with pytest.raises(GnetError):
        outbox.request("msg", "")
    with pytest.raises(GnetError):
        outbox.request("msg", "é" * (MAX_TEXT // 2 + 1))
    outbox.request("msg", "x" * MAX_TEXT)  # exactly the bound is fine


def test_destination_refuses_too_long_and_unknown_requests() -> None:
    _, inbox, raw = ends()
    got = inbox.receive(raw.send_message(f"msg 1 {'x' * (MAX_TEXT + 1)}") + raw.send_message("shout 2 HI"), 100.0)
    assert got.shown == []
    outbox = MessageOutbox(FrameSession(AeadSealer(K_SD), AeadOpener(K_DS)))
    answers = outbox.receive(got.wire).answers
    assert [(n.kind, n.seq) for n in answers] == [("err", 1), ("err", 2)]
    assert "longer" in answers[0].text and "shout" in answers[1].text


def test_destination_never_answers_an_answer() -> None:
    _, inbox, raw = ends()
    got = inbox.receive(raw.send_message("ok 1") + raw.send_message("err 2 x"), 100.0)
    assert got.wire == b"" and got.shown == []


def test_rate_limit_refuses_a_flood_then_recovers() -> None:
    outbox, inbox, _ = ends(now=0.0)
    wire = b"".join(outbox.request("msg", f"m{i}")[1] for i in range(BURST + 5))
    got = inbox.receive(wire, 0.0)
    assert len(got.shown) == BURST
    kinds = [n.kind for n in outbox.receive(got.wire).answers]
    assert kinds == ["ok"] * BURST + ["err"] * 5
    later = inbox.receive(outbox.request("msg", "after a pause")[1], 2 / RATE)
    assert later.shown == ["after a pause"]


def test_a_sender_that_ignores_refusals_loses_the_circuit() -> None:
    outbox, inbox, _ = ends(now=0.0)
    wire = b"".join(outbox.request("ping")[1] for _ in range(BURST + MAX_REFUSALS + 1))
    with pytest.raises(GnetError) as err:
        inbox.receive(wire, 0.0)
    assert err.value.kind is ErrorKind.RESOURCE_LIMIT


def test_data_frames_or_garbage_notes_end_the_circuit() -> None:
    _, inbox, raw = ends()
    with pytest.raises(ProtocolError):
        inbox.receive(raw.send_data(b"not a message"), 100.0)
    _, inbox, raw = ends()
    with pytest.raises(ProtocolError):
        inbox.receive(raw.send_message("hello"), 100.0)


def test_clean_end_both_ways() -> None:
    outbox, inbox, _ = ends()
    got = inbox.receive(outbox.close(), 100.0)
    assert got.ended and got.wire  # END answered with END
    assert outbox.receive(got.wire).ended
