"""The DHT at scale, by simulation: our real DHT code over an in-memory network.

Theory of operation. Each simulated node is a real `globalnet.dht.participant.Dht`:
kademlia's routing table (kademlia.routing), crawlers (kademlia.crawling, our
the disjoint-path lookup core), RPC handlers and our GnetKademliaProtocol with its checks
(claimed id = link id, response shapes, signed-value storage). Only the links
are fake: a node's `LinkManager` is replaced by `SimLinks`, whose links hand
each DHT message to the target node's `protocol.receive(link, message)` after
a random one-way delay; a message to a dead node is lost, so the sender's RPC
times out after our real RPC_TIMEOUT (3 s) and the crawler drops that node.

Time is virtual (`VirtualClockLoop`): the clock jumps to the next timer
whenever no callback is ready, so delays and kademlia's `call_later` timeouts
cost no real time, and a busy CPU never makes an RPC time out (on a real
clock, thousands of nodes on two cores would). Latencies printed are virtual.

Scenario for each N: nodes join one by one, each bootstrapping through 3
random earlier nodes (Dht.bootstrap: add them, crawl for its own id). Random
nodes then publish 2*L signed node records (Dht.publish: store on the k
closest). L lookups (Dht.lookup) from random nodes that do not hold the key
measure the 0 % churn case; then 20 % of the nodes are killed at once, with
no refresh or republishing (the network does not heal), and L lookups of the
other L keys from live nodes measure the 20 % churn case.

Measures per lookup:
- success: Dht.lookup returned exactly the published value;
- hops: crawl rounds of the longest of the 3 disjoint paths (lookup.py), i.e.
  batches of queries that path sent until it ended (each asks up to alpha=3
  nodes in parallel);
- contacted: distinct nodes sent FIND_VALUE during the lookup;
- latency: virtual time of the lookup (one-way delay 10-50 ms per message).

Run: `python -m bench.dht_sim` (from the repo root; `make dht-sim`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import json
import logging
import math
import random
import selectors
import statistics
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import nacl.signing
import structlog

from globalnet.dht.lookup import DisjointLookup, Query
from globalnet.dht.participant import ALPHA, KSIZE, RPC_TIMEOUT, Dht
from globalnet.dht.values import node_record_value
from globalnet.errors import ErrorKind, GnetError
from globalnet.identity import Identity
from globalnet.link.manager import LinkManager
from globalnet.logs import setup_logging
from globalnet.wire.records import NodeRecord, set_required_id_work_for_simulation

Address = tuple[str, int]
DEFAULT_SIZES = (250, 500, 1000, 2000)
BOOTSTRAP_PEERS = 3
CHURN = 0.20
DELAY = (0.010, 0.050)  # one-way delay of a message, seconds (virtual), uniform


# -- a clock that jumps --------------------------------------------------------
class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0


class _JumpingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """Polls real file descriptors without blocking; a wait for a timer advances the clock instead."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events or timeout == 0:
            return events  # type: ignore[no-any-return]
        if timeout is None:
            raise RuntimeError("simulation stalled: no callback ready and no timer pending")
        self.clock.now += timeout
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on virtual time: when nothing is ready, time jumps to the next timer."""

    def __init__(self) -> None:
        self.clock = VirtualClock()
        super().__init__(_JumpingSelector(self.clock))

    def time(self) -> float:
        return self.clock.now


# -- the in-memory network -----------------------------------------------------
@dataclass(frozen=True, slots=True)
class _PeerView:
    """What a receiving node sees of the link a message came on: its authenticated peer."""

    peer: NodeRecord


class _OutLink:
    """A ready link from `src` to `dst`: send_dht() is a delayed delivery."""

    __slots__ = ("dst", "net", "src")
    is_ready = True

    def __init__(self, net: SimNet, src: SimNode, dst: SimNode) -> None:
        self.net, self.src, self.dst = net, src, dst

    @property
    def peer(self) -> NodeRecord:
        return self.dst.record

    def send_dht(self, message: bytes) -> None:
        self.net.deliver(self.src, self.dst, message)


class _LinkTable:
    """`LinkManager.links` as LinkTransport reads it: a link to every live node."""

    def __init__(self, net: SimNet, owner: SimNode) -> None:
        self.net, self.owner = net, owner

    def get(self, node_id: bytes | None, default: Any = None) -> _OutLink | Any:
        node = self.net.by_id.get(node_id) if node_id else None
        return _OutLink(self.net, self.owner, node) if node is not None and node.alive else default


class SimLinks:
    """Stands where a node's LinkManager is; dialling a dead node fails (its RPC then times out)."""

    def __init__(self, net: SimNet, owner: SimNode) -> None:
        self.net = net
        self.links = _LinkTable(net, owner)
        self.owner = owner
        self.on_dht: Callable[..., None] | None = None

    async def get_link(self, host: str, port: int, node_id: bytes | None = None) -> _OutLink:
        node = self.net.by_address.get((host, port))
        if node is None or not node.alive or (node_id is not None and node.node_id != node_id):
            raise GnetError(ErrorKind.NO_ROUTE, "no answer (a dead node in the simulation)")
        return _OutLink(self.net, self.owner, node)


class SimNet:
    def __init__(self, rng: random.Random, delay: tuple[float, float] = DELAY) -> None:
        self.rng = rng
        self.delay = delay
        self.by_id: dict[bytes, SimNode] = {}
        self.by_address: dict[Address, SimNode] = {}
        self.messages = 0
        self.lost = 0

    def add(self, node: SimNode) -> None:
        self.by_id[node.node_id] = node
        self.by_address[node.address] = node

    def deliver(self, src: SimNode, dst: SimNode, message: bytes) -> None:
        self.messages += 1
        if not dst.alive:
            self.lost += 1
            return
        asyncio.get_running_loop().call_later(self.rng.uniform(*self.delay), self._arrive, src, dst, message)

    def _arrive(self, src: SimNode, dst: SimNode, message: bytes) -> None:
        if dst.alive:
            dst.dht.protocol.receive(cast(Any, src.seen_as), message)
        else:
            self.lost += 1


class SimNode:
    def __init__(self, net: SimNet, identity: Identity, address: Address, spawn: Callable[..., None]) -> None:
        self.address = address
        self.record = identity.make_record((address,))
        self.node_id = self.record.node_id
        self.seen_as = _PeerView(self.record)
        self.alive = True
        self.links = SimLinks(net, self)
        self.dht = CountingDht(self.node_id, cast(LinkManager, self.links), spawn, rpc_timeout=RPC_TIMEOUT)


# -- counting crawl rounds -----------------------------------------------------
@dataclass
class LookupProbe:
    rounds: int = 0
    contacted: set[bytes] = field(default_factory=set)
    timeouts: int = 0


_probe: contextvars.ContextVar[LookupProbe | None] = contextvars.ContextVar("dht_sim_probe", default=None)


class CountingLookup(DisjointLookup):
    """The lookup core, counting into the current probe the nodes it asks and those that failed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.probe = _probe.get() if self.want_value else None

    def next_queries(self) -> list[Query]:
        queries = super().next_queries()
        if self.probe is not None:
            self.probe.contacted.update(q.contact.node_id for q in queries)
            self.probe.rounds = max(self.path_rounds())
        return queries

    def answer_failed(self, query: Query) -> None:
        super().answer_failed(query)
        if self.probe is not None:
            self.probe.timeouts += 1


class CountingDht(Dht):
    lookup_core = CountingLookup


# -- the scenario --------------------------------------------------------------
@dataclass
class Row:
    n: int
    churn: float
    lookups: int
    success_pct: float
    hops_mean: float
    hops_p95: float
    contacted_mean: float
    contacted_p95: float
    latency_ms_mean: float
    latency_ms_p95: float
    timeouts_mean: float
    log2_n: float


@dataclass
class LookupResult:
    ok: bool
    rounds: int
    contacted: int
    timeouts: int
    latency: float


def p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def summarize(n: int, churn: float, results: list[LookupResult]) -> Row:
    ok = [r for r in results if r.ok]
    hops = [float(r.rounds) for r in ok] or [0.0]
    contacted = [float(r.contacted) for r in ok] or [0.0]
    latency = [r.latency * 1000 for r in ok] or [0.0]
    return Row(
        n=n,
        churn=churn,
        lookups=len(results),
        success_pct=round(100 * len(ok) / max(1, len(results)), 1),
        hops_mean=round(statistics.fmean(hops), 2),
        hops_p95=p95(hops),
        contacted_mean=round(statistics.fmean(contacted), 1),
        contacted_p95=p95(contacted),
        latency_ms_mean=round(statistics.fmean(latency)),
        latency_ms_p95=round(p95(latency)),
        timeouts_mean=round(statistics.fmean(r.timeouts for r in results), 2),
        log2_n=round(math.log2(n), 2),
    )


def sim_address(i: int) -> Address:
    """Node i's address (data only, never dialled): consecutive nodes in different /16s of 10/8,
    so the diversity limits (at most 10 per /16 per table) see a spread like the Internet's."""
    return (f"10.{i & 255}.{i >> 8 & 255}.{(i >> 16 & 255) + 1}", 7000)


def make_identities(count: int, rng: random.Random) -> list[Identity]:
    """Seeded identity keys, so node ids (and so the routing) repeat run to run.

    The id puzzle is switched off for the simulation (`run`): solving it for
    thousands of seeded keys would take minutes and an honest id is uniformly
    random either way; what the puzzle costs an attacker is modelled in
    bench/dht_adversary.py."""
    return [Identity(nacl.signing.SigningKey(rng.randbytes(32))) for _ in range(count)]


async def _lookup(node: SimNode, key: bytes, value: bytes) -> LookupResult:
    loop = asyncio.get_running_loop()
    probe = LookupProbe()
    token = _probe.set(probe)
    started = loop.time()
    try:
        found = await node.dht.lookup(key)
    finally:
        _probe.reset(token)
    ok = found is not None and found.value == value
    return LookupResult(ok, probe.rounds, len(probe.contacted), probe.timeouts, loop.time() - started)


async def simulate(n: int, lookups: int, churn: float = CHURN, seed: int = 1, progress: bool = False) -> dict[str, Any]:
    """One network of `n` nodes: join, publish, look up at 0 % churn, kill `churn`, look up again."""
    rng = random.Random(seed * 1_000_003 + n)
    net = SimNet(rng)
    timings: dict[str, float] = {}
    stored: list[int] = []

    def say(msg: str) -> None:
        if progress:
            print(f"  N={n}: {msg}", file=sys.stderr, flush=True)

    async with asyncio.TaskGroup() as group:

        def spawn(coro: Coroutine[Any, Any, None], name: str) -> None:
            group.create_task(coro, name=name)

        # join one by one, each through a few earlier nodes
        wall = time.perf_counter()
        nodes: list[SimNode] = []
        for i, identity in enumerate(make_identities(n, rng)):
            address = sim_address(i)
            node = SimNode(net, identity, address, spawn)
            net.add(node)
            if nodes:
                await node.dht.bootstrap(x.record for x in rng.sample(nodes, min(BOOTSTRAP_PEERS, len(nodes))))
            nodes.append(node)
        timings["join_s"] = time.perf_counter() - wall
        join_messages = net.messages
        say(f"joined in {timings['join_s']:.1f} s, {join_messages} messages")

        # publish 2 * lookups signed records of identities outside the network, from random nodes
        wall = time.perf_counter()
        values = [node_record_value(i.make_record((("192.0.2.1", 7000),))) for i in make_identities(2 * lookups, rng)]
        for key, value in values:
            stored.append(await rng.choice(nodes).dht.publish(key, value))
        timings["publish_s"] = time.perf_counter() - wall
        say(f"published {len(values)} values in {timings['publish_s']:.1f} s")

        rows = []
        for phase, (rate, batch) in enumerate(((0.0, values[:lookups]), (churn, values[lookups:]))):
            if rate:
                for victim in rng.sample(nodes, round(rate * n)):
                    victim.alive = False
            alive = [node for node in nodes if node.alive]
            wall = time.perf_counter()
            results = []
            for key, value in batch:
                looker = rng.choice(
                    [x for x in rng.sample(alive, min(8, len(alive))) if x.dht.storage.get_valid(key) is None] or alive
                )
                results.append(await _lookup(looker, key, value))
            timings[f"lookups_{phase}_s"] = time.perf_counter() - wall
            rows.append(summarize(n, rate, results))
            say(f"churn {rate:.0%}: {rows[-1].success_pct}% in {timings[f'lookups_{phase}_s']:.1f} s")
    return {
        "rows": [asdict(r) for r in rows],
        "stored_mean": round(statistics.fmean(stored), 1),
        "stored_min": min(stored),
        "join_messages": join_messages,
        "messages": net.messages,
        "wall_s": {k: round(v, 2) for k, v in timings.items()},
    }


def hops_per_doubling(rows: list[dict[str, Any]]) -> float:
    """Least-squares slope of mean hops against log2 N (rounds added per doubling of N)."""
    xs, ys = [r["log2_n"] for r in rows], [r["hops_mean"] for r in rows]
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return round(sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den, 3) if den else 0.0


@contextlib.contextmanager
def no_id_work() -> Iterator[None]:
    """The id puzzle off while simulated (seeded, random) ids are in use; restored after."""
    saved = set_required_id_work_for_simulation(0)
    try:
        yield
    finally:
        set_required_id_work_for_simulation(saved)


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Warnings and up only, while thousands of nodes time out on dead peers; restored after."""
    saved = structlog.get_config()
    levels = {name: logging.getLogger(name).level for name in ("kademlia", "rpcudp")}
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    for name in levels:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        structlog.configure(**saved)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def run(sizes: Sequence[int], lookups: int, seed: int = 1, progress: bool = False) -> dict[str, Any]:
    """Each size on its own virtual-clock loop; returns the whole report."""
    runs = {}
    with quiet_logs(), no_id_work():
        for n in sizes:
            with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
                runs[n] = runner.run(simulate(n, lookups, seed=seed, progress=progress))
    rows = [row for n in sizes for row in runs[n]["rows"]]
    return {
        "what": "kademlia 2.2.3 routing/crawling + globalnet.dht over an in-memory network, virtual clock",
        "params": {
            "ksize": KSIZE,
            "alpha": ALPHA,
            "rpc_timeout_s": RPC_TIMEOUT,
            "bootstrap_peers": BOOTSTRAP_PEERS,
            "one_way_delay_ms": [DELAY[0] * 1000, DELAY[1] * 1000],
            "lookups_per_case": lookups,
            "seed": seed,
            "hops": "crawl rounds of the longest disjoint path (DisjointLookup.path_rounds) of successful lookups",
            "contacted": "distinct nodes sent FIND_VALUE per successful lookup",
        },
        "rows": rows,
        "hops_per_doubling": {
            f"churn_{int(c * 100)}": hops_per_doubling([r for r in rows if r["churn"] == c]) for c in (0.0, CHURN)
        },
        "runs": {str(n): {k: v for k, v in r.items() if k != "rows"} for n, r in runs.items()},
    }


def table(report: dict[str, Any]) -> str:
    head = (
        f"{'N':>6} {'churn':>5} {'success':>8} {'hops':>5} {'p95':>4} {'log2N':>6}"
        f" {'contacted':>9} {'p95':>4} {'latency ms':>10} {'p95':>6} {'timeouts':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in report["rows"]:
        lines.append(
            f"{r['n']:>6} {r['churn']:>5.0%} {r['success_pct']:>7.1f}% {r['hops_mean']:>5.2f} {r['hops_p95']:>4.0f}"
            f" {r['log2_n']:>6.2f} {r['contacted_mean']:>9.1f} {r['contacted_p95']:>4.0f}"
            f" {r['latency_ms_mean']:>10.0f} {r['latency_ms_p95']:>6.0f} {r['timeouts_mean']:>8.2f}"
        )
    slopes = report["hops_per_doubling"]
    lines.append(f"hops added per doubling of N (least squares on log2 N): {slopes}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="comma-separated network sizes")
    parser.add_argument("--lookups", type=int, default=200, help="lookups per (N, churn) case")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "dht_sim.json")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    setup_logging("warning")
    started = time.perf_counter()
    report = run(sizes, args.lookups, args.seed, progress=True)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    print(table(report))
    print(f"wall time {report['wall_s']} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
