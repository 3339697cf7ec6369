"""Logging: events with key=value fields, human-readable or JSON, with redaction.

    log = get_logger("globalnet.node")
    log.info("linked to peer", peer=short_id(node_id))

Why a redaction step: a log line is the easiest place for a payload or a key to
leak. Whatever a call site passes, bytes values and anything named like a key or
a payload are replaced before rendering.

Why our own and not structlog (used until issue 17): structlog loads its whole
package on import (dev renderers, stdlib integration, twisted and threadlocal
shims, uuid and platform through them), about 1.4 MiB of every node process,
for the five methods and two renderers a node uses. The output is unchanged: a
JSON line `{fields..., "event", "level", "timestamp"[, "exception"]}` with
`--log-json`, else `2026-01-01 12:00:00 [info     ] event key=value ...`.

Until `setup_logging` runs (library use, in-process tests) every level goes to
stdout in the human format, as structlog's default did. `capture()` records the
events of a block for tests.
"""

from __future__ import annotations

import contextlib
import json as _json
import logging
import sys
import time
import traceback
from collections.abc import Iterator, MutableMapping
from typing import Any, TextIO

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_SECRET_WORDS = ("key", "payload", "secret", "password")


class _Output:
    """Where lines go and which pass: one per process, set by setup_logging()."""

    __slots__ = ("captures", "json", "level", "stream")

    def __init__(self) -> None:
        self.level = logging.DEBUG
        self.json = False
        self.stream: TextIO | None = None  # None: sys.stdout at the time of each line
        self.captures: list[list[dict[str, Any]]] = []


_out = _Output()


def redact(event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace bytes values and fields named like a secret ("[redacted]"); `event` itself is kept."""
    for field, value in list(event.items()):
        if field == "event":
            continue
        if isinstance(value, (bytes, bytearray, memoryview)) or field == "data" or any(
            w in field.lower() for w in _SECRET_WORDS
        ):
            event[field] = "[redacted]"
    return event


class Logger:
    """What a module logs through. Level filtering is global (`set_level`), as in structlog's
    filtering loggers; a filtered-out call costs one comparison."""

    __slots__ = ("name",)

    def __init__(self, name: str | None) -> None:
        self.name = name

    def debug(self, event: str, **fields: Any) -> None:
        if _out.captures or _out.level <= logging.DEBUG:
            _emit(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        if _out.captures or _out.level <= logging.INFO:
            _emit(logging.INFO, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        if _out.captures or _out.level <= logging.WARNING:
            _emit(logging.WARNING, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        if _out.captures or _out.level <= logging.ERROR:
            _emit(logging.ERROR, "error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """`error` with the exception being handled (its traceback as the `exception` field)."""
        fields.setdefault("exc_info", True)
        self.error(event, **fields)


def get_logger(name: str | None = None) -> Logger:
    return Logger(name)


def _exception_text(exc_info: Any) -> str | None:
    if exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if not isinstance(exc_info, tuple) or len(exc_info) != 3 or exc_info[0] is None:
        return None
    return "".join(traceback.format_exception(*exc_info)).rstrip("\n")


def _value_text(value: Any) -> str:
    """A value in the human format: a plain word as is, anything else as its repr (so a peer's
    string with a space, a newline or an escape sequence cannot pass for other fields or lines)."""
    if isinstance(value, str) and value and value.isprintable() and " " not in value:
        return value
    return repr(value)


def _emit(level: int, level_name: str, event: str, fields: dict[str, Any]) -> None:
    try:
        exc_info = fields.pop("exc_info", None)
        for captured in _out.captures:
            captured.append({**fields, "event": event, "log_level": level_name})
        if level < _out.level:
            return
        redact(fields)
        now = time.time()
        exception = _exception_text(exc_info) if exc_info else None
        if _out.json:
            fields["event"] = event
            fields["level"] = level_name
            fields["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
            if exception is not None:
                fields["exception"] = exception
            line = _json.dumps(fields, default=repr)
        else:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
            pairs = "".join(f" {k}={_value_text(fields[k])}" for k in sorted(fields))
            line = f"{stamp} [{level_name:<9}] {event}{pairs}"
            if exception is not None:
                line += "\n" + exception
        stream = _out.stream or sys.stdout
        stream.write(line + "\n")
        stream.flush()
    except Exception:  # noqa: BLE001, S110 (a log line must never take the node down)
        pass


def setup_logging(level: str = "info", json: bool = False, stream: Any = None) -> None:
    _out.level = LEVELS.get(level, logging.INFO)
    _out.json = json
    _out.stream = stream or sys.stderr
    # qh3, asyncio, kademlia speak through the standard library: their lines go
    # through ours (same format, same redaction), never raw to stderr
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _FromStdlib):
            root.removeHandler(handler)
    root.addHandler(_FromStdlib())
    root.setLevel(logging.WARNING)  # below that, qh3 would format a line per packet
    # kademlia/rpcudp log every unanswered RPC at error level; our dht/ logs what matters
    for name in ("kademlia", "rpcudp"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def set_level(level: str) -> None:
    _out.level = LEVELS[level]


def level() -> str:
    """The current level's name (a tool that quiets the logs for a while restores it)."""
    return next((name for name, value in LEVELS.items() if value == _out.level), "debug")


@contextlib.contextmanager
def capture() -> Iterator[list[dict[str, Any]]]:
    """The events logged inside the block, every level, as dicts (fields, `event`, `log_level`),
    before redaction; lines are still written as configured. For tests."""
    captured: list[dict[str, Any]] = []
    _out.captures.append(captured)
    try:
        yield captured
    finally:
        _out.captures.remove(captured)


#: Libraries whose warnings are about a peer, not about us ("Native peer close",
#: a lost datagram): debug level. Anything else keeps its level.
_PEER_CHATTER = ("quic", "qh3", "kademlia", "rpcudp")
_library = Logger("library")


class _FromStdlib(logging.Handler):
    """A standard-library record as one of our events, with the field `library`."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            fields: dict[str, Any] = {"library": record.name}
            if record.exc_info and record.levelno >= logging.ERROR:
                fields["exc_info"] = record.exc_info
            if record.name.split(".")[0] in _PEER_CHATTER:
                _library.debug(message, **fields)
            elif record.levelno >= logging.ERROR:
                _library.error(message, **fields)
            else:
                _library.warning(message, **fields)
        except Exception:  # noqa: BLE001 (a log line must never take the node down)
            self.handleError(record)
