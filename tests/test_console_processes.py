"""The demo (`make demo`: real gclient processes) prints its console, and the console answers like nc expects."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from globalnet.localnet import ROOT, free_port
from tests.console_net import END_MARK

pytestmark = pytest.mark.long(seconds=12)  # wall seconds here alone: run early (tests/conftest.py)


def three_free_udp_ports() -> int:
    """BASE such that BASE..BASE+2 are free on 127.0.0.1 (UDP and TCP) right now."""
    for _ in range(50):
        base = free_port(socket.SOCK_DGRAM)
        try:
            for port in (base + 1, base + 2):
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    with socket.socket(socket.AF_INET, kind) as s:
                        s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no three free ports in a row")


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, command: str) -> str:
    writer.write(f"{command}\n{END_MARK}\n".encode())
    lines = []
    while END_MARK not in (line := (await asyncio.wait_for(reader.readline(), 30)).decode()):
        assert line, "console closed the connection"
        lines.append(line.rstrip("\n"))
    return "\n".join(lines)


def test_demo_prints_its_console_and_the_console_works(tmp_path: Path) -> None:
    console_port = free_port()
    cmd = [sys.executable, "-m", "globalnet.localnet", "--dir", str(tmp_path), "--base-port", str(three_free_udp_ports()),
           "--web-port", "0", "--tunnel-port", str(free_port()), "--console-port", str(console_port),
           "--proxy-port", "0", "--service-port", "0"]
    demo = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        assert demo.stdout is not None
        printed = []
        for line in demo.stdout:
            printed.append(line)
            if line.strip().startswith("nc 127.0.0.1"):
                break
        text = "".join(printed)
        assert f"  nc 127.0.0.1 {console_port}\n" in text, text
        ids = dict(re.findall(r"^  (relay\d|client)\s+([0-9a-f]{40})", text, re.MULTILINE))
        addresses = dict(re.findall(r"^  (relay\d)\s+[0-9a-f]{40}\s+(127\.0\.0\.1:\d+)", text, re.MULTILINE))
        assert set(ids) == {"relay1", "relay2", "relay3", "client"}, text

        async def session() -> None:
            async with asyncio.timeout(40):
                reader, writer = await asyncio.open_connection("127.0.0.1", console_port)
                greeting = (await reader.readline()).decode()
                assert ids["client"] in greeting and "help" in greeting
                links = json.loads(await ask(reader, writer, "json list links"))["result"]
                assert [row["peer"] for row in links] == [ids["relay1"]]
                stats = json.loads(await ask(reader, writer, "json stats"))["result"]
                assert stats["node_id"] == ids["client"] and stats["links"] == 1
                # through relay2 and relay3 to relay1 (relay3 is linked to it): relay1 logs the message
                path = f"{addresses['relay2']}#{ids['relay2']}>{addresses['relay3']}#{ids['relay3']}>{ids['relay1']}"
                reply = await ask(reader, writer, f"send {path} hello relay1")
                assert reply.startswith("delivered in ") and "3 hops" in reply, reply
                writer.write(b"quit\n")
                assert (await reader.read()).decode().endswith("bye\n")
                writer.close()

        asyncio.run(session())
        log = (tmp_path / "relay1" / "node.log").read_text()
        events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        shown = [e for e in events if e.get("event") == "console message received"]
        assert [(e["level"], e["text"]) for e in shown] == [("info", "hello relay1")]
    finally:
        demo.send_signal(signal.SIGTERM)
        try:
            demo.wait(20)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait(5)


def test_demo_says_which_node_died_and_exits_and_its_web_server_stays_quiet(tmp_path: Path) -> None:
    web_port, metrics_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "globalnet.localnet", "--dir", str(tmp_path), "--base-port", str(three_free_udp_ports()),
           "--web-port", str(web_port), "--tunnel-port", str(free_port()), "--metrics-port", str(metrics_port),
           "--proxy-port", "0", "--service-port", "0"]
    demo = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        assert demo.stdout is not None
        printed = []
        for line in demo.stdout:
            printed.append(line)
            if line.startswith("Ctrl-C stops"):
                break
        text = "".join(printed)
        assert f"http://127.0.0.1:{metrics_port}/" in text and "other names refused before DNS" in text, text
        # a client that resets its connection to the demo's web page: no traceback
        with socket.create_connection(("127.0.0.1", web_port)) as s:
            s.sendall(b"GET / HTTP/1.1\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        # the demo's nodes log at info: no debug lines in their files
        client_log = (tmp_path / "client" / "node.log").read_text()
        assert '"level": "info"' in client_log and '"level": "debug"' not in client_log
        relay2_pid = int((tmp_path / "relay2" / "lock").read_text())
        os.kill(relay2_pid, signal.SIGKILL)
        rest, _ = demo.communicate(timeout=60)
        assert demo.returncode == 1
        assert "localnet: relay2 exited" in rest and "Traceback" not in text + rest, rest
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGTERM)
            demo.wait(20)
