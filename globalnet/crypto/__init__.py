"""Circuit crypto: the Noise NK hop handshake and the per-hop layer ciphers.

Import from here. The layer ciphers (``Keystream``, ``xor_layers``,
``AeadSealer``, ``AeadOpener``) come from the C extension when it is built
and from the pure-Python reference otherwise; ``BACKEND_NAME`` says which
(see ``backend.py``). Nothing here touches sockets or clocks.
"""

from globalnet.crypto.backend import (
    BACKEND_NAME,
    AeadOpener,
    AeadSealer,
    DecryptError,
    Keystream,
    xor_layers,
)
from globalnet.crypto.layers import MAX_KEYSTREAM_BYTES
from globalnet.crypto.noise import (
    HandshakeError,
    InitiatorState,
    ResponderState,
    TransportKeys,
    initiator_finish,
    initiator_start,
    responder_read,
    responder_write,
)

__all__ = [
    "BACKEND_NAME",
    "MAX_KEYSTREAM_BYTES",
    "AeadOpener",
    "AeadSealer",
    "DecryptError",
    "HandshakeError",
    "InitiatorState",
    "Keystream",
    "ResponderState",
    "TransportKeys",
    "initiator_finish",
    "initiator_start",
    "responder_read",
    "responder_write",
    "xor_layers",
]
