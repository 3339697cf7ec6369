"""The owner's announcements for visitors (sans-IO): a bounded store and the list a mirror serves.

Why: a site's owner can send small signed notes ("moved to seq 5", "down for
maintenance") that every visitor sees, without a server of its own. An
announcement is an ANNOUNCE broadcast (broadcast.py), signed by the site key
and flooded among the mirrors as updates are. Every mirror (the publisher
too) keeps the latest MAX_KEPT verified ones per site, in memory only (a
restarted mirror learns them again from the others on its next sync), and
answers the ANNOUNCEMENTS request (protocol.py) with them. A visitor's node
checks every signature against the site key again, so a mirror can drop
announcements but never forge one nor pass one of another site off as this
site's; it serves them at ANNOUNCEMENTS_PATH, a path no manifest may hold
(manifest.check_path reserves the `.gnet/` folder).

Wire of the list (big-endian): count u8 (<= MAX_KEPT) | count x blob16(broadcast message).
"""

from __future__ import annotations

import datetime
from collections import OrderedDict
from collections.abc import Iterable

from ..errors import ProtocolError
from ..wire.buffer import Reader, blob16, u8
from .broadcast import MAX_BODY, MAX_MESSAGE, BroadcastKind, BroadcastMessage, decode_message, is_text
from .manifest import RESERVED_FOLDER

MAX_KEPT = 8  # announcements kept (and served) per site, newest first
MAX_SITES = 256  # sites whose announcements a node keeps (least recently added forgotten first)
MAX_LIST = 1 + MAX_KEPT * (2 + MAX_MESSAGE)
ANNOUNCEMENTS_PATH = RESERVED_FOLDER + "/announcements.txt"  # served as text/plain, never from a manifest


def announcement_body(text: str) -> bytes:
    """The body of an ANNOUNCE for `text`; ValueError says why it cannot be one."""
    body = text.encode("utf-8")
    if not body or len(body) > MAX_BODY:
        raise ValueError(f"an announcement has 1 to {MAX_BODY} bytes of UTF-8")
    if not is_text(body):
        raise ValueError("an announcement is printable text")
    return body


class AnnouncementStore:
    """The latest verified announcements of each site, bounded per site and in the number of sites."""

    def __init__(self) -> None:
        self._sites: OrderedDict[bytes, list[BroadcastMessage]] = OrderedDict()

    def add(self, message: BroadcastMessage) -> bool:
        """Keep a verified ANNOUNCE (decode_message or our own make_message); False if already kept or too old."""
        if message.kind is not BroadcastKind.ANNOUNCE:
            raise ValueError("only announcements are kept")
        kept = self._sites.pop(message.site_key, [])
        self._sites[message.site_key] = kept
        while len(self._sites) > MAX_SITES:
            self._sites.popitem(last=False)
        if any(m.message_id == message.message_id for m in kept):
            return False
        kept.append(message)
        kept.sort(key=lambda m: (m.timestamp, m.message_id), reverse=True)
        del kept[MAX_KEPT:]
        return message in kept

    def latest(self, site_key: bytes) -> list[BroadcastMessage]:
        """Newest first."""
        return list(self._sites.get(site_key, ()))

    def encode(self, site_key: bytes) -> bytes:
        kept = self.latest(site_key)
        return u8(len(kept)) + b"".join(blob16(m.encode(), MAX_MESSAGE) for m in kept)


def decode_announcements(data: bytes, site_key: bytes) -> list[BroadcastMessage]:
    """A mirror's list, every message verified as an announcement signed by `site_key`; ProtocolError if not."""
    if len(data) > MAX_LIST:
        raise ProtocolError(f"an announcement list of {len(data)} bytes exceeds {MAX_LIST}")
    reader = Reader(data)
    count = reader.pull_u8()
    if count > MAX_KEPT:
        raise ProtocolError(f"{count} announcements; at most {MAX_KEPT}")
    messages = [decode_message(reader.pull_blob16(MAX_MESSAGE)) for _ in range(count)]
    reader.expect_end()
    for message in messages:
        if message.site_key != site_key:
            raise ProtocolError("an announcement signed by another key")
        if message.kind is not BroadcastKind.ANNOUNCE:
            raise ProtocolError("not an announcement")
    return messages


def render(messages: Iterable[BroadcastMessage]) -> bytes:
    """The text a visitor reads at ANNOUNCEMENTS_PATH (text/plain: nothing in it is markup)."""
    lines = ["Signed announcements from this site's owner, newest first (each checked against the site key).", ""]
    shown = 0
    for message in messages:
        lines += [f"-- {_utc(message.timestamp)}", message.body.decode("utf-8"), ""]
        shown += 1
    if not shown:
        lines.append("(none yet)")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _utc(timestamp: int) -> str:
    try:
        return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return f"t={timestamp}"
