"""README's performance tables, from the last `make bench` and `make bench-wan` results.

    python -m bench.table                 # print the tables (Markdown)
    python -m bench.table --write-readme  # replace them in README.md, between the markers

Reads bench/results/latest.json (make bench) and bench/results/wan.json
(make bench-wan); a missing file leaves its table out. Every figure is the
median of the runs in that file, with the load average the bench recorded, so
a quiet re-run followed by `--write-readme` is all it takes to refresh README.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"

#: make bench rows: (label, metric, unit shown)
LOOPBACK_ROWS = (
    ("one connection, 100 MiB download", "tunnel_throughput_1conn", "MiB/s"),
    ("8 connections at once, aggregate", "tunnel_throughput_8conn", "MiB/s"),
    ("1 circuit (concurrency run)", "concurrency_1_throughput", "MiB/s"),
    ("8 circuits at once", "concurrency_8_throughput", "MiB/s"),
    ("32 circuits at once", "concurrency_32_throughput", "MiB/s"),
    ("128 circuits at once", "concurrency_128_throughput", "MiB/s"),
    ("bridge CPU per MiB, 1 / 128 circuits", ("concurrency_1_bridge_cpu", "concurrency_128_bridge_cpu"), "ms"),
    ("bridge CPU per MiB (relay2, one connection)", "relay_cpu_ms_per_mib", "ms"),
    ("relay RSS under load (8 connections)", "relay_rss", "MiB"),
    ("relay RSS, 1 / 8 / 32 / 128 circuits",
     ("concurrency_1_rss", "concurrency_8_rss", "concurrency_32_rss", "concurrency_128_rss"), "MiB"),
    ("1-byte ping-pong RTT, 3 hops", "rtt_pingpong", "ms"),
    ("time to first byte, new connection (circuit included)", "ttfb_new_connection", "ms"),
    ("3-hop circuit build", "circuit_build", "ms"),
    ("hidden service: first connect", "hs_first_connect", "ms"),
    ("hidden service: one download", "hs_throughput_1conn", "MiB/s"),
)  # fmt: skip

WAN_ROWS = (
    ("3-hop circuit build", "wan_circuit_build", "ms"),
    ("time to first byte, new connection", "wan_ttfb_new_connection", "ms"),
    ("one stream", "wan_throughput_1stream", "MiB/s"),
    ("8 streams at once, aggregate", "wan_throughput_8streams", "MiB/s"),
)


def _num(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _loads(meta: dict[str, Any]) -> str:
    ones = [la[0] for la in meta.get("load_avg_1_5_15", [])]
    return f"{min(ones):.1f}-{max(ones):.1f}" if ones else "?"


def loopback_table(result: dict[str, Any]) -> list[str]:
    metrics, meta = result["metrics"], result["meta"]
    lines = ["| metric | tunnel | plain TCP | ratio | target |", "| --- | --- | --- | --- | --- |"]
    for label, names, unit in LOOPBACK_ROWS:
        if isinstance(names, tuple):
            found = [metrics[n] for n in names if n in metrics]
            if len(found) != len(names):
                continue
            lines.append(f"| {label} | {' / '.join(_num(m['median']) for m in found)} {unit} | | | |")
            continue
        m = metrics.get(names)
        if m is None:
            continue
        tcp = m.get("baseline_tcp", {}).get("median")
        ratio = m.get("ratio")
        met = "" if "target_met" not in m else (" (met)" if m["target_met"] else " (MISSED)")
        lines.append(
            f"| {label} | {_num(m['median'])} {unit} | {'' if tcp is None else _num(tcp) + ' ' + unit} | "
            f"{'' if ratio is None else f'{ratio:.3f}'} | {m.get('target', '')}{met} |"
        )
    lines.append("")
    lines.append(f"`make bench`, {meta.get('when', '?')}, commit {meta.get('commit', '?')}, load average {_loads(meta)} "
                 f"(1 min, over the run), crypto {meta.get('crypto', '?')}, {meta.get('seconds', '?')} s.")  # fmt: skip
    return lines


def wan_table(result: dict[str, Any]) -> list[str]:
    metrics, meta = result["metrics"], result["meta"]
    lines = [
        "| over 20 ms per link | tunnel | plain TCP, same router | ratio | expected |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, name, unit in WAN_ROWS:
        m = metrics.get(name)
        if m is None:
            continue
        tcp = m.get("baseline_tcp", {}).get("median")
        if tcp is None and name == "wan_ttfb_new_connection" and "wan_tcp_ttfb" in metrics:
            tcp = metrics["wan_tcp_ttfb"]["median"]
        ratio = m.get("ratio")
        expected = m.get("expected_1rtt_per_hop")
        lines.append(
            f"| {label} | {_num(m['median'])} {unit} | {'' if tcp is None else _num(tcp) + ' ' + unit} | "
            f"{'' if ratio is None else f'{ratio:.2f}'} | {'' if expected is None else f'{expected} {unit} (1 RTT per hop)'} |"
        )
    one = metrics.get("wan_throughput_1stream", {})
    cpu = one.get("cpu_ms_per_mib", {})
    lines.append("")
    note = f"`make bench-wan`, {meta.get('when', '?')}, delay by {meta.get('delay', '?')}, load average {_loads(meta)}."
    if cpu:
        note += " CPU per MiB, one stream: " + ", ".join(f"{k} {v}" for k, v in cpu.items()) + " ms."
    if meta.get("delay", "").startswith("udp-proxy"):
        note += " FALLBACK (no namespaces): a UDP delay proxy on 127.0.0.1, no TCP baseline."
    lines.append(note)
    return lines


def tables(results: Path = RESULTS) -> str:
    out: list[str] = []
    for name, render in (("latest.json", loopback_table), ("wan.json", wan_table)):
        path = results / name
        if path.exists():
            if out:
                out.append("")
            out += render(json.loads(path.read_text()))
    return "\n".join(out)


def write_readme(text: str, readme: Path = README) -> None:
    content = readme.read_text()
    if START not in content or END not in content:
        raise SystemExit(f"{readme} has no {START} ... {END} markers")
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main() -> int:
    p = argparse.ArgumentParser(description="README's performance tables from bench/results/*.json")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--write-readme", action="store_true", help="replace the tables in README.md between the markers")
    args = p.parse_args()
    text = tables(args.results)
    if not text:
        print("no results: run `make bench` and/or `make bench-wan` first", file=sys.stderr)
        return 1
    if args.write_readme:
        write_readme(text)
        print(f"README.md: tables replaced from {args.results}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
