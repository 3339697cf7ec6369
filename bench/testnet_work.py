"""The workload one testnet client runs inside its namespace (bench/testnet.py starts it).

Round after round until --duration is over: a download through the -tunnel
port, one through the SOCKS port to the byte server, one to each hidden
service through SOCKS, and a DHT lookup of a relay's record through the
console. Prints one JSON line per operation: what, ok, time to first byte,
throughput, and whether the bytes were exactly the byte server's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import sys
import time

END_MARK = "zz-end-of-reply"


def expected_digest(size: int) -> str:
    return hashlib.sha256((bytes(range(256)) * (size // 256 + 1))[:size]).hexdigest()


def _drain(sock: socket.socket, began: float, size: int) -> dict[str, object]:
    h, n, first = hashlib.sha256(), 0, None
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        if first is None:
            first = time.monotonic()
        h.update(chunk)
        n += len(chunk)
    end = time.monotonic()
    intact = n == size and h.hexdigest() == expected_digest(size)
    took = end - (first or end)
    return {
        "ok": intact,
        "bytes": n,
        "intact": intact,
        "corrupt": n >= size and not intact,
        "lost": max(0, size - n) if n < size else 0,
        "ttfb_ms": round(((first or end) - began) * 1000, 1),
        "mbps": round(n * 8 / took / 1e6, 2) if took > 0 else None,
    }


def fetch_tunnel(port: int, size: int, timeout: float) -> dict[str, object]:
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        return _drain(sock, began, size)


def fetch_socks(port: int, host: str, target_port: int, size: int, timeout: float) -> dict[str, object]:
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"\x05\x01\x00")
        if sock.recv(2) != b"\x05\x00":
            return {"ok": False, "error": "socks greeting refused"}
        name = host.encode()
        sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + target_port.to_bytes(2, "big"))
        reply = b""
        while len(reply) < 10:
            more = sock.recv(10 - len(reply))
            if not more:
                return {"ok": False, "error": "socks closed"}
            reply += more
        if reply[1] != 0:
            return {"ok": False, "error": f"socks reply {reply[1]}"}
        return _drain(sock, began, size)


def dht_lookup(console: socket.socket, key: str) -> dict[str, object]:
    began = time.monotonic()
    console.sendall(f"json dht get {key}\n{END_MARK}\n".encode())
    data = b""
    while END_MARK.encode() not in data:
        more = console.recv(65536)
        if not more:
            return {"ok": False, "error": "console closed"}
        data += more
    # the reply's JSON line, then the console's "unknown command" answer to the end mark
    text = data.decode(errors="replace").split(END_MARK)[0].strip().splitlines()[0]
    try:
        found = json.loads(text).get("result") is not None
    except (json.JSONDecodeError, AttributeError):
        found = False
    result: dict[str, object] = {"ok": found, "ms": round((time.monotonic() - began) * 1000, 1)}
    if not found:
        result["error"] = text[:200]
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tunnel", type=int, required=True)
    p.add_argument("--socks", type=int, required=True)
    p.add_argument("--console", type=int, required=True)
    p.add_argument("--web", required=True, help="HOST:PORT of the byte server")
    p.add_argument("--services", default="", help="NAME.gnet addresses, comma separated")
    p.add_argument("--lookups", default="", help="node ids (hex) whose records to look up")
    p.add_argument("--size", type=int, default=256 * 1024)
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--timeout", type=float, default=90, help="socket timeout: above the proxy's own 60 s for a service, so its answer is seen")
    ns = p.parse_args()
    web_host, web_port = ns.web.rsplit(":", 1)
    services = [s for s in ns.services.split(",") if s]
    lookups = [k for k in ns.lookups.split(",") if k]
    deadline = time.monotonic() + ns.duration
    console = socket.create_connection(("127.0.0.1", ns.console), timeout=ns.timeout)
    console.recv(4096)  # the greeting
    rnd = 0
    while time.monotonic() < deadline:
        ops = [("tunnel", lambda: fetch_tunnel(ns.tunnel, ns.size, ns.timeout)),
               ("socks", lambda: fetch_socks(ns.socks, web_host, int(web_port), ns.size, ns.timeout))]  # fmt: skip
        for addr in services:
            ops.append(("service", lambda a=addr: fetch_socks(ns.socks, a, 80, ns.size, ns.timeout)))  # type: ignore[misc]
        if lookups:
            key = lookups[rnd % len(lookups)]
            ops.append(("dht", lambda k=key: dht_lookup(console, k)))  # type: ignore[misc]
        for what, op in ops:
            started = time.time()
            try:
                result = op()
            except OSError as exc:
                result = {"ok": False, "error": type(exc).__name__}
            result.update(op=what, at=round(started, 2), took=round(time.time() - started, 2))
            print(json.dumps(result), flush=True)
            if time.monotonic() >= deadline:
                break
        rnd += 1
    console.close()


if __name__ == "__main__":
    sys.exit(main())
