"""`make testnet N=200`: N real gclient processes in network namespaces, a workload, churn, a report.

Theory of operation. tests/netns.py's NetnsLab makes one namespace per node
over several /16 networks (10.1/16 ... 10.K/16), joined by a router that
delays and drops packets per network (netem, or the user-space TUN router
where the kernel has no netem). Node roles:
- seeds: the first few relays; every other node bootstraps from them;
- relays (a share of them exits, allowed only to the byte server's address);
- hidden services: hosted on some relays, each forwarding to the byte server;
- clients: no listener; a -tunnel to the byte server, a SOCKS proxy, a console.
A byte server in its own /16 sends SIZE deterministic bytes per connection.
Each client runs bench/testnet_work.py in its namespace (tunnel and SOCKS
downloads, service sessions, DHT lookups of relay records) for --duration
seconds while a share of the plain relays is killed (SIGKILL) and restarted.
The report (bench/results/testnet.json and .txt): circuit and service
success, TTFB and throughput percentiles, DHT lookup success and latency,
relay RSS/PSS and CPU, bytes lost or corrupted. Everything it started is
stopped and every namespace deleted at the end, on Ctrl-C and on SIGTERM.

    python -m bench.testnet --nodes 200 --duration 300
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.measure import cpu_seconds, memory_mib
from bench.testnet_idle import sample_idle
from globalnet.localnet import NodeProcess

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.netns import BYTE_SERVER, Host, LabUnavailable, NetnsLab, unavailable_reason
from tests.test_netns import node_id_for

MARKER = ".gnet-testnet"
PORT, TUNNEL_PORT, SOCKS_PORT, CONSOLE_PORT, SERVE_PORT = 9000, 8000, 1080, 9900, 7000


class Stop(Exception):
    """SIGTERM: stop like Ctrl-C."""


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 1)


def _proc_mem_cpu(pid: int) -> tuple[float, float, float] | None:
    """(RSS MiB, PSS MiB, CPU seconds) of a process, None if it is gone."""
    try:
        memory = memory_mib(pid)
        cpu = cpu_seconds(pid)
    except OSError:
        return None
    return memory["rss"], memory["pss"], cpu


class Testnet:
    def __init__(self, ns: argparse.Namespace) -> None:
        self.ns = ns
        self.base = Path(ns.dir)
        if (self.base / MARKER).exists():
            shutil.rmtree(self.base)  # a previous testnet's directory: start fresh
        elif self.base.exists() and any(self.base.iterdir()):
            raise SystemExit(f"testnet: {self.base} exists and is not a testnet directory; give another --dir")
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / MARKER).write_text("made by bench/testnet.py\n")
        per_net = {net: (ns.delay, ns.loss) for net in range(1, ns.nets + 2)}
        self.lab = NetnsLab(delay_ms=ns.delay, loss=ns.loss, per_net=per_net)
        self.nodes: dict[str, NodeProcess] = {}
        self.hosts: dict[str, Host] = {}
        self.roles: dict[str, str] = {}
        self.kills: list[tuple[float, str]] = []
        self.workers: list[subprocess.Popen[str]] = []
        self.rng = random.Random(ns.seed)
        self.log: list[str] = []

    def say(self, text: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {text}"
        self.log.append(line)
        print(line, flush=True)

    # -- building ------------------------------------------------------------
    def plan(self) -> None:
        n, ns = self.ns.nodes, self.ns
        clients = max(1, round(n * ns.clients))
        relays = n - clients
        if relays < 6:
            raise SystemExit("testnet: at least 6 relays are needed (more nodes, or fewer clients)")
        for i in range(relays):
            name = f"r{i:03d}"
            net = 1 + i % ns.nets
            self.hosts[name] = self.lab.add_host(name, net)
            role = "seed" if i < ns.seeds else "relay"
            if role == "relay" and i % max(1, round(1 / ns.exits)) == 0:
                role = "exit"
            elif role == "relay" and sum(r == "service" for r in self.roles.values()) < ns.services and i % 7 == 3:
                role = "service"
            self.roles[name] = role
        for i in range(clients):
            name = f"c{i:03d}"
            self.hosts[name] = self.lab.add_host(name, 1 + i % ns.nets)
            self.roles[name] = "client"
        self.web = self.lab.add_host("web", ns.nets + 1)
        self.delay_kind = self.lab.add_delay()
        counts = {r: sum(v == r for v in self.roles.values()) for r in set(self.roles.values())}
        self.say(f"{len(self.hosts) + 1} namespaces over {ns.nets + 1} /16s, delay by {self.delay_kind}: {counts}")

    def _args(self, name: str) -> list[str]:
        host, role = self.hosts[name], self.roles[name]
        # one seed each (round robin), as real nodes would not all dial the same few at once, and
        # one relay started before it (a network of 200 is not 200 nodes on 3 seeds' links)
        index = list(self.hosts).index(name)
        seeds = self.seed_addrs[index % len(self.seed_addrs)] if self.seed_addrs else ""
        others = [a for a in self.relay_addrs if not a.startswith(f"{host.address}:")]
        if seeds and others and role != "seed":
            seeds += "," + self.rng.choice(others)
        if role == "client":
            return ["-no-listen", "-connect", seeds, "-tunnel", f"{TUNNEL_PORT}>rand>rand>rand>{self.web.address}:{SERVE_PORT}",
                    "-proxy", f"{SOCKS_PORT}>rand>rand>rand>internet", "-console", f"127.0.0.1:{CONSOLE_PORT}"]  # fmt: skip
        args = ["-listen", f"{host.address}:{PORT}"]
        if role != "seed" or self.seed_addrs:
            args += ["-connect", seeds] if seeds else []
        if role == "exit":
            args += ["-exit", "-exit-allow", f"{self.web.address}/32"]
        if role == "service":
            args += ["-service", f"site={self.web.address}:{SERVE_PORT}"]
        return args

    def start_node(self, name: str) -> NodeProcess:
        node = NodeProcess(name, self._args(name), self.base / name, exec_prefix=self.hosts[name].exec)
        node.log_level = self.ns.ends_log_level if self.roles[name] in ("client", "service") else self.ns.log_level
        if not node.node_id:
            node.node_id = node_id_for(node.data_dir)
        node.start()
        self.nodes[name] = node
        return node

    def start_many(self, names: list[str], what: str, up_event: str) -> None:
        """Start nodes with at most --start-parallel of them still starting (their Python start-up
        is ~1 s of CPU each: 200 at once starve a 2-core machine for minutes); progress every 10 s."""
        pending: list[str] = []
        started, said = 0, time.monotonic()
        queue = list(names)
        limit = time.monotonic() + self.ns.link_wait + 2.0 * len(names)
        while queue or pending:
            pending = [n for n in pending if self.nodes[n].find(up_event) is None and self.nodes[n].proc.poll() is None]  # type: ignore[union-attr]
            while queue and len(pending) < self.ns.start_parallel:
                name = queue.pop(0)
                self.start_node(name)
                pending.append(name)
                started += 1
                if self.roles[name] in ("relay", "exit", "service"):
                    self.relay_addrs.append(f"{self.hosts[name].address}:{PORT}#{self.nodes[name].node_id}")
            if time.monotonic() - said >= 10:
                self.say(f"{what}: {started - len(pending)} of {len(names)} up, {len(pending)} starting")
                said = time.monotonic()
            if time.monotonic() > limit:
                self.say(f"{what}: {len(pending)} still starting; going on")
                return
            time.sleep(0.1)

    def start(self) -> None:
        self.lab.popen(
            self.web.exec + [sys.executable, "-c", BYTE_SERVER, self.web.address, str(SERVE_PORT), str(self.ns.size)]
        )
        self.seed_addrs: list[str] = []
        self.relay_addrs: list[str] = []
        seeds = [n for n, r in self.roles.items() if r == "seed"]
        for name in seeds:
            node = self.start_node(name)
            self.seed_addrs.append(f"{self.hosts[name].address}:{PORT}#{node.node_id}")
        for name in seeds:
            self.nodes[name].wait_for("node started", timeout=120)
        others = [n for n, r in self.roles.items() if r not in ("seed", "client")]
        began = time.monotonic()
        self.start_many(others, "relays", "node started")
        # wait for the relays to link; a few that do not (a starved machine) are counted, not fatal
        deadline = time.monotonic() + self.ns.link_wait
        waiting = set(others)
        said = time.monotonic()
        while waiting and time.monotonic() < deadline:
            waiting = {n for n in waiting if self.nodes[n].find("linked to peer") is None}
            if len(waiting) <= len(others) // 50:
                break
            if time.monotonic() - said >= 10:
                self.say(f"relays: {len(others) - len(waiting)} of {len(others)} linked")
                said = time.monotonic()
            time.sleep(2.0)
        self.unlinked = sorted(waiting)
        self.say(f"{len(others) + len(seeds) - len(waiting)} relays up and linked in {time.monotonic() - began:.0f} s"
                 f" ({len(waiting)} not linked yet)")  # fmt: skip
        self.services = []
        for name in [n for n, r in self.roles.items() if r == "service"]:
            hostname = self.base / name / "services" / "site" / "hostname"
            deadline = time.monotonic() + 120
            while not hostname.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            if hostname.exists():
                self.services.append(hostname.read_text().strip())
            else:
                self.say(f"service on {name}: no hostname after 120 s; left out")
        # let records reach the DHT and services publish their descriptors; meanwhile, what idle relays cost
        self.settle_rates = self.measure_idle(self.ns.settle)
        self.say(f"relays while settling: {self.settle_rates}")
        self.wait_for_descriptors()
        clients = [n for n, r in self.roles.items() if r == "client"]
        self.start_many(clients, "clients", "tunnel listening")
        for name in clients:
            self.nodes[name].wait_for("tunnel listening", timeout=300)
        self.say(f"{len(self.services)} services, clients up")

    def wait_for_descriptors(self, timeout: float = 120.0) -> None:
        """Start the workload once every service has published its descriptor: a session to a
        service that has not yet says how fast services start on a loaded machine (the CI run
        once saw one take over 25 s, and every session to it count as failed), not whether
        sessions work. One that does not publish in `timeout` stays in, and is said."""
        began = time.monotonic()
        deadline = began + timeout
        for name in [n for n, r in self.roles.items() if r == "service"]:
            node = self.nodes[name]
            while node.find("service descriptor published") is None and time.monotonic() < deadline:
                time.sleep(0.5)
            if node.find("service descriptor published") is None:
                self.say(f"service on {name}: no descriptor published after {timeout:.0f} s")
        self.say(f"service descriptors published ({time.monotonic() - began:.0f} s after settling)")

    # -- running -------------------------------------------------------------
    def run_workload(self) -> list[dict[str, Any]]:
        lookups = ",".join(self.nodes[n].node_id for n, r in self.roles.items() if r in ("seed", "relay"))[: 41 * 8 - 1]
        out_dir = self.base / "work"
        out_dir.mkdir(parents=True, exist_ok=True)
        files = []
        for name in [n for n, r in self.roles.items() if r == "client"]:
            path = out_dir / f"{name}.jsonl"
            files.append(path)
            cmd = self.hosts[name].exec + [
                sys.executable, "-m", "bench.testnet_work", "--tunnel", str(TUNNEL_PORT), "--socks", str(SOCKS_PORT),
                "--console", str(CONSOLE_PORT), "--web", f"{self.web.address}:{SERVE_PORT}",
                "--services", ",".join(self.services), "--lookups", lookups, "--size", str(self.ns.size),
                "--duration", str(self.ns.duration),
            ]  # fmt: skip
            with open(path, "w") as out, open(path.with_suffix(".err"), "w") as err:
                self.workers.append(subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT, text=True))
        self.churn_until(time.monotonic() + self.ns.duration)
        for worker in self.workers:
            try:
                worker.wait(timeout=120)
            except subprocess.TimeoutExpired:
                worker.kill()
        results = []
        for path in files:
            for line in path.read_text().splitlines():
                try:
                    results.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return results

    def churn_until(self, deadline: float) -> None:
        """Kill plain relays (SIGKILL) in waves, one every ~40 s, and restart each 10 s later.

        Waves, not one kill every duration/(share+1): at N=200 that was a kill every 9 s,
        and with each kill's --churn-window no operation was left outside churn to judge."""
        plain = [n for n, r in self.roles.items() if r == "relay"]
        share = max(1, round(len(plain) * self.ns.churn)) if self.ns.churn > 0 else 0
        waves = max(1, int(self.ns.duration // 40)) if share else 0
        interval = self.ns.duration / (waves + 1) if waves else self.ns.duration + 1
        per_wave = -(-share // waves) if waves else 0
        down: list[tuple[float, str]] = []
        next_kill = time.monotonic() + interval
        self.samples: list[tuple[float, float, float]] = []
        while time.monotonic() < deadline:
            now = time.monotonic()
            if share and now >= next_kill and plain:
                for _ in range(min(per_wave, share - len(self.kills), len(plain))):
                    name = self.rng.choice(plain)
                    plain.remove(name)
                    self.kills.append((time.time(), name))  # the signal's moment, not when the busy kernel reaped it
                    self.nodes[name].kill()
                    down.append((now + 10, name))
                (self.base / "work" / "kills.json").write_text(json.dumps(self.kills))
                next_kill = now + interval
            for when, name in list(down):
                if now >= when:
                    self.start_node(name)
                    down.remove((when, name))
            time.sleep(1.0)
        for _, name in down:
            self.start_node(name)

    def measure_idle(self, window: float) -> dict[str, Any]:
        """Per-relay CPU %, wake-ups/s, links, RSS over `window` seconds of idling, and the delay router's CPU."""
        relays = {n: node.proc.pid for n, node in self.nodes.items()
                  if self.roles[n] != "client" and node.proc is not None and node.proc.poll() is None}  # fmt: skip
        addresses = {n: self.hosts[n].address for n in relays}
        router = self.lab.delay_router_pid
        before = cpu_seconds(router) if router else 0.0
        idle = sample_idle(relays, addresses, window)
        if router:
            idle["router_cpu_percent"] = round(100 * (cpu_seconds(router) - before) / idle["window_s"], 1)
        idle["load"] = [round(x, 2) for x in os.getloadavg()]
        return idle

    def measure_relays(self) -> dict[str, Any]:
        rss, pss, cpu = [], [], []
        for name, node in self.nodes.items():
            if self.roles[name] == "client" or node.proc is None:
                continue
            got = _proc_mem_cpu(node.proc.pid)
            if got:
                rss.append(got[0])
                pss.append(got[1])
                cpu.append(got[2])
        return {
            "relays_measured": len(rss),
            "rss_mib": {"median": _pct(rss, 0.5), "p90": _pct(rss, 0.9), "max": _pct(rss, 1.0)},
            "pss_mib": {"median": _pct(pss, 0.5), "p90": _pct(pss, 0.9), "total": round(sum(pss), 1)},
            "cpu_s": {"median": _pct(cpu, 0.5), "p90": _pct(cpu, 0.9), "max": _pct(cpu, 1.0)},
        }

    def close(self) -> None:
        """Stop everything; never raises half-way (a starved machine reaps slowly), namespaces last."""
        try:
            procs = [w for w in self.workers] + [n.proc for n in self.nodes.values() if n.proc is not None]
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 20
            while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
                time.sleep(0.2)
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
            deadline = time.monotonic() + 30
            while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            self.lab.close()


def _failures(rows: list[dict[str, Any]], in_churn: Callable[[dict[str, Any]], bool]) -> dict[str, dict[str, int]]:
    """Failed operations by error, in churn and outside it: what to fix next."""
    out: dict[str, dict[str, int]] = {"in_churn": {}, "outside_churn": {}}
    for r in rows:
        if not r["ok"]:
            side = out["in_churn" if in_churn(r) else "outside_churn"]
            error = str(r.get("error") or ("corrupted" if r.get("corrupt") else "short transfer"))
            side[error] = side.get(error, 0) + 1
    return out


def summarize(results: list[dict[str, Any]], kills: list[tuple[float, str]], window: float) -> dict[str, Any]:
    def in_churn(r: dict[str, Any]) -> bool:
        """The operation ran while a killed relay's circuits were failing: it was under way at
        the kill, or began within `window` s after it (dead links are found within 10 s,
        link/liveness.py; paths then avoid the relay). At N=200 a kill every ~9 s with a
        fixed minute after each would have left no operation outside churn to judge."""
        began, ended = r["at"], r["at"] + r.get("took", 0.0)
        return any(began <= k + window and ended >= k for k, _ in kills)

    out: dict[str, Any] = {}
    for op in ("tunnel", "socks", "service", "dht"):
        rows = [r for r in results if r.get("op") == op]
        calm = [r for r in rows if not in_churn(r)]
        entry: dict[str, Any] = {
            "attempts": len(rows),
            "success_rate": round(sum(r["ok"] for r in rows) / len(rows), 4) if rows else None,
            "success_rate_outside_churn": round(sum(r["ok"] for r in calm) / len(calm), 4) if calm else None,
            "attempts_outside_churn": len(calm),
            "failures": _failures(rows, in_churn),
        }
        if op == "dht":
            ms = [r["ms"] for r in rows if r.get("ok")]
            entry["latency_ms"] = {"p50": _pct(ms, 0.5), "p90": _pct(ms, 0.9), "p99": _pct(ms, 0.99)}
        else:
            ttfb = [r["ttfb_ms"] for r in rows if r.get("ok")]
            mbps = [r["mbps"] for r in rows if r.get("ok") and r.get("mbps")]
            entry["ttfb_ms"] = {"p50": _pct(ttfb, 0.5), "p90": _pct(ttfb, 0.9), "p99": _pct(ttfb, 0.99)}
            entry["throughput_mbit_s"] = {"p10": _pct(mbps, 0.1), "p50": _pct(mbps, 0.5), "p90": _pct(mbps, 0.9)}
            # corrupted: as many bytes as sent (or more) but not the server's; lost: a clean close before the
            # end (a reset is a failure the application sees, a short clean close would pass for success)
            entry["corrupted_transfers"] = sum(1 for r in rows if r.get("corrupt"))
            entry["short_transfers"] = sum(1 for r in rows if r.get("lost"))
            entry["bytes_lost"] = sum(int(r.get("lost", 0)) for r in rows)
        out[op] = entry
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=30)
    p.add_argument("--duration", type=float, default=120.0, help="workload seconds")
    p.add_argument("--nets", type=int, default=4, help="/16 networks for the nodes")
    p.add_argument("--delay", type=float, default=20.0, help="one-way delay per packet, ms")
    p.add_argument("--loss", type=float, default=0.01, help="share of packets dropped")
    p.add_argument("--seeds", type=int, default=None, help="bootstrap relays (default: one per 40 nodes, at least 3)")
    p.add_argument("--start-parallel", type=int, default=4, help="nodes starting at once at most")
    p.add_argument("--exits", type=float, default=0.2, help="share of relays that are exits")
    p.add_argument("--services", type=int, default=3)
    p.add_argument("--clients", type=float, default=0.15, help="share of nodes that are clients")
    p.add_argument("--churn", type=float, default=0.1, help="share of plain relays killed and restarted")
    p.add_argument("--churn-window", type=float, default=20.0,
                   help="an operation under way at a kill or begun within this many seconds after it counts as in churn")
    p.add_argument("--size", type=int, default=256 * 1024, help="bytes per download")
    p.add_argument("--link-wait", type=float, default=600.0, help="seconds to wait for relays to link")
    p.add_argument("--settle", type=float, default=None,
                   help="seconds between relays up and clients start (default: nodes - 20, from 20 to 180: the "
                        "workload meets a network, not the DHT rounds of 170 relays that just joined)")
    p.add_argument("--log-level", default="info", help="the relays' log level (debug costs CPU at N=200)")
    p.add_argument("--ends-log-level", default="info",
                   help="the clients' and services' log level (debug says why each failed operation failed)")
    p.add_argument("--idle-only", action="store_true",
                   help="no workload: measure idle relays --idle-wait s after the clients are up, for --idle-window s")
    p.add_argument("--idle-wait", type=float, default=60.0)
    p.add_argument("--idle-window", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dir", default="/tmp/gnet-testnet")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "testnet.json"))
    ns = p.parse_args()
    if ns.seeds is None:
        ns.seeds = max(3, ns.nodes // 40)
    if ns.settle is None:
        # a joined relay's DHT rounds come at ~1, 30, 90 and 210 s (dht/membership.py), each a
        # few lookups over disjoint paths: right after a 200-node start they kept 1.8 cores busy
        ns.settle = min(180.0, max(20.0, ns.nodes - 20.0))
    reason = unavailable_reason()
    if reason is not None:
        print(f"testnet: skipped: network namespaces unavailable: {reason}", file=sys.stderr)
        return 77

    def on_term(signum: int, frame: object) -> None:
        raise Stop()

    signal.signal(signal.SIGTERM, on_term)
    began = time.time()
    try:
        net = Testnet(ns)
    except LabUnavailable as exc:
        print(f"testnet: skipped: {exc}", file=sys.stderr)
        return 77
    try:
        net.plan()
        net.start()
        idle = net.measure_relays()
        idle_rates = net.settle_rates
        if ns.idle_only:
            time.sleep(ns.idle_wait)
            later = net.measure_idle(ns.idle_window)
            net.say(f"idle relays {ns.idle_wait:g} s later: {later}")
            Path(ns.out).write_text(json.dumps({"nodes": ns.nodes, "settling": idle_rates, "idle": later}, indent=2))
            return 0
        router = net.lab.delay_router_pid
        router_cpu, work_began = (cpu_seconds(router) if router else 0.0), time.monotonic()
        results = net.run_workload()
        loaded = net.measure_relays()
        if router:  # the TUN router is one process for every packet: it must not be the bottleneck
            loaded["router_cpu_percent"] = round(100 * (cpu_seconds(router) - router_cpu) / (time.monotonic() - work_began), 1)
    except (KeyboardInterrupt, Stop):
        print("testnet: interrupted; stopping everything", file=sys.stderr)
        net.close()
        return 130
    finally:
        if net.lab._namespaces:
            net.close()
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began)),
        "nodes": ns.nodes, "duration_s": ns.duration, "nets": ns.nets, "delay_ms": ns.delay, "loss": ns.loss,
        "delay_kind": net.delay_kind, "download_bytes": ns.size,
        "roles": {r: sum(v == r for v in net.roles.values()) for r in set(net.roles.values())},
        "churn": {"killed_and_restarted": len(net.kills), "window_s": ns.churn_window},
        "relays_not_linked_at_start": len(net.unlinked),
        "ops": summarize(results, net.kills, ns.churn_window),
        "relays_idle": idle, "relays_idle_rates": idle_rates, "relays_after_workload": loaded,
        "wall_s": round(time.time() - began, 1),
        "load": os.getloadavg(),
    }  # fmt: skip
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    text = [
        f"testnet: {ns.nodes} nodes, {ns.duration:g} s, {ns.nets} /16s, {ns.delay:g} ms, {ns.loss:.1%} loss ({net.delay_kind})"
    ]
    for op, e in report["ops"].items():
        text.append(f"  {op:8} {e['attempts']:5} attempts  success {e['success_rate']}  outside churn {e['success_rate_outside_churn']} "
                    f"(of {e['attempts_outside_churn']})  "
                    + (f"latency {e['latency_ms']}" if op == "dht" else f"ttfb {e['ttfb_ms']}  Mbit/s {e['throughput_mbit_s']}  corrupted {e['corrupted_transfers']}  bytes lost {e['bytes_lost']}"))  # fmt: skip
    for op, e in report["ops"].items():
        if e["failures"]["in_churn"] or e["failures"]["outside_churn"]:
            text.append(f"  {op} failures: in churn {e['failures']['in_churn']}, outside churn {e['failures']['outside_churn']}")
    text.append(f"  relays idle: {idle}")
    r = idle_rates
    text.append(f"  idle relay (settling, median/p90): CPU {r['cpu_percent']['median']}/{r['cpu_percent']['p90']} %, "
                f"wake-ups {r['wakeups_per_s']['median']}/{r['wakeups_per_s']['p90']} /s, links {r['links']['median']}/{r['links']['p90']}, "
                f"RSS {r['rss_mib']['median']} MiB; TUN router {r.get('router_cpu_percent')} % idle, "
                f"{loaded.get('router_cpu_percent')} % under the workload; wall {report['wall_s']} s")  # fmt: skip
    text.append(f"  relays after: {loaded}")
    out.with_suffix(".txt").write_text("\n".join(text) + "\n")
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
