"""A node whose entry guards all died while it was down (real gclient processes on 127.0.0.1).

Issue 17's 200-node testnet found such a node unable to build any circuit ("no entry guard
could be chosen") until its guards were replaced an hour later. Now it starts circuits at a
reserve guard of its sample at once and keeps its primaries. That it goes back to a primary
as soon as the primary answers a probe, and the probe schedule (60 s, doubling to 10 min),
are covered on a fake clock in tests/test_guards.py: waiting for a real re-probe here took
two minutes and timed out on a loaded machine.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from pathlib import Path

from globalnet.localnet import NodeProcess, free_port
from tests.console_net import Nc
from tests.identities import SeededLocalNet

#: From the restarted node's start to its first circuit: start-up, bootstrap, and three dead
#: primaries tried (a refused dial fails at once) before a reserve; generous for a loaded machine.
FIRST_CIRCUIT_WITHIN = 120.0


def _guards(node: NodeProcess) -> dict[str, list[dict[str, object]]]:
    return json.loads((node.data_dir / "guards.json").read_text())  # type: ignore[no-any-return]


def _ids(rows: list[dict[str, object]]) -> list[str]:
    return [str(r["node_id"]) for r in rows]


async def _console(port: int) -> Nc:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    greeting = (await asyncio.wait_for(reader.readline(), 30)).decode()
    return Nc(reader, writer, greeting)


async def _first_hop(nc: Nc, target: str) -> str | None:
    """Ping `target` through rand>rand>target; the short id of the circuit's first hop (None:
    no circuit), and close the circuit so the next ping builds a new one."""
    reply = await nc.cmd(f"ping {target}", timeout=90)
    found = re.search(r"\(circuit (\d+),", reply)
    if found is None:
        return None
    table = await nc.cmd("list circuits")
    row = next(line.split() for line in table.splitlines() if line.split()[:1] == [found.group(1)])
    await nc.cmd(f"circuit close {found.group(1)}")
    return row[1].split(">")[0]


async def test_a_node_whose_guards_died_while_it_was_down_builds_circuits_through_a_reserve(tmp_path: Path) -> None:
    net = SeededLocalNet(tmp_path)
    try:
        seed = net.relay("r0", "-exit", "-exit-allow", "127.0.0.1/32")
        relays = [seed] + [
            net.relay(f"r{i}", "-connect", seed.pinned, *(("-exit", "-exit-allow", "127.0.0.1/32") if i % 3 == 0 else ()))
            for i in range(1, 9)
        ]
        console = free_port()
        client = net.client("client", "-connect", seed.pinned, "-console", str(console))
        client.wait_for("ready", timeout=120)
        nc = await _console(console)
        deadline = time.monotonic() + 120
        while not all(r.node_id[:8] in known for known in [await nc.cmd("list peers")] for r in relays):
            assert time.monotonic() < deadline, "the client never learned every relay"
            await asyncio.sleep(1)
        hop = await _first_hop(nc, seed.node_id)  # the first circuit chooses the guards
        primaries = _ids(_guards(client)["entry"])
        assert len(primaries) == 3 and hop in {p[:8] for p in primaries}
        target = next(r for r in relays if r.node_id not in primaries)
        nc.close()
        client.stop()

        # every entry guard dies while the client is down
        dead = [r for r in relays if r.node_id in primaries]
        for relay in dead:
            relay.kill()
        alive = next(r for r in relays if r not in dead)
        shutil.move(client.log_path, client.log_path.with_suffix(".before"))
        console = free_port()
        again = NodeProcess("client", ["-no-listen", "-connect", alive.pinned, "-console", str(console)], client.data_dir)
        started = time.monotonic()
        again.start()
        net.nodes.append(again)
        again.wait_for("ready", timeout=FIRST_CIRCUIT_WITHIN)
        nc = await _console(console)
        first = None
        while first is None:
            assert time.monotonic() - started < FIRST_CIRCUIT_WITHIN, "no circuit after the guards died"
            first = await _first_hop(nc, target.node_id)
        took = time.monotonic() - started
        on_disk = _guards(again)
        assert _ids(on_disk["entry"]) == primaries  # the primaries are kept, not rotated away
        reserves = {r["node_id"][:8]: r for r in on_disk["entry_reserves"]}  # type: ignore[index]
        assert first in reserves and first not in {p[:8] for p in primaries}
        assert reserves[first]["last_ok"] is not None  # confirmed: the circuit started there
        assert len(on_disk["entry"]) + len(on_disk["entry_reserves"]) <= 12
        print(f"first circuit {took:.1f} s after the restart, through reserve {first}")

        nc.close()
    finally:
        net.stop_all()
