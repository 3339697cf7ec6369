"""Console lines (console/commands.py): a command line and a destination, as a console user types them."""

from __future__ import annotations

from fuzz.harness import check, guarded, instrumented, main

with instrumented():
    from globalnet.console.commands import ConsoleError, parse_destination, parse_line

ALLOWED = (ConsoleError,)
SEEDS = [
    b"\x00json status",
    b"\x00msg 0123456789abcdef0123456789abcdef01234567 hello there",
    b"\x00dht get 0123456789abcdef0123456789abcdef01234567",
    b"\x01127.0.0.1:9000>rand>0123456789abcdef0123456789abcdef01234567",
    b"\x01abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvw.gnet",
]


def one_input(data: bytes) -> None:
    """First byte even: a whole line; odd: a destination. Text is UTF-8 with replacement."""
    if not data:
        return
    text = data[1:].decode("utf-8", "replace")
    if data[0] % 2 == 0:
        inv = parse_line(text)
        if inv is not None:
            check(len(inv.args) == len(inv.spec.params), "arguments do not match the command")
    else:
        parse_destination(text)


if __name__ == "__main__":
    main(guarded(one_input, ALLOWED), SEEDS)
