"""Logging set-up: structlog, human-readable or JSON, with redaction.

Why a redaction processor: a log line is the easiest place for a payload or a
key to leak. Whatever a call site passes, bytes values and anything named like
a key or a payload are replaced before rendering.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_SECRET_WORDS = ("key", "payload", "secret", "password")


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for field, value in list(event.items()):
        if field == "event":
            continue
        if isinstance(value, (bytes, bytearray, memoryview)) or field == "data" or any(
            w in field.lower() for w in _SECRET_WORDS
        ):
            event[field] = "[redacted]"
    return event


def setup_logging(level: str = "info", json: bool = False, stream: Any = None) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S" if not json else "iso", utc=json),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    # qh3, asyncio, kademlia speak through the standard library: their lines go
    # through structlog (same format, same redaction), never raw to stderr
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _ToStructlog):
            root.removeHandler(handler)
    root.addHandler(_ToStructlog())
    root.setLevel(logging.WARNING)  # below that, qh3 would format a line per packet
    # kademlia/rpcudp log every unanswered RPC at error level; our dht/ logs what matters
    for name in ("kademlia", "rpcudp"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


#: Libraries whose warnings are about a peer, not about us ("Native peer close",
#: a lost datagram): debug level. Anything else keeps its level.
_PEER_CHATTER = ("quic", "qh3", "kademlia", "rpcudp")


class _ToStructlog(logging.Handler):
    """A standard-library record as a structlog event, named `library`."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            logger = structlog.get_logger("library")
            message = record.getMessage()
            fields: dict[str, Any] = {"library": record.name}
            if record.exc_info and record.levelno >= logging.ERROR:
                fields["exc_info"] = record.exc_info
            if record.name.split(".")[0] in _PEER_CHATTER:
                logger.debug(message, **fields)
            elif record.levelno >= logging.ERROR:
                logger.error(message, **fields)
            else:
                logger.warning(message, **fields)
        except Exception:  # noqa: BLE001 (a log line must never take the node down)
            self.handleError(record)


def set_level(level: str) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]))
