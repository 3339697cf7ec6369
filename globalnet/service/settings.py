"""What the operator configures for a hidden service this node hosts.

Lives in service/ (not config.py) so the service layer imports nothing above
itself: config.py builds these from the command line and the node hands them down.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..policy.exit_rule import ExitRule


@dataclass(frozen=True)
class ServiceConfig:
    """A hidden service this node hosts: each session goes to `target`."""

    name: str
    target: tuple[str, int]
    allow: tuple[ExitRule, ...] = ()  # targets a client may choose instead (none by default)
    udp: bool = False  # NAME=udp:HOST:PORT: sessions carry datagrams to a UDP target
    auth: bool = False  # only clients in services/NAME/authorized_clients/ may connect
