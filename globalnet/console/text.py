"""Plain text for people: durations, sizes, aligned tables (no I/O).

The console keeps raw values (seconds, bytes, lists) for `json <command>` and
formats them only here, so the two outputs cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

#: A list command shows at most this many rows (and says how many it left out).
MAX_ROWS = 500


def duration(seconds: float | None) -> str:
    """`45s`, `2m05s`, `1h02m`, `3d04h`; `-` for unknown."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def size(n: int | None) -> str:
    """`512 B`, `1.5 KiB`, `12.0 MiB`; `-` for unknown."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def milliseconds(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], total: int | None = None) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    shown = list(rows[:MAX_ROWS])
    widths = [len(h) for h in headers]
    for row in shown:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *shown]:
        cells = [cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    total = len(rows) if total is None else total
    if total > len(shown):
        lines.append(f"... and {total - len(shown)} more (json shows the first {MAX_ROWS} too)")
    return "\n".join(lines)


def plural(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def key_values(pairs: Sequence[tuple[str, str]]) -> str:
    """`name   value` lines, names padded to the longest."""
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in pairs)
