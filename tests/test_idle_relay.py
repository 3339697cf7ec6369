"""What an idle relay holds (issue 17: memory per node), in real `gclient` processes.

A relay linked to a seed, its DHT joined, relaying nothing: the process has loaded
none of the modules it has no use for (faces, site/, the message service, hosted
services, the config-file parser, ctypes; bench/node_memory.py's list) and runs a
single thread (no resolver thread left idling after -listen). The running process
says what it loaded (SIGUSR1, `state modules`), so this checks the real node, not an
import of its modules. `make memory` measures what the rest costs.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

from bench.node_memory import NOT_FOR_IDLE
from tests.identities import SeededLocalNet


def test_an_idle_relay_loads_nothing_it_does_not_use_and_runs_one_thread() -> None:
    with tempfile.TemporaryDirectory(prefix="gnet-idle-") as base:
        net = SeededLocalNet(Path(base))
        try:
            seed = net.relay("seed")
            relay = net.relay("relay", "-connect", seed.address)
            relay.wait_for("ready", timeout=120)
            time.sleep(3)  # its first upkeep round (DHT join, peer exchange) runs
            assert relay.proc is not None
            threads = len(os.listdir(f"/proc/{relay.proc.pid}/task"))
            relay.proc.send_signal(signal.SIGUSR1)
            state = relay.wait_for("state modules", timeout=60)
        finally:
            net.stop_all()
    loaded = set(str(state["names"]).split())
    assert int(str(state["count"])) >= len(loaded) > 100  # the line lists the process's modules
    assert "globalnet.relay.server" in loaded and "globalnet.dht.participant" in loaded
    assert sorted(m for m in NOT_FOR_IDLE if m in loaded) == []
    assert threads == 1
