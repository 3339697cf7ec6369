"""Logging set-up: structlog, human-readable or JSON, with redaction.

Why a redaction processor: a log line is the easiest place for a payload or a
key to leak. Whatever a call site passes, bytes values and anything named like
a key or a payload are replaced before rendering.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_SECRET_WORDS = ("key", "payload", "secret", "password")


def redact(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
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
    # qh3 and asyncio speak through the standard library; keep them quiet below warnings
    logging.basicConfig(level=logging.WARNING, stream=stream or sys.stderr)
    # kademlia/rpcudp log every unanswered RPC at error level; our dht/ logs what matters
    for name in ("kademlia", "rpcudp"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def set_level(level: str) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]))
