"""Profile a relay under load: the bench network, downloads through the
tunnel, and py-spy (if installed) recording relay2 (a pure bridge) meanwhile.

    python -m bench.profile_relay [--seconds 10] [--syscalls]

Prints py-spy's top functions (by own time and by total time) and, with
--syscalls, the datagram sizes and syscalls strace sees on relay2. Not part of
`make bench`; this is how the profile in the README was taken.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.measure import MiB, Network, Targets, cpu_seconds, download


def load(host: str, port: int, stop: threading.Event, moved: list[int]) -> None:
    while not stop.is_set():
        download(host, port, 20 * MiB)
        moved[0] += 20


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--syscalls", action="store_true", help="strace relay2 for 2 s: syscall counts and datagram sizes")
    p.add_argument("--node", default="relay2")
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "relay-profile.txt")
    p.add_argument("--summarize", type=Path, help="only summarize an existing py-spy raw file")
    args = p.parse_args()
    if args.summarize:
        summarize(args.summarize)
        return 0
    targets = Targets()
    tmp = tempfile.TemporaryDirectory(prefix="gnet-prof-")
    net = Network(Path(tmp.name), targets)
    try:
        net.start()
        pid = net.pids[args.node]
        download("127.0.0.1", net.tunnel_ports["source"], MiB)
        stop, moved = threading.Event(), [0]
        worker = threading.Thread(target=load, args=("127.0.0.1", net.tunnel_ports["source"], stop, moved))
        worker.start()
        time.sleep(0.5)
        c0, m0, t0 = cpu_seconds(pid), moved[0], time.monotonic()
        if args.syscalls and shutil.which("strace"):
            out = subprocess.run(["timeout", "-s", "INT", "2", "strace", "-f", "-p", str(pid), "-e", "trace=network", "-s", "0"],
                                 capture_output=True, text=True, check=False).stderr
            calls = collections.Counter(m.group(1) for m in re.finditer(r"^(?:\[pid\s+\d+\] )?(\w+)\(", out, re.MULTILINE))
            sizes = collections.Counter(int(m.group(1)) for m in re.finditer(r"(?:sendto|recvfrom|sendmsg|recvmsg)\(.*= (\d+)$", out, re.MULTILINE))
            print("syscalls in 2 s:", dict(calls.most_common(8)))
            print("datagram sizes (bytes: count):", dict(sizes.most_common(6)))
        elif shutil.which("py-spy"):
            subprocess.run(["py-spy", "record", "-p", str(pid), "-d", str(int(args.seconds)), "-r", "200", "-n",
                            "-f", "raw", "-o", str(args.out)], check=True, capture_output=True)
            summarize(args.out)
        else:
            time.sleep(args.seconds)
        c1, t1 = cpu_seconds(pid), time.monotonic()
        stop.set()
        worker.join()
        mib = moved[0] - m0
        print(f"{args.node}: {c1 - c0:.2f} s CPU over {t1 - t0:.1f} s, about {mib} MiB relayed "
              f"(~{(c1 - c0) * 1000 / max(mib, 1):.1f} ms/MiB; profiler overhead included)")
    finally:
        net.stop()
        targets.stop()
        tmp.cleanup()
    return 0


CATEGORIES = (  # first match wins, on the innermost frame
    ("syscalls (UDP send/recv)", re.compile(r"^(sendto|sendmsg|sendmmsg|recvfrom|recvmsg|recvmmsg|__libc_send|__libc_recv)")),
    ("XOR layers (C extension)", re.compile(r"_gnetcrypto")),
    ("QUIC native core (qh3 _hazmat)", re.compile(r"_hazmat")),
    ("qh3 Python layer", re.compile(r"\(qh3/")),
    ("asyncio", re.compile(r"\((asyncio|selectors)")),
    ("globalnet Python", re.compile(r"\(globalnet/")),
)


def category(frames: list[str]) -> str:
    for frame in reversed(frames):
        if frame.startswith("0x") and "(libc" in frame:
            continue  # an unnamed libc frame: look at its caller
        for name, pattern in CATEGORIES:
            if pattern.search(frame):
                return name
        return "other: " + frame.split(" (")[0]
    return "other"


def summarize(path: Path, top: int = 25) -> None:
    """py-spy's raw (collapsed) stacks -> busy time by category and by function.

    Idle samples (the event loop in epoll_wait, the executor thread waiting)
    are left out: percentages are of the time the relay was on a CPU."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    cats: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "epoll_wait" in stack or "_worker (concurrent" in stack:
            continue
        n = int(count)
        frames = [re.sub(r" \(.*?/(site-packages|globalnet|lib/python3\.\d+)/", r" (\1/", f).replace("(site-packages/", "(").replace("(lib/python3.11/", "(")
                  for f in stack.split(";")]
        samples += n
        own[frames[-1]] += n
        cats[category(frames)] += n
        for f in set(frames):
            total[f] += n
    print(f"{samples} busy samples; by category:")
    for c, n in cats.most_common(12):
        print(f"  {100 * n / samples:5.1f}%  {c}")
    print("own time, top functions:")
    for f, n in own.most_common(top):
        print(f"  {100 * n / samples:5.1f}%  {f}")
    print("total time (inclusive), top functions:")
    for f, n in total.most_common(top):
        print(f"  {100 * n / samples:5.1f}%  {f}")


if __name__ == "__main__":
    sys.exit(main())
