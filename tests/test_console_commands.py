"""The console without sockets: parsing, dispatch against a fake node, text and JSON output."""

from __future__ import annotations

import json
from typing import Any

import pytest

from globalnet.console import text as fmt
from globalnet.console.commands import (
    COMMANDS,
    Console,
    ConsoleError,
    Destination,
    parse_destination,
    parse_line,
)
from globalnet.console.server import admission, is_loopback, is_text
from globalnet.errors import ErrorKind, GnetError
from globalnet.wire.pathspec import HopAddr, HopId, HopRandom

ID_A = "a1" * 20
ID_B = "b2" * 20


class FakeView:
    def __init__(self) -> None:
        self.sent: list[tuple[Destination, str]] = []
        self.level = "info"
        self.closed: list[int] = []
        self.fail_send: GnetError | None = None
        self.link_rows: list[dict[str, Any]] = [
            {"peer": ID_A, "address": "127.0.0.1:9001", "age": 125.0, "bytes_in": 2048, "bytes_out": 512,
             "rtt_ms": 0.42, "streams": 1, "dialled": True},
            {"peer": ID_B, "address": "127.0.0.1:9002", "age": 3.0, "bytes_in": 0, "bytes_out": 0,
             "rtt_ms": None, "streams": 0, "dialled": False},
        ]

    def node_id(self) -> str:
        return "c3" * 20

    def links(self) -> list[dict[str, Any]]:
        return self.link_rows

    def peers(self) -> list[dict[str, Any]]:
        return [{"id": ID_A, "addresses": ["127.0.0.1:9001"], "flags": ["relay", "exit"], "last_seen": 4.0,
                 "linked": True}]

    def circuits(self) -> list[dict[str, Any]]:
        return [{"id": 7, "hops": ["a1a1a1a1", "b2b2b2b2"], "state": "open", "age": 61.0, "bytes_sent": 1536,
                 "bytes_received": 3 * 1024 * 1024, "purpose": "tunnel"}]

    def services(self) -> list[dict[str, Any]]:
        return []

    def guards(self) -> list[dict[str, Any]]:
        return [{"layer": "entry", "guard": "a1a1a1a1", "node_id": "a1" * 20, "added_days_ago": 2.0,
                 "expires_in_days": 40.5, "status": "up", "failures": 0}]

    def stats(self) -> dict[str, Any]:
        return {"node_id": "c3" * 20, "version": "0.1.0", "uptime": 3725.0, "links": 2, "connections": 2,
                "circuits": 1, "message_circuits_in": 0, "relays_known": 5, "bytes_relayed": 10 * 1024 * 1024, "circuits_served": 4,
                "bridges": 1, "exits": 0, "messages_received": 2, "crypto": "cext", "rss_bytes": 50 * 1024 * 1024,
                "consoles": 1}

    async def send(self, dest: Destination, message: str) -> dict[str, Any]:
        if self.fail_send is not None:
            raise self.fail_send
        self.sent.append((dest, message))
        return {"delivered": True, "circuit": 9, "hops": 3, "rtt_ms": 12.5, "built_ms": 40.0}

    async def ping(self, dest: Destination) -> dict[str, Any]:
        return {"delivered": True, "circuit": 9, "hops": 3, "rtt_ms": 8.25, "built_ms": None}

    def close_circuit(self, circuit_id: int) -> str:
        if circuit_id != 7:
            raise ConsoleError(f"no circuit {circuit_id}")
        self.closed.append(circuit_id)
        return "tunnel"

    async def dht_get(self, key: bytes) -> dict[str, Any] | None:
        if key != bytes.fromhex(ID_A):
            return None
        return {"key": ID_A, "kind": 1, "seq": 3, "expires": 1000 + 7200, "value": "01" + "ab" * 99,
                "record": {"id": ID_A, "flags": ["relay"], "addresses": ["127.0.0.1:9001"]}}

    async def dht_put(self, key: bytes, value: bytes) -> int:
        self.put = (key, value)
        return 4

    def set_log_level(self, level: str) -> None:
        self.level = level

    def now(self) -> float:
        return 1000.0


@pytest.fixture
def view() -> FakeView:
    return FakeView()


async def run(view: FakeView, line: str) -> str:
    out = await Console(view).execute(line)
    assert out is not None
    return out.text


# -- parsing ---------------------------------------------------------------

PARSES = [
    ("help", ("help",), ()),
    ("  LIST   Links  ", ("list", "links"), ()),
    ("send " + ID_A + " hello   world ", ("send",), (ID_A, "hello   world")),
    ("circuit close 12", ("circuit", "close"), ("12",)),
    ("dht put k 0102", ("dht", "put"), ("k", "0102")),
    ("log level debug", ("log", "level"), ("debug",)),
]


@pytest.mark.parametrize(("line", "words", "args"), PARSES)
def test_parse(line: str, words: tuple[str, ...], args: tuple[str, ...]) -> None:
    inv = parse_line(line)
    assert inv is not None and inv.spec.words == words and inv.args == args and not inv.json


def test_parse_json_prefix_and_blank_lines() -> None:
    inv = parse_line("json list circuits")
    assert inv is not None and inv.json and inv.spec.words == ("list", "circuits")
    assert parse_line("") is None and parse_line("   \t ") is None


@pytest.mark.parametrize(("line", "error"), [
    ("frobnicate", "unknown command 'frobnicate'"),
    ("list", "usage: list links | list peers | list circuits | list services | list guards"),
    ("list everything", "usage: list links"),
    ("send " + ID_A, "usage: send <nodeid|NAME.gnet> <message>"),
    ("ping", "usage: ping <nodeid>"),
    ("stats now", "usage: stats"),
    ("circuit close", "usage: circuit close <id>"),
    ("json", "usage: json <command>"),
    ("json json stats", "json takes one command"),
    ("x" * 500, "unknown command '" + "x" * 40 + "...'"),
])
def test_parse_errors_say_what_is_expected(line: str, error: str) -> None:
    with pytest.raises(ConsoleError) as err:
        parse_line(line)
    assert error in str(err.value)


def test_destination_forms() -> None:
    assert parse_destination(ID_A) == Destination(node_id=bytes.fromhex(ID_A))
    assert parse_destination("abcdefgh.gnet") == Destination(service="abcdefgh.gnet")
    via = parse_destination(f"127.0.0.1:9001#{ID_B}>rand>{ID_B}>{ID_A}")
    assert via.node_id == bytes.fromhex(ID_A)
    assert via.via == (HopAddr("127.0.0.1", 9001, bytes.fromhex(ID_B)), HopRandom(), HopId(bytes.fromhex(ID_B)))
    for bad in ("abc", ID_A[:39], "example.com", f"nonsense>{ID_A}", f"{ID_A}>", ">".join([ID_A] * 20)):
        with pytest.raises(ConsoleError):
            parse_destination(bad)


async def test_help_lists_every_command_with_one_line(view: FakeView) -> None:
    text = await run(view, "help")
    for spec in COMMANDS:
        assert spec.usage in text and spec.help in text
    assert "json <command>" in text
    assert len(text.splitlines()) == len(COMMANDS) + 2


# -- dispatch ---------------------------------------------------------------


async def test_list_links_text_is_aligned_and_complete(view: FakeView) -> None:
    text = await run(view, "list links")
    lines = text.splitlines()
    assert lines[0].split() == ["PEER", "ADDRESS", "AGE", "IN", "OUT", "RTT"]
    assert lines[1].split() == [ID_A, "127.0.0.1:9001", "2m05s", "2.0", "KiB", "512", "B", "0.4", "ms"]
    assert lines[2].split()[-1] == "-"  # no RTT measured yet
    assert lines[1].index("127.0.0.1:9001") == lines[0].index("ADDRESS") == lines[2].index("127.0.0.1:9002")


async def test_json_gives_the_raw_rows_on_one_line(view: FakeView) -> None:
    text = await run(view, "json list links")
    assert "\n" not in text
    doc = json.loads(text)
    assert doc == {"ok": True, "command": "list links", "result": view.link_rows}


async def test_json_errors_are_json_too(view: FakeView) -> None:
    assert json.loads(await run(view, "json list nothing"))["ok"] is False
    doc = json.loads(await run(view, "json circuit close 5"))
    assert doc == {"ok": False, "error": "no circuit 5"}


async def test_list_circuits_peers_services(view: FakeView) -> None:
    circuits = (await run(view, "list circuits")).splitlines()
    assert circuits[0].split() == ["ID", "HOPS", "STATE", "AGE", "SENT", "RECEIVED", "DATAGRAMS", "SERVES"]
    assert circuits[1].split() == ["7", "a1a1a1a1>b2b2b2b2", "open", "1m01s", "1.5", "KiB", "3.0", "MiB", "-", "tunnel"]
    peers = (await run(view, "list peers")).splitlines()
    assert peers[1].split() == [ID_A, "127.0.0.1:9001", "relay,exit", "yes", "4s", "ago"]
    assert await run(view, "list services") == "no services"
    view.link_rows = []
    assert await run(view, "list links") == "no links"


async def test_stats(view: FakeView) -> None:
    text = await run(view, "stats")
    assert "uptime    1h02m" in text and "links     2 (2 QUIC connections)" in text
    assert "10.0 MiB" in text and "cext" in text and "50.0 MiB RSS" in text


async def test_send_delivered_and_why_not(view: FakeView) -> None:
    assert await run(view, f"send {ID_A}  hi  there") == (
        "delivered in 12.5 ms (circuit 9, 3 hops; new circuit built in 40.0 ms)"
    )
    assert view.sent == [(Destination(node_id=bytes.fromhex(ID_A)), "hi  there")]
    view.fail_send = GnetError(ErrorKind.NO_ROUTE, "hop 1234abcd refused: no link to node")
    assert await run(view, f"send {ID_A} hi") == (
        "error: not delivered: no route to the next hop: hop 1234abcd refused: no link to node"
    )
    assert "at most 1024" in await run(view, f"send {ID_A} {'x' * 1025}")


async def test_ping_circuit_close_log_level_dht_quit(view: FakeView) -> None:
    assert await run(view, f"ping {ID_A}") == "answer from a1a1a1a1 in 8.2 ms (circuit 9, 3 hops)"
    assert "ping takes a node id" in await run(view, "ping abc.gnet")
    assert await run(view, "circuit close 7") == "closed circuit 7 (tunnel)" and view.closed == [7]
    assert "usage" in await run(view, "circuit close seven")
    assert await run(view, "log level DEBUG") == "log level is debug" and view.level == "debug"
    assert "usage: log level <debug|info|warning|error>" in await run(view, "log level loud")
    assert "40 hex" in await run(view, "dht get k")
    out = await Console(view).execute("quit")
    assert out is not None and out.close and out.text == "bye"
    assert await Console(view).execute("   ") is None


async def test_dht_get_and_put(view: FakeView) -> None:
    text = await run(view, f"dht get {ID_A}")
    assert "expires    in 2h00m" in text and f"node       {ID_A}" in text and "100 bytes" in text
    assert json.loads(await run(view, f"json dht get {ID_A}"))["result"]["value"] == "01" + "ab" * 99
    assert await run(view, f"dht get {ID_B}") == "not found"
    assert await run(view, f"dht put {ID_B} 01abcd") == "stored on 4 nodes"
    assert view.put == (bytes.fromhex(ID_B), b"\x01\xab\xcd")
    for bad in ("01abc", "hello", "0" * 4002):
        assert "a value is hex" in await run(view, f"dht put {ID_B} {bad}")
    assert "usage: dht put <key> <value>" in await run(view, f"dht put {ID_B} 01 02")


async def test_a_bug_in_a_command_is_reported_not_raised(view: FakeView) -> None:
    def broken() -> list[dict[str, Any]]:
        raise KeyError("oops")

    view.links = broken  # type: ignore[method-assign]
    assert await run(view, "list links") == "error: internal error (the node logged it)"
    assert await run(view, "stats") != ""  # and the console goes on


# -- formatting and admission ------------------------------------------------


@pytest.mark.parametrize(("seconds", "text"), [(None, "-"), (0, "0s"), (59.9, "59s"), (60, "1m00s"), (3599, "59m59s"),
                                               (3600, "1h00m"), (90000, "1d01h")])
def test_duration(seconds: float | None, text: str) -> None:
    assert fmt.duration(seconds) == text


@pytest.mark.parametrize(("n", "text"), [(None, "-"), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"),
                                         (5 * 1024 * 1024, "5.0 MiB"), (3 << 40, "3072.0 GiB")])
def test_size(n: int | None, text: str) -> None:
    assert fmt.size(n) == text


def test_table_caps_rows() -> None:
    rows = [[str(i), "x"] for i in range(fmt.MAX_ROWS + 7)]
    text = fmt.table(("A", "B"), rows)
    assert len(text.splitlines()) == fmt.MAX_ROWS + 2 and "7 more" in text


def test_admission_and_text_checks() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.3.2.1") and is_loopback("::1")
    assert is_loopback("::ffff:127.0.0.1") and not is_loopback("::ffff:10.0.0.1")
    assert not is_loopback("10.0.0.1") and not is_loopback("nonsense")
    assert admission(("127.0.0.1", 5000), False, 0, 16) is None
    assert admission(("192.0.2.7", 5000), False, 0, 16) == "not a loopback address"
    assert admission(None, False, 0, 16) == "not a loopback address"
    assert admission(("192.0.2.7", 5000), True, 0, 16) is None  # bound to a public address on purpose
    assert "too many" in str(admission(("127.0.0.1", 5000), False, 16, 16))
    assert is_text("send x hello\tworld") and is_text("ünïcödé\xa0✓") and is_text("")
    assert not is_text("a\x00b") and not is_text("\x1b[2J") and not is_text("x\x7f") and not is_text("\x9b")


async def test_list_guards(view: FakeView) -> None:
    lines = (await run(view, "list guards")).splitlines()
    assert lines[0].split() == ["LAYER", "GUARD", "ADDED", "EXPIRES", "IN", "STATUS", "FAILURES"]
    assert lines[1].split() == ["entry", "a1a1a1a1", "2.0d", "40.5d", "up", "0"]
