"""globalnet/logs.py: the node's log lines (what an operator reads and tools parse)."""

from __future__ import annotations

import io
import json
import re

import pytest

from globalnet import logs
from globalnet.logs import get_logger, setup_logging


@pytest.fixture
def out() -> io.StringIO:
    stream = io.StringIO()
    yield stream
    setup_logging("info", False)


def test_json_lines_carry_fields_event_level_and_utc_timestamp(out: io.StringIO) -> None:
    setup_logging("info", True, out)
    get_logger("t").info("linked to peer", peer="ab12", count=3, pair=(1, 2), nothing=None, other=object())
    (line,) = out.getvalue().splitlines()
    event = json.loads(line)
    assert list(event)[:5] == ["peer", "count", "pair", "nothing", "other"]
    assert event["event"] == "linked to peer" and event["level"] == "info"
    assert event["count"] == 3 and event["pair"] == [1, 2] and event["nothing"] is None
    assert event["other"].startswith("<object object")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", event["timestamp"])


def test_human_lines_sort_fields_and_quote_what_could_pass_for_more(out: io.StringIO) -> None:
    setup_logging("debug", False, out)
    get_logger().warning("stream reset", reason="peer closed", peer="ab12", text="a\nb\x1b[2J", n=2)
    (line,) = out.getvalue().splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[warning  \] stream reset n=2 peer=ab12 reason='peer closed' "
        r"text='a\\nb\\x1b\[2J'",
        line,
    )


def test_keys_payloads_and_bytes_are_redacted(out: io.StringIO) -> None:
    setup_logging("debug", True, out)
    get_logger().info("x", onion_key="k", payload="p", data="d", password="s", blob=b"\x00", size=5)
    event = json.loads(out.getvalue())
    assert {k: event[k] for k in ("onion_key", "payload", "data", "password", "blob")} == dict.fromkeys(
        ("onion_key", "payload", "data", "password", "blob"), "[redacted]"
    )
    assert event["size"] == 5


def test_levels_filter_and_set_level_changes_them(out: io.StringIO) -> None:
    setup_logging("warning", True, out)
    log = get_logger()
    log.debug("d")
    log.info("i")
    log.warning("w")
    logs.set_level("debug")
    assert logs.level() == "debug"
    log.debug("d2")
    assert [json.loads(x)["event"] for x in out.getvalue().splitlines()] == ["w", "d2"]


def test_exception_adds_the_traceback_and_never_raises(out: io.StringIO) -> None:
    setup_logging("info", True, out)
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger().exception("task failed", task="t")
    event = json.loads(out.getvalue())
    assert event["level"] == "error" and event["task"] == "t"
    assert event["exception"].startswith("Traceback") and event["exception"].endswith("ValueError: boom")
    closed = io.StringIO()
    closed.close()
    setup_logging("info", True, closed)
    get_logger().info("to a closed stream")  # dropped, not raised


def test_capture_records_every_level_unredacted(out: io.StringIO) -> None:
    setup_logging("warning", False, out)
    with logs.capture() as events:
        get_logger().debug("quiet", reason="why")
        get_logger().error("loud", key="k")
    assert events == [
        {"reason": "why", "event": "quiet", "log_level": "debug"},
        {"key": "k", "event": "loud", "log_level": "error"},
    ]
    get_logger().error("after")
    assert len(events) == 2
    assert "quiet" not in out.getvalue() and "key=[redacted]" in out.getvalue()
