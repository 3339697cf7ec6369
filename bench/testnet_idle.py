"""What idle nodes of a testnet cost: CPU per second, wake-ups per second, links, RSS.

Read from /proc only, so the measurement adds nothing to the nodes:
- CPU: utime + stime over the window (`cpu_seconds`);
- wake-ups: voluntary context switches over the window (an event loop that
  sleeps in epoll_wait and is woken by a timer or a datagram switches once
  per wake-up), plus involuntary ones (preempted: a loaded machine);
- links: every node runs alone in its network namespace, so
  /proc/PID/net/udp lists exactly its UDP sockets: the listener, and one
  connected socket per link it dialled (a dialled link owns its socket). A
  link accepted by a node is a socket of the dialling node whose remote
  address is the node's listen address; links(node) = dialled + accepted;
- RSS and PSS from smaps_rollup (`memory_mib`).
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

from bench.measure import cpu_seconds, memory_mib


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 3)


def _switches(pid: int) -> int:
    total = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def _hex_addr(text: str) -> tuple[str, int]:
    host, port = text.split(":")
    return socket.inet_ntoa(struct.pack("<I", int(host, 16))), int(port, 16)


def dialled_to(pid: int) -> list[tuple[str, int]]:
    """Remote addresses of the connected UDP sockets of a process alone in its namespace."""
    out = []
    try:
        with open(f"/proc/{pid}/net/udp") as f:
            next(f)
            for line in f:
                fields = line.split()
                remote = _hex_addr(fields[2])
                if remote[1] != 0:
                    out.append(remote)
    except (OSError, StopIteration):
        pass
    return out


def link_counts(pids: dict[str, int], addresses: dict[str, str]) -> dict[str, int]:
    """Links per node (dialled + accepted), from the nodes' sockets."""
    by_address = {address: name for name, address in addresses.items()}
    links = dict.fromkeys(pids, 0)
    for name, pid in pids.items():
        for host, _port in dialled_to(pid):
            links[name] += 1
            peer = by_address.get(host)
            if peer in links:
                links[peer] += 1
    return links


def sample_idle(pids: dict[str, int], addresses: dict[str, str], window: float) -> dict[str, Any]:
    """CPU %, wake-ups per second, links and RSS of each node over `window` seconds (medians, p90, max)."""

    def read() -> dict[str, tuple[float, int]]:
        got = {}
        for name, pid in pids.items():
            try:
                got[name] = (cpu_seconds(pid), _switches(pid))
            except OSError:
                pass
        return got

    before, began = read(), time.monotonic()
    time.sleep(window)
    after, took = read(), time.monotonic() - began
    cpu = [100 * (after[n][0] - before[n][0]) / took for n in after if n in before]
    wakeups = [(after[n][1] - before[n][1]) / took for n in after if n in before]
    links = list(link_counts(pids, addresses).values())
    rss = []
    for pid in pids.values():
        try:
            rss.append(memory_mib(pid)["rss"])
        except OSError:
            pass

    def stats(values: list[float]) -> dict[str, Any]:
        return {"median": _pct(values, 0.5), "p90": _pct(values, 0.9), "max": _pct(values, 1.0),
                "total": round(sum(values), 2)}  # fmt: skip

    return {
        "nodes": len(cpu),
        "window_s": round(took, 1),
        "cpu_percent": stats(cpu),
        "wakeups_per_s": stats(wakeups),
        "links": stats([float(x) for x in links]),
        "rss_mib": stats(rss),
    }
