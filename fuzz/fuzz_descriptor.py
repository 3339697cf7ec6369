"""Hidden-service descriptors (service/descriptor.py): blinded, signed, layered values as the DHT stores them
and clients open them."""

from __future__ import annotations

from fuzz.harness import check, guarded, instrumented, main

with instrumented():
    import nacl.signing

    from globalnet.dht.values import validate_value
    from globalnet.errors import GnetError
    from globalnet.service.descriptor import (
        MAX_ACCESS_POINTS,
        AccessPointEntry,
        Descriptor,
        build_descriptor,
        descriptor_key,
        open_descriptor,
    )

ALLOWED = (GnetError,)
NOW = 1_800_000_000.0
PERIOD = int(NOW // 86400)
_KEY = nacl.signing.SigningKey(bytes(32))
SEED, PUBLIC = bytes(_KEY), bytes(_KEY.verify_key)
KEY = descriptor_key(PUBLIC, PERIOD)
_DESC = Descriptor(PERIOD, 7, int(NOW) + 3600, (AccessPointEntry(bytes(20), b"\1" * 20, b"\2" * 32),), bytes(32), 0)
VALUE = build_descriptor(SEED, PUBLIC, _DESC).encode()
SEEDS = [b"\x00" + VALUE, b"\x01" + VALUE]


def one_input(data: bytes) -> None:
    """First byte even: a client opens the value (found under the right key); odd: a DHT node validates it."""
    if not data:
        return
    if data[0] % 2 == 0:
        desc = open_descriptor(PUBLIC, KEY, data[1:], None, NOW)
        check(0 < len(desc.access_points) <= MAX_ACCESS_POINTS, "access points out of bounds")
        check(desc.expires > NOW, "an expired descriptor opened")
    else:
        validate_value(KEY, data[1:], NOW)


if __name__ == "__main__":
    main(guarded(one_input, ALLOWED), SEEDS)
