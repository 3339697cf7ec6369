"""The console of real nodes (in this process, real QUIC and TCP on 127.0.0.1), driven like nc.

Every answer is checked against the node's own state: its links, the circuit
of a live tunnel, messages between two nodes three relays apart.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from globalnet.wire.pathspec import HopAddr
from globalnet.wire.records import short_id
from tests.console_net import Nc, cluster, pinned, wait_linked
from tests.targets import EchoServer, serve


def nid(node: object) -> str:
    return node.identity.node_id.hex()  # type: ignore[attr-defined]


async def test_links_peers_and_stats_match_the_node(tmp_path: Path) -> None:
    async with asyncio.timeout(30), cluster(tmp_path) as c:
        r1 = await c.relay("r1")
        r2 = await c.relay("r2", "-exit", "-exit-allow", "127.0.0.1/32")
        me = await c.start("me", "-no-listen", "-console", "0", "-connect", f"{pinned(r1)},{pinned(r2)}")
        await wait_linked(me, r1, r2)
        nc = await Nc.connect(me)
        assert nid(me) in nc.greeting and "help" in nc.greeting

        text = await nc.cmd("list links")
        lines = text.splitlines()
        assert lines[0].split()[:3] == ["PEER", "ADDRESS", "AGE"]
        rows = {line.split()[0]: line.split()[1] for line in lines[1:]}
        assert rows == {nid(r): f"127.0.0.1:{r.links.listen_address[1]}" for r in (r1, r2)}  # type: ignore[index]

        doc = json.loads(await nc.cmd("json list links"))
        assert doc["ok"] and {row["peer"] for row in doc["result"]} == {nid(r1), nid(r2)}
        for row in doc["result"]:
            link = me.links.links[bytes.fromhex(row["peer"])]
            assert 0 < row["bytes_in"] <= link.total_in and 0 < row["bytes_out"] <= link.total_out

        peers = (await nc.cmd("list peers")).splitlines()[1:]
        flags = {line.split()[0]: line.split()[2:4] for line in peers}
        assert flags == {nid(r1): ["relay", "yes"], nid(r2): ["relay,exit", "yes"]}
        assert {row["id"] for row in json.loads(await nc.cmd("json list peers"))["result"]} == {
            r.node_id.hex() for r in me.peers.relays()
        }

        stats = await nc.cmd("stats")
        assert f"node      {nid(me)}" in stats and "links     2 (" in stats and "RSS" in stats
        assert "peers     2 relays known" in stats
        doc = json.loads(await nc.cmd("json stats"))["result"]
        assert doc["links"] == 2 and doc["circuits"] == 0 and doc["rss_bytes"] > 1_000_000 and doc["consoles"] == 1
        assert await nc.cmd("list services") == "no services"
        nc.close()


async def test_a_tunnel_circuit_appears_with_its_hops_and_goes_when_closed(tmp_path: Path) -> None:
    async with asyncio.timeout(40), serve(EchoServer()) as echo, cluster(tmp_path) as c:
        r1, r2 = await c.relay("r1"), await c.relay("r2")
        r3 = await c.relay("r3", "-exit", "-exit-allow", "127.0.0.1/32")
        path = f"0>{pinned(r1)}>{pinned(r2)}>{pinned(r3)}>127.0.0.1:{echo}"
        me = await c.start("me", "-no-listen", "-console", "0", "-tunnel", path)
        nc = await Nc.connect(me)
        assert await nc.cmd("list circuits") == "no circuits"

        reader, writer = await asyncio.open_connection("127.0.0.1", me.tunnels[0].port)
        writer.write(b"ping through three relays")
        assert await reader.readexactly(25) == b"ping through three relays"
        text = await nc.cmd("list circuits")
        _, row = text.splitlines()
        cells = row.split()
        (circuit_id,) = me.circuits
        hops = ">".join(short_id(r.identity.node_id) for r in (r1, r2, r3))
        assert cells[:3] == [str(circuit_id), hops, "open"] and cells[-1] == "tunnel"
        doc = json.loads(await nc.cmd("json list circuits"))["result"]
        assert doc == [me.circuits[circuit_id].statistics() | {"age": doc[0]["age"]}]
        assert doc[0]["bytes_sent"] == 25 and doc[0]["bytes_received"] == 25

        writer.close()  # the application ends: the circuit ends with it
        async with asyncio.timeout(10):
            while await nc.cmd("list circuits") != "no circuits":
                await asyncio.sleep(0.05)

        # `circuit close` cuts a live tunnel connection: the application sees a reset, not a clean end
        reader, writer = await asyncio.open_connection("127.0.0.1", me.tunnels[0].port)
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        (circuit_id,) = me.circuits
        assert await nc.cmd(f"circuit close {circuit_id}") == f"closed circuit {circuit_id} (tunnel)"
        try:
            assert await asyncio.wait_for(reader.read(), 5) == b"", "a closed circuit must not look like a clean end"
            raise AssertionError("clean end after circuit close")
        except ConnectionResetError:
            pass
        assert await nc.cmd("list circuits") == "no circuits"
        assert await nc.cmd(f"circuit close {circuit_id}") == f"error: no circuit {circuit_id}; see 'list circuits'"
        writer.close()


async def knows(node: object, *others: object, timeout: float = 10) -> None:
    """Wait until `node`'s peer table has the others' records (PEERS from its links)."""
    async with asyncio.timeout(timeout):
        while not all(o.identity.node_id in node.peers for o in others):  # type: ignore[attr-defined]
            await asyncio.sleep(0.02)


async def test_send_between_two_nodes_three_relays_apart(tmp_path: Path) -> None:
    async with asyncio.timeout(40), cluster(tmp_path) as c:
        r1 = await c.relay("r1")
        r2, r3 = await c.relay("r2", "-connect", pinned(r1)), await c.relay("r3", "-connect", pinned(r1))
        target = await c.relay("target", "-console", "0", "-connect", f"{pinned(r3)},{pinned(r1)}")
        await wait_linked(r1, r2, r3, target)
        # the sender learns the relays and the destination's record from r1 (PEERS), as any node would
        sender = await c.start("sender", "-no-listen", "-console", "0", "-connect", pinned(r1))
        await knows(sender, r1, r2, r3, target)
        watcher, other = await Nc.connect(target), await Nc.connect(target)
        nc = await Nc.connect(sender)
        path = f"{pinned(r1)}>{pinned(r2)}>{pinned(r3)}>{nid(target)}"

        reply = await nc.cmd(f"send {path} hello from three relays away")
        assert reply.startswith("delivered in ") and "4 hops" in reply and "new circuit built" in reply
        shown = await watcher.wait_for_line("message from circuit")
        (inbound_id,) = target.messages.circuits
        assert shown == f"message from circuit {inbound_id}: hello from three relays away"
        assert (await other.wait_for_line("message from circuit")) == shown  # every console client sees it
        # the destination's circuit comes from the last relay, never from the sender
        assert target.messages.circuits[inbound_id].end.upstream.link.peer_id == r3.identity.node_id  # type: ignore[attr-defined]

        # the circuit stays open and is reused: same id, nothing built
        (out_id,) = sender.circuits
        assert f"circuit {out_id}," in reply
        again = await nc.cmd(f"send {path} and again")
        assert again.startswith("delivered in ") and f"(circuit {out_id}, 4 hops)" in again
        assert (await watcher.wait_for_line("message from")) == f"message from circuit {inbound_id}: and again"
        circuits = json.loads(await nc.cmd("json list circuits"))["result"]
        assert [(r["id"], r["purpose"], r["hops"]) for r in circuits] == [
            (out_id, "message", [short_id(n.identity.node_id) for n in (r1, r2, r3, target)])
        ]
        inbound = json.loads(await watcher.cmd("json list circuits"))["result"]
        assert [(r["id"], r["purpose"], r["hops"]) for r in inbound] == [(inbound_id, "message (in)", [])]

        pong = await nc.cmd(f"ping {path}")
        assert pong.startswith(f"answer from {nid(target)[:8]} in ") and f"circuit {out_id}," in pong

        # the same path through the node's own API: the hops the console parsed
        via = tuple(HopAddr("127.0.0.1", r.links.listen_address[1], r.identity.node_id) for r in (r1, r2, r3))  # type: ignore[index]
        delivery = await sender.messenger.send(target.identity.node_id, "line one\nline two \x1b[2J", via)
        assert delivery.circuit == out_id and delivery.built is None
        escaped = await watcher.wait_for_line("message from")
        assert escaped == f"message from circuit {inbound_id}: line one\\nline two \\x1b[2J"

        # closing the circuit from the console: the next send builds a new one
        assert await nc.cmd(f"circuit close {out_id}") == f"closed circuit {out_id} (message)"
        fresh = await nc.cmd(f"send {path} after close")
        assert "new circuit built" in fresh and f"circuit {out_id}," not in fresh
        assert (await watcher.wait_for_line("message from")).endswith(": after close")

        # no path given: rand>rand>the destination, chosen by the node
        default = await nc.cmd(f"send {nid(target)} by the default path")
        assert default.startswith("delivered in ") and "3 hops" in default, default
        (auto,) = [c for c in sender.circuits.values() if len(c.path) == 3]
        assert auto.path[-1] == target.identity.node_id and sender.identity.node_id not in auto.path
        assert target.identity.node_id not in auto.path[:2]  # (the first is one of the sender's guards)
        assert (await watcher.wait_for_line("message from")).endswith(": by the default path")
        assert target.messages.received == 5
        for client in (watcher, other, nc):
            client.close()


async def test_idle_message_circuits_close_cleanly_on_both_ends(tmp_path: Path) -> None:
    async with asyncio.timeout(30), cluster(tmp_path) as c:
        r1 = await c.relay("r1")
        target = await c.relay("target", "-connect", pinned(r1))
        await wait_linked(r1, target)
        sender = await c.start("sender", "-no-listen", "-console", "0", "-connect", pinned(r1))
        await knows(sender, target)
        sender.messenger.idle_timeout = 0.3
        nc = await Nc.connect(sender)
        assert (await nc.cmd(f"send {pinned(r1)}>{nid(target)} short-lived")).startswith("delivered in ")
        assert len(sender.circuits) == 1 and len(target.messages.circuits) == 1
        async with asyncio.timeout(5):
            while sender.circuits or target.messages.circuits:
                await asyncio.sleep(0.05)
        assert await nc.cmd("list circuits") == "no circuits"
        nc.close()


async def test_failures_say_why(tmp_path: Path) -> None:
    async with asyncio.timeout(30), cluster(tmp_path) as c:
        r1 = await c.relay("r1")
        r2 = await c.relay("r2", "-connect", pinned(r1))
        await wait_linked(r1, r2)
        sender = await c.start("sender", "-no-listen", "-console", "0", "-connect", pinned(r1))
        await knows(sender, r1, r2)
        nc = await Nc.connect(sender)
        unknown = "0123456789" * 4
        reply = await nc.cmd(f"send {pinned(r1)}>{pinned(r2)}>{unknown} anyone there?")
        # neither the peer table nor the DHT knows it
        assert reply == "error: not delivered: no route to the next hop: hop 3 (01234567): unknown node, no address found"
        assert not [c for c in sender.circuits.values() if c.purpose == "message"]
        assert (await nc.cmd(f"send {nid(sender)} me")) == "error: not delivered: no route to the next hop: that is this node's own id"
        answer = await nc.cmd("send abcdef.gnet hi")
        assert answer.startswith("error: not delivered: ") and "not a .gnet address" in answer
        assert (await nc.cmd(f"ping {pinned(r1)}>{unknown}")).startswith("error: no answer: ")
        assert await nc.cmd("circuit close 424242") == "error: no circuit 424242; see 'list circuits'"
        nc.close()


async def test_dht_get_and_put_through_the_console(tmp_path: Path) -> None:
    async with asyncio.timeout(30), cluster(tmp_path) as c:
        r1 = await c.relay("r1")
        r2, r3 = await c.relay("r2", "-connect", pinned(r1)), await c.relay("r3", "-connect", pinned(r1))
        me = await c.start("me", "-no-listen", "-console", "0", "-connect", pinned(r1))
        nc = await Nc.connect(me)
        key = nid(r2)
        async with asyncio.timeout(20):  # until r2 has published its record
            while (found := json.loads(await nc.cmd(f"json dht get {key}"))["result"]) is None:
                await asyncio.sleep(0.2)
        assert found["record"] == {"id": key, "flags": ["relay"], "addresses": [f"127.0.0.1:{r2.links.listen_address[1]}"]}  # type: ignore[index]
        assert found["kind"] == 1 and found["value"].startswith("01")  # a node record, signed by r2
        text = await nc.cmd(f"dht get {key}")
        assert f"node       {key}" in text and "flags      relay" in text
        assert (await nc.cmd(f"dht put {key} {found['value']}")).startswith("stored on ")  # a signed value: accepted
        assert await nc.cmd(f"dht put {nid(r3)} {found['value']}") == (
            "error: not stored: node record stored under another node's id"
        )
        assert (await nc.cmd(f"dht put {key} 02abcd")).startswith("error: not stored: ")
        assert await nc.cmd(f"dht get {'0' * 40}") == "not found"
        nc.close()
