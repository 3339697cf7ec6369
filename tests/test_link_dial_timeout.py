"""A dial that gets no answer fails as GnetError(TIMEOUT) and closes its link (found by make testnet).

The dial timeout used to surface as a bare TimeoutError (the `asyncio.timeout`
block raises it only on exit, past the handler meant for it), so callers that
handle GnetError (the DHT's dial-and-send, link upkeep) logged "task failed"
with a traceback, and the half-made link stayed open.
"""

from __future__ import annotations

import socket

import pytest

from globalnet.errors import ErrorKind, GnetError
from globalnet.link.manager import LinkManager, LinkSettings
from tests.identities import next_identity


async def test_dial_to_a_silent_port_is_a_timeout_gnet_error() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))  # takes the QUIC Initial and never answers
    port = silent.getsockname()[1]
    identity = next_identity()
    links = LinkManager(identity, lambda: identity.make_record(()), LinkSettings(dial_timeout=0.5))
    try:
        with pytest.raises(GnetError) as caught:
            await links.get_link("127.0.0.1", port, None)
        assert caught.value.kind is ErrorKind.TIMEOUT
        assert not links.links
    finally:
        links.close()
        silent.close()
