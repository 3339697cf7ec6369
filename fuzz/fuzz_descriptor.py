"""Hidden-service descriptors (service/descriptor.py) as the DHT stores and clients fetch them."""

from __future__ import annotations

from fuzz.harness import check, guarded, instrumented, main

with instrumented():
    import nacl.signing

    from globalnet.dht.values import validate_value
    from globalnet.errors import GnetError
    from globalnet.service.descriptor import (
        MAX_ACCESS_POINTS,
        Descriptor,
        current_period,
        decode_descriptor,
        verify_descriptor,
    )

ALLOWED = (GnetError,)
NOW = 1_800_000_000.0
_KEY = nacl.signing.SigningKey(bytes(32))
_PERIOD = current_period(NOW)
_DESC = Descriptor(bytes(_KEY.verify_key), _PERIOD, 5, int(NOW) + 3600, (bytes(20), b"\x01" * 20))
_DESC = Descriptor(**{**_DESC.__dict__, "signature": _KEY.sign(_DESC.signed_part()).signature})
SEEDS = [b"\x00" + _DESC.encode(), b"\x01" + _DESC.key + _DESC.encode(), b"\x02" + _DESC.key + _DESC.encode()]


def one_input(data: bytes) -> None:
    """First byte: 0 decode; 1 key (20 bytes) + value verified as a client does; 2 as the DHT stores it."""
    if not data:
        return
    mode, body = data[0] % 3, data[1:]
    if mode == 0:
        desc = decode_descriptor(body)
        check(0 < len(desc.access_points) <= MAX_ACCESS_POINTS, "access points out of bounds")
        check(decode_descriptor(desc.encode()) == desc, "descriptor does not survive encode/decode")
    elif mode == 1:
        desc = verify_descriptor(body[:20], body[20:], NOW)
        check(desc.expires > NOW, "an expired descriptor verified")
    else:
        validate_value(body[:20], body[20:], NOW)


if __name__ == "__main__":
    main(guarded(one_input, ALLOWED), SEEDS)
