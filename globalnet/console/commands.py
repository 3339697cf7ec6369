"""The console's commands, without sockets: parse a line, run it, render it.

Theory of operation. A line is words separated by blanks. The first one or
two words name a command (`stats`, `list links`); `json` in front asks for the
same result as one JSON line. One table, COMMANDS, gives each command's words,
parameters, one-line help and handler, and `help` is printed from it, so the
help cannot miss a command. Arguments are checked here, before the node is
asked anything; a bad one gets the command's usage. A handler asks the node
through `NodeView` (a small protocol: tests pass a fake, `view.py` adapts a
real Node) and returns an `Output`: raw data, which `json` prints, and the
text for people, made from the same data. A failure is a ConsoleError (our
words) or a GnetError (the node's, with its kind); anything else is a bug:
it is logged, the client reads "internal error", and the console goes on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from ..endpoint.messages import MAX_TEXT
from ..errors import GnetError
from ..logs import LEVELS
from ..wire.host_port import PathSpecError
from ..wire.pathspec import MAX_HOPS, Hop, HopId, HopRandom, parse_hop_addr
from . import text as fmt

log = structlog.get_logger("globalnet.console")

#: A DHT value is at most 4 KiB; as hex it would not fit a console line, so a put takes up to this.
MAX_VALUE_HEX = 4000
_NODE_ID_RE = re.compile(r"[0-9a-fA-F]{40}")
_SERVICE_RE = re.compile(r"[a-z2-7]{1,100}\.gnet")


class ConsoleError(Exception):
    """A bad command or argument, or an answer the user must read as a failure."""


@dataclass(frozen=True)
class Destination:
    """Where `send`/`ping` go: a node id or a service address, through `via` if given."""

    node_id: bytes | None = None
    service: str | None = None
    via: tuple[Hop, ...] | None = None  # None: the node picks (Node.path_to)


class NodeView(Protocol):
    """What the console asks of a node; every row is raw values (see view.py)."""

    def node_id(self) -> str: ...
    def links(self) -> list[dict[str, Any]]: ...
    def peers(self) -> list[dict[str, Any]]: ...
    def circuits(self) -> list[dict[str, Any]]: ...
    def services(self) -> list[dict[str, Any]]: ...
    def guards(self) -> list[dict[str, Any]]: ...
    def stats(self) -> dict[str, Any]: ...
    async def send(self, dest: Destination, message: str) -> dict[str, Any]: ...
    async def ping(self, dest: Destination) -> dict[str, Any]: ...
    def close_circuit(self, circuit_id: int) -> str: ...
    async def dht_get(self, key: bytes) -> dict[str, Any] | None: ...
    async def dht_put(self, key: bytes, value: bytes) -> int: ...
    def set_log_level(self, level: str) -> None: ...
    def sites(self) -> list[dict[str, Any]]: ...
    def mirror(self, address: str) -> dict[str, Any]: ...
    def publish(self, name: str, folder: str) -> dict[str, Any]: ...
    def announce(self, name: str, text: str) -> dict[str, Any]: ...
    def now(self) -> float: ...


@dataclass(frozen=True)
class Output:
    data: Any  # what `json <command>` prints as "result"
    text: str  # what people read
    close: bool = False  # end this console session after the reply


@dataclass(frozen=True)
class Spec:
    words: tuple[str, ...]
    params: tuple[str, ...]
    help: str
    handler: str  # the Console method that runs it
    rest: bool = False  # the last parameter takes the rest of the line, blanks included

    @property
    def usage(self) -> str:
        return " ".join((*self.words, *self.params))


COMMANDS: tuple[Spec, ...] = (
    Spec(("help",), (), "this list", "_help"),
    Spec(("quit",), (), "close this console session", "_quit"),
    Spec(("list", "links"), (), "links: peer id, address, age, bytes in/out, round-trip time", "_list_links"),
    Spec(("list", "peers"), (), "known relays: id, addresses, flags, last seen", "_list_peers"),
    Spec(("list", "circuits"), (), "circuits: id, hops, state, age, bytes, what each serves", "_list_circuits"),
    Spec(("list", "services"), (), "hidden services of this node: name, address, access points", "_list_services"),
    Spec(("list", "guards"), (), "entry and second-layer guards: id, age, expiry, status, failed attempts", "_list_guards"),
    Spec(("list", "sites"), (), "signed sites this node serves (publishes or mirrors): site, seq, mirror address", "_list_sites"),
    Spec(("mirror",), ("<SITE.gnet>",), "mirror a signed site: fetch and verify it, serve it as a hidden service of its own",
         "_mirror"),
    Spec(("publish",), ("<NAME>", "<DIR>"), "sign DIR as site NAME again (seq raised if the files changed) and announce it",
         "_publish", rest=True),
    Spec(("announce",), ("<NAME>", "<TEXT>"), "a signed announcement to site NAME's visitors (flooded to its mirrors; at <SITE.gnet>/.gnet/announcements.txt)",
         "_announce", rest=True),
    Spec(("send",), ("<nodeid|NAME.gnet>", "<message>"), "send a message through a circuit (builds or reuses one)",
         "_send", rest=True),
    Spec(("ping",), ("<nodeid>",), "round-trip time to a node through a circuit", "_ping"),
    Spec(("circuit", "close"), ("<id>",), "close a circuit", "_circuit_close"),
    Spec(("dht", "get"), ("<key>",), "look a key (40 hex) up in the DHT, through a circuit", "_dht_get"),
    Spec(("dht", "put"), ("<key>", "<value>"), "store a signed value (hex, as json dht get shows it)", "_dht_put"),
    Spec(("stats",), (), "uptime, links, circuits, bytes relayed, crypto backend, memory", "_stats"),
    Spec(("log", "level"), ("<debug|info|warning|error>",), "change what this node logs", "_log_level"),
)
_BY_WORDS = {spec.words: spec for spec in COMMANDS}
_GROUPS = {spec.words[0] for spec in COMMANDS if len(spec.words) > 1}
JSON_HELP = ("json <command>", "the same result as one JSON line, for scripts")


@dataclass(frozen=True)
class Invocation:
    spec: Spec
    args: tuple[str, ...]
    json: bool = False


def parse_line(line: str) -> Invocation | None:
    """A command line -> what to run; None for a blank line. ConsoleError if bad."""
    text = line.strip()
    as_json = False
    first, _, after = text.partition(" ")
    if first.lower() == "json":
        as_json, text = True, after.strip()
        if not text:
            raise ConsoleError("usage: json <command>")
    words = text.split()
    if not words:
        return None
    spec = None
    for n in (2, 1):
        spec = _BY_WORDS.get(tuple(w.lower() for w in words[:n]))
        if spec is not None:
            break
    if spec is None:
        head = words[0].lower()
        if head == "json":
            raise ConsoleError("json takes one command")
        if head in _GROUPS:
            choices = " | ".join(s.usage for s in COMMANDS if s.words[0] == head)
            raise ConsoleError(f"usage: {choices}")
        raise ConsoleError(f"unknown command '{fmt_word(words[0])}'; type 'help'")
    n = len(spec.words)
    if spec.rest:
        args = text.split(None, n + len(spec.params) - 1)[n:]
    else:
        args = words[n:]
    if len(args) != len(spec.params):
        raise ConsoleError(f"usage: {spec.usage}")
    return Invocation(spec, tuple(args), as_json)


def fmt_word(word: str) -> str:
    return word if len(word) <= 40 else word[:40] + "..."


def parse_destination(text: str) -> Destination:
    """`<nodeid>`, `NAME.gnet`, or `hop>...>hop><nodeid>` (a path you pick, for debugging)."""
    parts = text.split(">")
    target = parts[-1]
    via: tuple[Hop, ...] | None = None
    if len(parts) > 1:
        if len(parts) - 1 > MAX_HOPS:
            raise ConsoleError(f"at most {MAX_HOPS} hops")
        via = tuple(_parse_via_hop(p) for p in parts[:-1])
    if _NODE_ID_RE.fullmatch(target):
        return Destination(node_id=bytes.fromhex(target), via=via)
    if _SERVICE_RE.fullmatch(target.lower()):
        return Destination(service=target.lower(), via=via)
    raise ConsoleError(f"'{fmt_word(target)}' is neither a node id (40 hex characters) nor NAME.gnet")


def _parse_via_hop(text: str) -> Hop:
    if text.lower() == "rand":
        return HopRandom()
    if _NODE_ID_RE.fullmatch(text):
        return HopId(bytes.fromhex(text))
    try:
        return parse_hop_addr(text)
    except PathSpecError as exc:
        raise ConsoleError(f"hop '{fmt_word(text)}': {exc}") from None


class Console:
    """Runs command lines against a node; one per node, shared by its clients."""

    def __init__(self, view: NodeView) -> None:
        self.view = view

    async def execute(self, line: str) -> Output | None:
        """Run one line; None for a blank line. Never raises (but CancelledError)."""
        as_json = line.split(None, 1)[:1] == ["json"]
        try:
            invocation = parse_line(line)
            if invocation is None:
                return None
            as_json = invocation.json
            handler: Callable[[tuple[str, ...]], Awaitable[Output]] = getattr(self, invocation.spec.handler)
            out = await handler(invocation.args)
        except (ConsoleError, GnetError) as exc:
            return _error(str(exc), as_json)
        except Exception:
            log.exception("console command failed")
            return _error("internal error (the node logged it)", as_json)
        if as_json:
            line_out = json.dumps({"ok": True, "command": " ".join(invocation.spec.words), "result": out.data})
            return Output(out.data, line_out, out.close)
        return out

    # -- commands ------------------------------------------------------
    async def _help(self, args: tuple[str, ...]) -> Output:
        entries = [(s.usage, s.help) for s in COMMANDS] + [JSON_HELP]
        width = max(len(u) for u, _ in entries)
        lines = ["commands:"] + [f"  {u.ljust(width)}  {h}" for u, h in entries]
        return Output([{"command": u, "help": h} for u, h in entries], "\n".join(lines))

    async def _quit(self, args: tuple[str, ...]) -> Output:
        return Output("bye", "bye", close=True)

    async def _list_links(self, args: tuple[str, ...]) -> Output:
        rows = self.view.links()
        if not rows:
            return Output([], "no links")
        cells = [
            [r["peer"] or "?", r["address"], fmt.duration(r["age"]), fmt.size(r["bytes_in"]), fmt.size(r["bytes_out"]),
             fmt.milliseconds(r["rtt_ms"])]
            for r in rows
        ]
        return Output(rows[: fmt.MAX_ROWS], fmt.table(("PEER", "ADDRESS", "AGE", "IN", "OUT", "RTT"), cells))

    async def _list_peers(self, args: tuple[str, ...]) -> Output:
        rows = self.view.peers()
        if not rows:
            return Output([], "no known peers")
        cells = [
            [r["id"], ",".join(r["addresses"]) or "-", ",".join(r["flags"]) or "-", "yes" if r["linked"] else "no",
             "now" if r["last_seen"] < 1 else f"{fmt.duration(r['last_seen'])} ago"]
            for r in rows
        ]
        return Output(rows[: fmt.MAX_ROWS], fmt.table(("ID", "ADDRESSES", "FLAGS", "LINKED", "LAST SEEN"), cells))

    async def _list_circuits(self, args: tuple[str, ...]) -> Output:
        rows = self.view.circuits()
        if not rows:
            return Output([], "no circuits")
        cells = [
            [str(r["id"]), ">".join(r["hops"]) or "-", r["state"], fmt.duration(r["age"]), fmt.size(r["bytes_sent"]),
             fmt.size(r["bytes_received"]), _datagrams(r), r["purpose"]]
            for r in rows
        ]
        headers = ("ID", "HOPS", "STATE", "AGE", "SENT", "RECEIVED", "DATAGRAMS", "SERVES")  # datagrams: out/in/dropped
        return Output(rows[: fmt.MAX_ROWS], fmt.table(headers, cells))

    async def _list_guards(self, args: tuple[str, ...]) -> Output:
        rows = self.view.guards()
        if not rows:
            return Output([], "no guards yet (they are chosen once relays are known)")
        cells = [
            [r["layer"], r["guard"], f"{r['added_days_ago']}d", f"{r['expires_in_days']}d", r["status"], str(r["failures"])]
            for r in rows
        ]
        return Output(rows[: fmt.MAX_ROWS], fmt.table(("LAYER", "GUARD", "ADDED", "EXPIRES IN", "STATUS", "FAILURES"), cells))

    async def _list_services(self, args: tuple[str, ...]) -> Output:
        rows = self.view.services()
        if not rows:
            return Output([], "no services")
        cells = [[r["name"], r["address"], ",".join(r["access_points"]) or "-"] for r in rows]
        return Output(rows[: fmt.MAX_ROWS], fmt.table(("NAME", "ADDRESS", "ACCESS POINTS"), cells))

    async def _list_sites(self, args: tuple[str, ...]) -> Output:
        rows = self.view.sites()
        if not rows:
            return Output([], "no sites (-publish NAME=DIR, -mirror ADDRESS or 'mirror ADDRESS')")
        cells = [[r["site"], str(r["seq"]), r["address"] or "-", str(r["syncs"]), _one_line(r.get("announcement", ""))] for r in rows]
        return Output(rows[: fmt.MAX_ROWS], fmt.table(("SITE", "SEQ", "MIRROR ADDRESS", "SYNCS", "LATEST ANNOUNCEMENT"), cells))

    async def _mirror(self, args: tuple[str, ...]) -> Output:
        result = self.view.mirror(args[0])
        return Output(result, f"mirroring {result['site']} (fetched, verified and served as a hidden service of its own)")

    async def _publish(self, args: tuple[str, ...]) -> Output:
        result = self.view.publish(args[0], args[1])
        return Output(result, f"site {args[0]}: seq {result['seq']} ({'announced to its mirrors' if result['changed'] else 'unchanged'})")

    async def _announce(self, args: tuple[str, ...]) -> Output:
        result = self.view.announce(args[0], args[1])
        return Output(result, f"site {result['name']}: announced to its mirrors and visitors")

    async def _send(self, args: tuple[str, ...]) -> Output:
        dest = parse_destination(args[0])
        message = args[1]
        size = len(message.encode("utf-8"))
        if size > MAX_TEXT:
            raise ConsoleError(f"message of {size} bytes; at most {MAX_TEXT}")
        try:
            result = await self.view.send(dest, message)
        except GnetError as exc:
            raise ConsoleError(f"not delivered: {exc}") from None
        return Output(result, f"delivered in {fmt.milliseconds(result['rtt_ms'])} {_how(result)}")

    async def _ping(self, args: tuple[str, ...]) -> Output:
        dest = parse_destination(args[0])
        if dest.node_id is None:
            raise ConsoleError("ping takes a node id")
        try:
            result = await self.view.ping(dest)
        except GnetError as exc:
            raise ConsoleError(f"no answer: {exc}") from None
        rtt = fmt.milliseconds(result["rtt_ms"])
        return Output(result, f"answer from {args[0].split('>')[-1][:8]} in {rtt} {_how(result)}")

    async def _circuit_close(self, args: tuple[str, ...]) -> Output:
        if not re.fullmatch(r"[0-9]{1,12}", args[0]):
            raise ConsoleError("usage: circuit close <id> (a number from 'list circuits')")
        what = self.view.close_circuit(int(args[0]))
        return Output({"closed": int(args[0]), "purpose": what}, f"closed circuit {args[0]} ({what})")

    async def _dht_get(self, args: tuple[str, ...]) -> Output:
        found = await self.view.dht_get(_dht_key(args[0]))
        if found is None:
            return Output(None, "not found")
        pairs = [("kind", str(found["kind"])), ("seq", str(found["seq"])),
                 ("expires", f"in {fmt.duration(found['expires'] - self.view.now())}")]
        record = found.get("record")
        if record is not None:
            pairs += [("node", record["id"]), ("addresses", ",".join(record["addresses"]) or "-"),
                      ("flags", ",".join(record["flags"]) or "-")]
        pairs.append(("value", f"{len(found['value']) // 2} bytes (json dht get shows them)"))
        return Output(found, fmt.key_values(pairs))

    async def _dht_put(self, args: tuple[str, ...]) -> Output:
        key = _dht_key(args[0])
        if len(args[1]) > MAX_VALUE_HEX or not re.fullmatch(r"(?:[0-9a-fA-F]{2})+", args[1]):
            raise ConsoleError(f"a value is hex (at most {MAX_VALUE_HEX} characters): a signed value as 'json dht get' shows it")
        stored = await self.view.dht_put(key, bytes.fromhex(args[1]))
        return Output({"stored_on": stored}, f"stored on {stored} nodes")

    async def _stats(self, args: tuple[str, ...]) -> Output:
        s = self.view.stats()
        pairs = [
            ("node", s["node_id"]),
            ("version", f"gclient {s['version']}"),
            ("uptime", fmt.duration(s["uptime"])),
            ("links", f"{s['links']} ({fmt.plural(s['connections'], 'QUIC connection')})"),
            ("peers", f"{s['relays_known']} relays known"),
            ("circuits", f"{s['circuits']} own, {s['message_circuits_in']} message circuits in"),
            ("relayed", (f"{fmt.size(s['bytes_relayed'])} for {s['circuits_served']} circuits "
                         f"({s['bridges']} bridges and {s['exits']} ends open)")),
            ("messages", f"{s['messages_received']} received"),
            ("crypto", s["crypto"]),
            ("memory", f"{fmt.size(s['rss_bytes'])} RSS"),
            ("consoles", str(s["consoles"])),
        ]
        if "udp_datagrams_out" in s:
            dropped = s["udp_dropped_window"] + s["udp_dropped_oversize"] + s["udp_dropped_other"]
            pairs.insert(-3, ("udp", (f"{s['udp_datagrams_out']} datagrams out, {s['udp_datagrams_in']} in, {dropped} dropped "
                                      f"({s['udp_dropped_window']} window full, {s['udp_dropped_oversize']} oversize)")))
        if "bootstrap" in s:  # after uptime: how far the node got, as its log says it
            pairs.insert(3, ("progress", _bootstrap_line(s["bootstrap"])))
        return Output(s, fmt.key_values(pairs))

    async def _log_level(self, args: tuple[str, ...]) -> Output:
        level = args[0].lower()
        if level not in LEVELS:
            raise ConsoleError(f"usage: log level <{'|'.join(LEVELS)}>")
        self.view.set_log_level(level)
        return Output({"level": level}, f"log level is {level}")


def _bootstrap_line(status: dict[str, Any]) -> str:
    """As the log says it: `bootstrapped 60% (joining the DHT)` or `ready (100%)`."""
    if status["ready"]:
        return "ready (bootstrapped 100%)"
    return f"bootstrapped {status['percent']}% ({status['phase']})"


def _how(result: dict[str, Any]) -> str:
    how = f"(circuit {result['circuit']}, {result['hops']} hops"
    if result.get("built_ms") is not None:
        how += f"; new circuit built in {fmt.milliseconds(result['built_ms'])}"
    return how + ")"


def _dht_key(text: str) -> bytes:
    if not _NODE_ID_RE.fullmatch(text):
        raise ConsoleError("a DHT key is 40 hex characters (a node id, a service key hash)")
    return bytes.fromhex(text)


def _error(message: str, as_json: bool) -> Output:
    if as_json:
        return Output(None, json.dumps({"ok": False, "error": message}))
    return Output(None, f"error: {message}")


def _datagrams(row: dict[str, Any]) -> str:
    """A UDP circuit's datagram counters (a TCP circuit has none)."""
    if "datagrams_out" not in row:
        return "-"
    return f"{row['datagrams_out']}/{row['datagrams_in']}/{row['dropped']}"


def _one_line(text: str, width: int = 48) -> str:
    """An announcement in a table cell: one line, cut to `width`, '-' for none."""
    flat = " ".join(text.split())
    return "-" if not flat else flat if len(flat) <= width else flat[: width - 1] + "…"
