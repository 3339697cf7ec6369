"""A bridge hop's rules (sans-IO): XOR each direction, forward, enforce the budget.

Theory of operation. Once a hop is a bridge it parses nothing: every chunk
from the client side gets the forward keystream XORed in and goes toward the
exit; every chunk from the exit side gets the backward keystream and goes
toward the client. A rendezvous splice (two circuits that both end here) also
XORs the partner circuit's layer, so the two ends talk through us and we read
nothing.

The only rule a bridge can enforce without parsing is the end-to-end credit
window: a well-behaved end never has more than a window of DATA (plus control
frames) unacknowledged, so no direction of a circuit may queue more than
`max_queued` bytes here. The shell tells the core how many bytes are already
queued toward where a chunk goes; a chunk that would pass the cap raises
GnetError(RESOURCE_LIMIT) and the circuit is reset.

The core never reads a clock or touches a socket: `toward_exit()` and
`toward_client()` take bytes (and the queue size the shell measured) and
return the bytes to forward.
"""

from __future__ import annotations

from ..crypto import Keystream
from ..errors import ErrorKind, GnetError


class BridgeCore:
    """One bridge: two keystreams, an optional splice layer, and a queue cap."""

    __slots__ = ("_partner_layer", "backward", "bytes_relayed", "connected", "forward", "max_queued")

    def __init__(self, forward: Keystream, backward: Keystream, max_queued: int, connected: bool = True) -> None:
        self.forward = forward
        self.backward = backward
        self._partner_layer: Keystream | None = None
        #: False for a rendezvous half until it is spliced: it has nowhere to send.
        self.connected = connected
        self.max_queued = max_queued
        self.bytes_relayed = 0

    def splice(self, partner_layer: Keystream) -> None:
        """Join a rendezvous partner: what goes toward the exit also gains its layer."""
        self._partner_layer = partner_layer
        self.connected = True

    def toward_exit(self, data: bytes | bytearray, queued: int) -> bytes:
        """Bytes from the client side -> bytes to send on; `queued` is what already
        waits toward the next hop. Raises GnetError on a broken rule.
        (`Keystream.xor` writes the XORed copy in one pass: no copy first, then XOR.)"""
        if not self.connected:
            raise GnetError(ErrorKind.PROTOCOL, "data before the rendezvous completed")
        if queued + len(data) > self.max_queued:
            raise GnetError(ErrorKind.RESOURCE_LIMIT, "window overrun toward the next hop")
        out = self.forward.xor(data)
        if self._partner_layer is not None:
            out = self._partner_layer.xor(out)
        self.bytes_relayed += len(out)
        return out

    def toward_client(self, data: bytes | bytearray, queued: int) -> bytes:
        """Bytes from the exit side -> bytes to send toward the client."""
        if queued + len(data) > self.max_queued:
            raise GnetError(ErrorKind.RESOURCE_LIMIT, "window overrun toward the client")
        out = self.backward.xor(data)
        self.bytes_relayed += len(out)
        return out
