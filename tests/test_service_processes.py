"""The README's 3-relay network by hand (gclient processes on 127.0.0.1) hosts a hidden
service that a client reaches by tunnel and by SOCKS, with client authorization."""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

from globalnet.localnet import fetch_via_socks, free_port, hosted_address, web_server
from tests.identities import SeededLocalNet


def _get(port: int, deadline: float) -> bytes:
    """GET / through a tunnel, retried while the client still learns relays and finds the descriptor."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while True:
        try:
            with opener.open(f"http://127.0.0.1:{port}/", timeout=30) as resp:
                return resp.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def test_the_readme_network_by_hand_hosts_an_authorized_service(tmp_path: Path) -> None:
    net = SeededLocalNet(tmp_path)
    try:
        with web_server() as web:
            r1 = net.relay("r1")
            net.relay("r2", "-connect", r1.pinned)
            net.relay("r3", "-connect", r1.pinned, "-exit", "-exit-allow", "127.0.0.1/32")
            alice = tmp_path / "alice"
            key = net_key(alice)
            clients = tmp_path / "svc" / "services" / "web" / "authorized_clients"
            clients.mkdir(parents=True)
            (clients / "alice.auth").write_text(key + "\n")
            svc = net.client("svc", "-connect", r1.pinned, "-service", f"web=127.0.0.1:{web},auth")
            svc.wait_for("small network: 1 access point(s) instead of 3; 3 more relays would give all 3", timeout=60)
            svc.wait_for("service descriptor published", timeout=90)
            address = hosted_address(svc, "web")
            assert address not in svc.log_path.read_text()  # the log never names the service

            tunnel, socks = free_port(), free_port()
            net.client(
                "alice", "-connect", r1.pinned, "-tunnel", f"{tunnel}>{address}",
                "-proxy", f"{socks}>rand>rand>rand>internet",
            ).wait_for("socks proxy listening")
            assert b"Hello from GlobalNet" in _get(tunnel, time.monotonic() + 90)
            assert b"Hello from GlobalNet" in fetch_via_socks(socks, address, 80, timeout=60)

            # a client whose key is not listed: SOCKS says "not authorized" (Tor's 0xF4)
            other = free_port()
            net.client("bob", "-connect", r1.pinned, "-proxy", f"{other}>rand>rand>rand>internet").wait_for("socks proxy listening")
            assert _socks_reply(other, address) == 0xF4
    finally:
        net.stop_all()


def net_key(data_dir: Path) -> str:
    import subprocess

    from globalnet.localnet import GCLIENT_CMD, ROOT

    out = subprocess.run(
        [*GCLIENT_CMD, "-data-dir", str(data_dir), "--gen-client-key"],
        capture_output=True, text=True, check=True, cwd=ROOT, timeout=60,
    )
    return out.stdout.strip()


def _socks_reply(port: int, name: str) -> int:
    deadline = time.monotonic() + 90
    while True:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            s.sendall(b"\x05\x01\x00" + b"\x05\x01\x00\x03" + bytes([len(name)]) + name.encode() + (80).to_bytes(2, "big"))
            reply = b""
            while len(reply) < 6 and (chunk := s.recv(6 - len(reply))):
                reply += chunk
        code = reply[3] if len(reply) >= 4 else -1  # after the method choice (2 bytes): VER REP
        if code not in (0x03, 0x06, -1) or time.monotonic() > deadline:  # still learning relays: try again
            return code
        time.sleep(1.0)
