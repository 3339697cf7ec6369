"""Node records (wire/records.py) as links, PEERS and the DHT receive them, signature checked."""

from __future__ import annotations

from fuzz.harness import check, guarded, instrumented, main

with instrumented():
    from globalnet.dht.values import validate_value
    from globalnet.errors import GnetError
    from globalnet.identity import Identity, verify_node_record
    from globalnet.wire.records import MAX_ADDRESSES, MAX_RECORD_SIZE, decode_node_record

ALLOWED = (GnetError,)
NOW = 1_800_000_000.0
_ID = Identity.generate()
_RECORD = _ID.make_record((("127.0.0.1", 9000), ("::1", 9001)), exit_policy="accept *:443", now=NOW)
SEEDS = [b"\x00" + _RECORD.encode(), b"\x01" + _RECORD.encode(), b"\x02" + _ID.node_id + b"\x01" + _RECORD.encode()]


def one_input(data: bytes) -> None:
    """First byte: 0 decode only, 1 decode + verify, 2 a DHT value under a key (20 bytes)."""
    if not data:
        return
    mode, body = data[0] % 3, data[1:]
    if mode == 0:
        record = decode_node_record(body)
        check(len(body) <= MAX_RECORD_SIZE and len(record.addresses) <= MAX_ADDRESSES, "record beyond bounds")
        check(decode_node_record(record.encode()) == record, "record does not survive encode/decode")
    elif mode == 1:
        record = verify_node_record(body, NOW)
        check(record.expires > NOW, "an expired record verified")
    else:
        validate_value(body[:20], body[20:], NOW)


if __name__ == "__main__":
    main(guarded(one_input, ALLOWED), SEEDS)
