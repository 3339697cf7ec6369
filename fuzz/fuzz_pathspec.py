"""Path specs and peer addresses (wire/pathspec.py): -tunnel/-proxy specs, -connect, -listen."""

from __future__ import annotations

from fuzz.harness import check, guarded, instrumented, main

with instrumented():
    from globalnet.wire.host_port import PathSpecError, parse_listen
    from globalnet.wire.pathspec import (
        format_hop_addr,
        format_path_spec,
        parse_hop_addr,
        parse_path_spec,
        parse_peer_list,
    )

ALLOWED = (PathSpecError,)
SEEDS = [
    b"\x00127.0.0.1:9000>rand>[::1]:9001#0123456789abcdef0123456789abcdef01234567>tcp:example.org:80",
    b"\x00rand>rand>rand>internet",
    b"\x00rand>abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvw.gnet:80",
    b"\x01127.0.0.1:9000#0123456789abcdef0123456789abcdef01234567",
    b"\x02127.0.0.1:9000,[::1]:9001,localhost:9002",
    b"\x03:9050",
]


def one_input(data: bytes) -> None:
    """First byte picks the parser; text is UTF-8 with replacement (argv and TOML are text)."""
    if not data:
        return
    mode, text = data[0] % 4, data[1:].decode("utf-8", "replace")
    if mode == 0:
        spec = parse_path_spec(text)
        check(parse_path_spec(format_path_spec(spec)) == spec, "a path spec does not survive format/parse")
    elif mode == 1:
        hop = parse_hop_addr(text)
        check(0 < hop.port < 65536, "hop port out of range")
        check(parse_hop_addr(format_hop_addr(hop)) == hop, "a hop does not survive format/parse")
    elif mode == 2:
        parse_peer_list(text)
    else:
        _, port = parse_listen(text)
        check(0 <= port < 65536, "listen port out of range")


if __name__ == "__main__":
    main(guarded(one_input, ALLOWED), SEEDS)
