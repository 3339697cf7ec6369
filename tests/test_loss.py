"""Lossy and stalled links, in network namespaces: transfers stay intact, nothing hangs.

Real `gclient` processes: four relays over two /16 networks, an exit, a
byte server and a client with a 3-hop `rand` tunnel, every host-to-host
packet delayed 10 ms and 2 % of them dropped (tests/netns.py: netem, or the
user-space TUN router where the kernel has no netem). A 2 MiB download must
arrive byte for byte. Then the exit's link is cut (its veth down) in the
middle of a download: the client's connection must end (reset or closed)
within the links' idle timeout plus slack, not hang; once the link is back,
a new connection through the tunnel works again. Skipped, saying why, where
namespaces cannot be made.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from globalnet.localnet import NodeProcess
from tests.netns import BYTE_SERVER, LabUnavailable, NetnsLab, unavailable_reason
from tests.test_netns import start_node

pytestmark = pytest.mark.long(seconds=25)  # wall seconds here alone: run early (tests/conftest.py)

PORT = 9000
TUNNEL_PORT = 8000
SERVE_PORT = 7000
SIZE = 2 * 1024 * 1024
IDLE_TIMEOUT = 6.0
#: A client that reads SIZE bytes from the tunnel and prints how many and their sha256.
_READER = """
import hashlib, socket, sys, time
s = socket.create_connection(("127.0.0.1", {port}), timeout={timeout})
h, n, began = hashlib.sha256(), 0, time.monotonic()
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        h.update(chunk); n += len(chunk)
except OSError as exc:
    print("error", type(exc).__name__, n, round(time.monotonic() - began, 1), flush=True); sys.exit(0)
print("done", n, h.hexdigest(), round(time.monotonic() - began, 1), flush=True)
"""

EXPECTED = hashlib.sha256(bytes(range(256)) * (SIZE // 256)).hexdigest()


@pytest.fixture
def lossy_lab() -> Iterator[NetnsLab]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"network namespaces unavailable: {reason}")
    try:
        made = NetnsLab(delay_ms=10.0, loss=0.02)
    except LabUnavailable as exc:
        pytest.skip(f"network namespaces unavailable: {exc}")
    try:
        yield made
    finally:
        made.close()


def _read(lab_host_exec: list[str], timeout: float) -> list[str]:
    done = subprocess.run(
        lab_host_exec + [sys.executable, "-c", _READER.format(port=TUNNEL_PORT, timeout=timeout)],
        capture_output=True, text=True, timeout=timeout + 30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_transfer_over_lossy_links_is_intact_and_a_cut_link_does_not_hang(lossy_lab: NetnsLab, tmp_path: Path) -> None:
    lab = lossy_lab
    names = (("r1", 1), ("r2", 2), ("r3", 1), ("exit", 2))
    hosts = {name: lab.add_host(name, net) for name, net in names}
    web = lab.add_host("web", 3)
    client_host = lab.add_host("client", 4)
    try:
        kind = lab.add_delay()
    except LabUnavailable as exc:
        pytest.skip(str(exc))
    lab.popen(web.exec + [sys.executable, "-c", BYTE_SERVER, web.address, str(SERVE_PORT), str(SIZE)])
    idle = ["-idle-timeout", str(IDLE_TIMEOUT)]
    nodes: dict[str, NodeProcess] = {}
    try:
        first = hosts["r1"]
        nodes["r1"] = start_node("r1", first, tmp_path, ["-listen", f"{first.address}:{PORT}", *idle])
        seed = f"{first.address}:{PORT}#{nodes['r1'].node_id}"
        for name, _ in names[1:]:
            args = ["-listen", f"{hosts[name].address}:{PORT}", "-connect", seed, *idle]
            if name == "exit":
                args += ["-exit", "-exit-allow", f"{web.address}/32"]
            nodes[name] = start_node(name, hosts[name], tmp_path, args)
        for name, _ in names[1:]:
            nodes[name].wait_for("linked to peer", timeout=60)
        path = f"{TUNNEL_PORT}>rand>rand>rand>{web.address}:{SERVE_PORT}"
        client = start_node("client", client_host, tmp_path, ["-no-listen", "-connect", seed, "-tunnel", path, *idle])
        nodes["client"] = client
        client.wait_for("tunnel listening", timeout=60)

        # 2 % loss: the download arrives whole (QUIC retransmits; no byte lost or changed)
        for _ in range(2):
            words = _read(client_host.exec, timeout=120)
            assert words[0] == "done", words
            assert int(words[1]) == SIZE and words[2] == EXPECTED, words
        print(f"\nloss: {SIZE >> 20} MiB through 3 hops at 2 % loss, 10 ms one way ({kind}): {words[3]} s")

        # a cut link: the exit's veth goes down during a download
        exit_index = list(lab.hosts).index("exit") + 1
        reader = subprocess.Popen(
            client_host.exec + [sys.executable, "-c", _READER.format(port=TUNNEL_PORT, timeout=300)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.0)
        subprocess.run(["ip", "-n", lab.router, "link", "set", f"v{exit_index}", "down"], check=True, timeout=20)
        cut_at = time.monotonic()
        try:
            out, _ = reader.communicate(timeout=IDLE_TIMEOUT + 60)
        except subprocess.TimeoutExpired:
            reader.kill()
            pytest.fail("a download over a cut link hung past the idle timeout")
        ended_after = time.monotonic() - cut_at
        words = out.split()
        # a reset, never a clean close that would pass a truncated download off as complete
        assert words[0] == "error" or (int(words[1]) == SIZE and words[2] == EXPECTED), words
        print(f"cut link: the client's connection ended {ended_after:.1f} s after the cut ({' '.join(words[:2])})")
        subprocess.run(["ip", "-n", lab.router, "link", "set", f"v{exit_index}", "up"], check=True, timeout=20)

        # the link is back: a new connection gets everything again
        deadline = time.monotonic() + 120
        while True:
            words = _read(client_host.exec, timeout=60)
            if words[0] == "done" and int(words[1]) == SIZE:
                assert words[2] == EXPECTED
                break
            assert time.monotonic() < deadline, f"no recovery after the link came back: {words}"
            time.sleep(2)
    finally:
        for node in reversed(list(nodes.values())):
            node.stop(timeout=5)
