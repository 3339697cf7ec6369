"""Sybil and eclipse attacks on the DHT, by simulation at N = 2,000 and 10,000.

Theory of operation. bench/dht_sim.py runs the real `Dht` (asyncio, kademlia)
per node, which costs minutes at N = 2,000; an adversary study needs N =
10,000 and many cases, so this is a model of the network built around the
real lookup core: every lookup and every publish's node search is
`globalnet.dht.lookup.DisjointLookup` (the code nodes run), driven
synchronously round by round; routing tables are built the way
`dht/routing.py` fills them (k-buckets by shared prefix, at most k per bucket,
the diversity limits of `netdiversity.py` when the defences are on); ids
carry the puzzle of `wire/records.py`.

The network: N nodes, a fraction f of them Sybils run by one attacker.
- Honest nodes have random ids and addresses spread over the Internet (each in
  its own /24, random /16s).
- Sybils sit in SYBIL_SLASH16 (4) /16s, 16 /24s each (a hosting provider's
  ranges), and misbehave in every way the issue lists: asked for nodes they
  answer with only the Sybils closest to the key, asked for a value they
  answer with Sybils, and they drop every store.
- Grinding: the attacker spends 2^GRIND_TRIALS_LOG2 (2^24) key generations per
  Sybil id. For each key it attacks (TARGETS = 16 descriptor keys: a day's
  keys are computable in advance) it grinds GROUND_PER_KEY = 2k = 40 of its
  Sybils next to the key, enough to take all k = 20 slots the key is stored
  on; the rest of its Sybils sit at random ids, in everyone's tables. An id whose first p bits match a key
  costs 2^(p + D) trials with a puzzle of D bits, so the budget buys
  p = 24 - D prefix bits: p = 24 without the puzzle (closer to the key than
  any honest node at these N), p = 12 with ID_WORK_BITS = 12 (among the
  few honest nodes closest to the key, not in front of all of them).
- Each target key is published once by a random honest node (stored on the
  k closest nodes its node search found; Sybils drop theirs), then looked up
  (all lookups are of attacked keys) from random live honest nodes, after CHURN (20 %) of
  the honest nodes died with no repair (tables keep the dead; asking one
  fails, like an RPC timeout).

Defences off: one lookup path, no diversity limits, no puzzle (D = 0).
Defences on: 3 disjoint paths, 2 per /24 per bucket and 10 per /16 per table,
at most 2 per /16 in the k closest a lookup follows and a publish stores on,
D = ID_WORK_BITS.

Measures: success (the lookup returned the value), hops (rounds of the
longest path), contacted (nodes asked), and how many of the k storage slots
Sybils took. Run: `python -m bench.dht_adversary` (`make dht-sim` runs both).
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import json
import math
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from globalnet.dht.lookup import PATHS, Contact, DisjointLookup, Query
from globalnet.dht.participant import ALPHA, KSIZE
from globalnet.dht.values import ValidValue
from globalnet.netdiversity import DEFAULT_POLICY, PER_BUCKET_SMALL, PER_SET_LARGE, PER_TABLE_LARGE
from globalnet.wire.records import ID_WORK_BITS

BITS = 160
SYBIL_SLASH16 = 4
SYBIL_SLASH24_PER_16 = 16
GRIND_TRIALS_LOG2 = 24
TARGETS = 16
#: Ground Sybil ids the attacker puts next to each key it attacks: 2k, enough to
#: take every one of the k slots a key is stored on, twice over.
GROUND_PER_KEY = 2 * KSIZE
CHURN = 0.20
FRACTIONS = (0.05, 0.10, 0.20)
SIZES = (2000, 10000)


@dataclass(frozen=True)
class Defences:
    name: str
    work: bool  # ids carry ID_WORK_BITS of work (grinding buys 12 bits fewer)
    tables: bool  # 2 per /24 per bucket, 10 per /16 per table
    set_limit: bool  # 2 per /16 in the k closest a lookup follows / a publish stores on
    paths: int
    botnet: bool = False  # the attacker's addresses are spread like honest ones (limits see nothing)


MODES = {
    "off": Defences("off", False, False, False, 1),
    "on": Defences("on", True, True, True, PATHS),
    "on-no-set-limit": Defences("on-no-set-limit", True, True, False, PATHS),
    "paths-only": Defences("paths-only", False, False, False, PATHS),
    "on-vs-botnet": Defences("on-vs-botnet", True, True, True, PATHS, botnet=True),
}


@dataclass
class Net:
    ids: list[int]  # node index -> id
    sybil: list[bool]
    small: list[int]  # /24 as an int
    large: list[int]  # /16 as an int
    alive: list[bool]
    tables: list[list[int]]
    sybils_sorted: list[tuple[int, int]]  # (id, index), sorted
    hosts: list[str]  # an IPv4 literal in the node's /24 and /16 (data only: the diversity policy reads it)

    def contact(self, j: int) -> Contact:
        return Contact(self.ids[j].to_bytes(20, "big"), self.hosts[j], j)


def _ground_id(rng: random.Random, key: int, prefix: int) -> int:
    """An id sharing the first `prefix` bits with `key` (what 2^(prefix + D) trials buy)."""
    keep = BITS - prefix
    return (key >> keep << keep) | rng.getrandbits(keep)


def build(n: int, fraction: float, defences: Defences, targets: list[int], rng: random.Random) -> Net:
    """N honest-or-Sybil nodes plus, per target key, a group of GROUND_PER_KEY ground Sybil ids.

    The attacker owns round(f * N) Sybil nodes: GROUND_PER_KEY of them are re-ground
    next to whichever key it attacks, the rest sit at random ids. One group per
    target key stands for that re-grinding (one network build serves every key);
    it over-counts Sybils in far buckets, which only makes the attack stronger.
    """
    n_sybil = round(n * fraction)
    n_random_sybil = max(0, n_sybil - GROUND_PER_KEY)
    work = ID_WORK_BITS if defences.work else 0
    prefix = max(0, GRIND_TRIALS_LOG2 - work)
    ids, sybil, small, large = [], [], [], []
    ground = [(key, g) for key in targets for g in range(min(GROUND_PER_KEY, n_sybil))]
    for i in range(n - n_sybil + n_random_sybil + len(ground)):
        is_sybil = i < n_random_sybil + len(ground)
        if i < len(ground):
            ids.append(_ground_id(rng, ground[i][0], prefix))
        else:
            ids.append(rng.getrandbits(BITS))
        sybil.append(is_sybil)
        if is_sybil and not defences.botnet:
            s16 = rng.randrange(SYBIL_SLASH16)
            large.append(s16)
            small.append(s16 * 256 + rng.randrange(SYBIL_SLASH24_PER_16))
        else:
            large.append(100 + rng.randrange(60000))  # a random /16 of the Internet
            small.append(large[-1] * 256 + rng.randrange(256))
    n = len(ids)
    order = sorted(range(n), key=lambda j: ids[j])
    sorted_ids = [ids[j] for j in order]
    tables = []
    for me in range(n):
        tables.append(_table(me, ids, small, large, order, sorted_ids, defences.tables, rng))
    sybils_sorted = sorted((ids[j], j) for j in range(n) if sybil[j])
    hosts = [f"{11 + large[j] // 256}.{large[j] % 256}.{small[j] % 256}.1" for j in range(n)]
    return Net(ids, sybil, small, large, [True] * n, tables, sybils_sorted, hosts)


def _table(
    me: int,
    ids: list[int],
    small: list[int],
    large: list[int],
    order: list[int],
    sorted_ids: list[int],
    defences: bool,
    rng: random.Random,
) -> list[int]:
    """k-buckets of node `me`: for each shared-prefix length, up to k nodes of that range."""
    mine = ids[me]
    table: list[int] = []
    per_large: dict[int, int] = {}
    for c in range(BITS):
        keep = BITS - c - 1
        lo = ((mine >> keep) ^ 1) << keep  # same first c bits, bit c flipped
        a, b = bisect.bisect_left(sorted_ids, lo), bisect.bisect_left(sorted_ids, lo + (1 << keep))
        if a == b:
            if c > 2 * math.log2(len(ids)) + 8:
                break
            continue
        picks = range(a, b) if b - a <= 3 * KSIZE else rng.sample(range(a, b), 3 * KSIZE)
        per_small: dict[int, int] = {}
        taken = 0
        for pos in picks:
            j = order[pos]
            if defences:
                if per_small.get(small[j], 0) >= PER_BUCKET_SMALL or per_large.get(large[j], 0) >= PER_TABLE_LARGE:
                    continue  # kept as a replacement only
                per_small[small[j]] = per_small.get(small[j], 0) + 1
                per_large[large[j]] = per_large.get(large[j], 0) + 1
            table.append(j)
            taken += 1
            if taken == KSIZE:
                break
    return table


def _closest(net: Net, candidates: list[int], target: int, k: int = KSIZE) -> list[int]:
    ids = net.ids
    return heapq.nsmallest(k, candidates, key=lambda j: ids[j] ^ target)


def _sybil_answer(net: Net, target: int) -> list[int]:
    """The Sybils closest to the key (approximately: the 4k nearest in id order, best k by XOR)."""
    pos = bisect.bisect_left(net.sybils_sorted, (target, -1))
    window = [j for _, j in net.sybils_sorted[max(0, pos - 2 * KSIZE) : pos + 2 * KSIZE]]
    return _closest(net, window, target)


def _lookup(
    net: Net, me: int, key: int, defences: Defences, stored: dict[int, set[int]], want_value: bool
) -> DisjointLookup:
    core = DisjointLookup(
        key.to_bytes(20, "big"),
        [net.contact(j) for j in _closest(net, net.tables[me], key)],
        net.ids[me].to_bytes(20, "big"),
        defences.paths,
        KSIZE,
        ALPHA,
        want_value,
        DEFAULT_POLICY if defences.set_limit else None,
    )
    holders = stored.get(key, set())
    for _ in range(1000):
        queries = core.next_queries()
        if not queries:
            break
        for q in queries:
            _answer(net, core, q, key, holders, want_value)
    return core


def _answer(net: Net, core: DisjointLookup, q: Query, key: int, holders: set[int], want_value: bool) -> None:
    j = q.contact.port
    if not net.alive[j]:
        core.answer_failed(q)
    elif net.sybil[j]:
        core.answer_nodes(q, (net.contact(x) for x in _sybil_answer(net, key)))
    elif want_value and j in holders:
        core.answer_value(q, ValidValue(core.key, b"descriptor", 1, 2**40))
    else:
        core.answer_nodes(q, (net.contact(x) for x in _closest(net, net.tables[j], key)))


@dataclass
class Row:
    n: int
    sybil_pct: float
    defences: str
    churn: float
    lookups: int
    success_pct: float
    hops_mean: float
    hops_p95: float
    contacted_mean: float
    sybil_storage_slots_pct: float
    grind_prefix_bits: int
    ground_per_key: int


def simulate(n: int, fraction: float, defences: Defences, lookups: int, seed: int = 1) -> Row:
    rng = random.Random(seed * 7919 + n * 31 + int(fraction * 1000))
    targets = [rng.getrandbits(BITS) for _ in range(TARGETS)]
    net = build(n, fraction, defences, targets, rng)
    honest = [j for j in range(len(net.ids)) if not net.sybil[j]]
    stored: dict[int, set[int]] = {}
    sybil_slots = 0
    for key in targets:  # publish: store on the k closest the node search found; Sybils drop theirs
        found = _lookup(net, rng.choice(honest), key, defences, stored, want_value=False)
        chosen = [c.port for c in found.closest(KSIZE)]
        sybil_slots += sum(net.sybil[j] for j in chosen)
        stored[key] = {j for j in chosen if not net.sybil[j]}
    for victim in rng.sample(honest, round(CHURN * len(honest))):
        net.alive[victim] = False
    live = [j for j in honest if net.alive[j]]
    ok, hops, contacted = 0, [], []
    for i in range(lookups):
        key = targets[i % len(targets)]
        me = rng.choice([j for j in rng.sample(live, 8) if j not in stored[key]] or live)
        core = _lookup(net, me, key, defences, stored, want_value=True)
        if core.result() is not None:
            ok += 1
            hops.append(max(core.path_rounds()))
            contacted.append(core.asked())
    ordered = sorted(hops) or [0]
    return Row(
        n=n,
        sybil_pct=round(100 * fraction),
        defences=defences.name,
        churn=CHURN,
        lookups=lookups,
        success_pct=round(100 * ok / lookups, 1),
        hops_mean=round(statistics.fmean(hops), 2) if hops else 0.0,
        hops_p95=ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)],
        contacted_mean=round(statistics.fmean(contacted), 1) if contacted else 0.0,
        sybil_storage_slots_pct=round(100 * sybil_slots / (KSIZE * len(targets)), 1),
        grind_prefix_bits=max(0, GRIND_TRIALS_LOG2 - (ID_WORK_BITS if defences.work else 0)),
        ground_per_key=min(GROUND_PER_KEY, round(n * fraction)),
    )


def run(
    sizes: list[int], fractions: list[float], lookups: int, seed: int = 1, modes: list[str] | None = None, progress: bool = False
) -> dict[str, Any]:
    rows = []
    for n in sizes:
        for fraction in fractions:
            for mode in modes or list(MODES):
                wall = time.perf_counter()
                row = simulate(n, fraction, MODES[mode], lookups, seed)
                rows.append(asdict(row))
                if progress:
                    print(f"  N={n} sybils={fraction:.0%} defences={row.defences}: {row.success_pct}%"
                          f" ({time.perf_counter() - wall:.1f} s)", file=sys.stderr, flush=True)
    return {
        "what": "Sybil/eclipse model around globalnet.dht.lookup.DisjointLookup (the nodes' lookup core)",
        "params": {
            "ksize": KSIZE,
            "alpha": ALPHA,
            "paths_on": PATHS,
            "churn": CHURN,
            "target_keys": TARGETS,
            "lookups_per_case": lookups,
            "id_work_bits_on": ID_WORK_BITS,
            "grind_trials_per_sybil_id_log2": GRIND_TRIALS_LOG2,
            "ground_sybil_ids_per_attacked_key": GROUND_PER_KEY,
            "sybil_networks": f"{SYBIL_SLASH16} /16s x {SYBIL_SLASH24_PER_16} /24s",
            "diversity_on": f"{PER_BUCKET_SMALL} per /24 per bucket, {PER_TABLE_LARGE} per /16 per table,"
            f" {PER_SET_LARGE} per /16 in a lookup's k closest",
            "seed": seed,
        },
        "rows": rows,
    }


def table(report: dict[str, Any]) -> str:
    head = f"{'N':>6} {'sybils':>6} {'defences':>15} {'success':>8} {'hops':>5} {'p95':>4} {'asked':>6} {'sybil slots':>11}"
    lines = [head, "-" * len(head)]
    for r in report["rows"]:
        lines.append(
            f"{r['n']:>6} {r['sybil_pct']:>5.0f}% {r['defences']:>15} {r['success_pct']:>7.1f}% {r['hops_mean']:>5.2f}"
            f" {r['hops_p95']:>4.0f} {r['contacted_mean']:>6.1f} {r['sybil_storage_slots_pct']:>10.1f}%"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--fractions", default=",".join(map(str, FRACTIONS)))
    parser.add_argument("--lookups", type=int, default=400, help="lookups per case")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modes", default=",".join(MODES), help=f"defence sets: {', '.join(MODES)}")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "dht_sim_adversary.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    report = run(
        [int(s) for s in args.sizes.split(",") if s],
        [float(f) for f in args.fractions.split(",") if f],
        args.lookups,
        args.seed,
        [m for m in args.modes.split(",") if m],
        progress=True,
    )
    report["wall_s"] = round(time.perf_counter() - started, 1)
    print(table(report))
    print(f"wall time {report['wall_s']} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
