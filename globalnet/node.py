"""One running node: wires identity, links, relay, tunnels together.

Every task the node starts lives in one TaskGroup and is wrapped so that an
unexpected exception is logged with its traceback and does not take the node
down; shutdown cancels them all and closes every link with a reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Hashable
from pathlib import Path
from typing import Any

import structlog

from . import __version__
from .bootstrap import BootstrapTracker, Progress, relays_needed
from .circuit.builder import ClientCircuit, HopTarget, build_circuit
from .circuit.guard_store import GuardStore
from .circuit.resolve import NoExitError, PathResolver, network_of_target
from .config import Config
from .crypto import BACKEND_NAME
from .dht.agent import DhtAgent, DhtClient
from .dht.participant import Dht
from .dht.values import ValidValue, node_record_value, record_from_value
from .endpoint.datagram_flow import DatagramCounters
from .endpoint.session import FrameSession
from .errors import ErrorKind, GnetError
from .identity import Identity, load_or_create_identity
from .link.manager import LinkManager, LinkSettings
from .link.quic_link import Link
from .messaging import MessageService, Messenger
from .metrics import MetricsSettings, NodeCounters
from .peertable import PeerTable
from .policy.exit_policy import ExitPolicy, record_summary
from .relay.budget import RelayBudget
from .relay.server import RelayService
from .service.access_point import AccessPoint
from .service.client import open_service_circuit
from .service.client_auth import load_client_key
from .service.host import HostedService
from .site.cache import SiteCache
from .wire.commands import Proto, RelayConnect
from .wire.pathspec import Hop, HopAddr, HopId, HopRandom, TargetTcp, format_host_port
from .wire.records import FLAG_EXIT, FLAG_RELAY, NodeRecord, short_id

log = structlog.get_logger("globalnet.node")


def _udp_statistics(own: DatagramCounters, exited: DatagramCounters) -> dict[str, int]:
    """Datagrams of our own UDP flows and of those we exit, with what was dropped (never queued)."""
    return {
        "udp_datagrams_out": own.sent + exited.sent,
        "udp_datagrams_in": own.received + exited.received,
        "udp_dropped_window": own.dropped_window + exited.dropped_window,
        "udp_dropped_oversize": own.dropped_oversize + exited.dropped_oversize,
        "udp_dropped_other": own.dropped_other + exited.dropped_other,
    }


def _pin(record: NodeRecord) -> HopAddr:
    host, port = record.addresses[0]
    return HopAddr(host, port, record.node_id)

CONNECT_RETRY = (1.0, 60.0)  # first and largest back-off between bootstrap attempts
UPKEEP_INTERVAL = 30.0
#: Records sent in one PEERS message.
PEERS_SAMPLE = 16
#: A relay keeps at least this many links up (to random known relays), so
#: PEERS keep flowing and the node stays part of the network.
MIN_LINKS = 4
DHT_REFRESH = 300.0
#: Tries for a circuit with `rand` hops before the error reaches the user.
CIRCUIT_ATTEMPTS = 5


class Node:
    def __init__(self, config: Config, identity: Identity | None = None) -> None:
        self.config = config
        self.identity = identity or load_or_create_identity(config.identity_file)
        self.exit_policy = ExitPolicy(config.exit.enabled, config.exit.allow)
        self.links = LinkManager(
            self.identity,
            self._make_record,
            LinkSettings(idle_timeout=config.idle_timeout, max_datagram_size=config.max_datagram_size),
        )
        self.relay = RelayService(self.identity, self.links, self.exit_policy, self.spawn)
        exit_udp = config.exit.allow_udp if config.exit.enabled else ()
        self.relay.udp_policy = self.udp_policy = ExitPolicy(bool(exit_udp), exit_udp)
        self.relay.udp_idle_timeout = config.udp_idle_timeout
        self.udp_totals = DatagramCounters()  # this node's own UDP flows (tunnels, SOCKS), ever
        self.relay.budget = RelayBudget(config.relay_budget_mib << 20)
        self.peers = PeerTable(self.identity.node_id, config.data_dir)
        self.resolver = PathResolver(self.peers, self._lookup_record)
        self.guards = GuardStore(config.data_dir)
        # every relay takes part in the DHT; a client-only node uses it through circuits
        self.dht: Dht | None = Dht(self.identity.node_id, self.links, self.spawn) if config.listen else None
        if self.dht is not None:
            dht = self.dht
            self.relay.endpoints[Proto.DHT] = lambda session, hop: DhtAgent(dht, session, hop, self.spawn)
        self.dht_client = DhtClient(self._open_dht_circuit)
        if config.listen:
            self.relay.access_point = AccessPoint(self.identity.node_id)
        self.services = [HostedService(self, sc) for sc in config.services]
        # verified copies of signed sites (the SOCKS proxy answers http://SITE.gnet/ from it)
        self.site_cache = SiteCache(Path(config.data_dir) / "site-cache")
        self.service_descriptors: dict[bytes, Any] = {}  # descriptors this node looked up, until they expire
        # our hidden-service client key (gclient --gen-client-key), for services with client authorization
        self.client_auth_key = load_client_key(Path(config.data_dir) / "client_auth")
        self.links.on_link_ready.append(self._on_link_ready)
        self.links.on_peers = self._on_peers
        self.circuits: dict[int, ClientCircuit] = {}
        self.started = time.monotonic()
        self.ready = asyncio.Event()  # listening and tunnels open
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._group: asyncio.TaskGroup | None = None
        self.tunnels: list[Any] = []
        self.messages = MessageService()  # console messages for this node
        self.relay.endpoints[Proto.MESSAGE] = self.messages.open
        self.messenger = Messenger(self)  # console messages from this node
        self.console: Any = None  # a console.server.ConsoleServer with -console
        self.proxies: list[Any] = []
        self.metrics = NodeCounters()  # per node: several nodes may share a process
        self.metrics_server: Any = None  # a metrics.MetricsServer with -metrics
        needed = relays_needed(config.tunnels + config.proxies, len(config.services), bool(config.listen))
        self.bootstrap = BootstrapTracker(
            needed,
            expect_links=needed > 0 or bool(config.connect),
            expect_dht=self.dht is not None and (needed > 0 or bool(config.connect)),
            services=tuple(sc.name for sc in config.services),
        )

    # -- records -----------------------------------------------------------
    def _make_record(self) -> NodeRecord:
        flags = FLAG_RELAY if self.config.listen else 0
        if self.exit_policy.enabled:
            flags |= FLAG_EXIT
        addresses: tuple[tuple[str, int], ...] = ()
        if self.config.advertise:
            addresses = (self.config.advertise,)
        elif self.links.listen_address and self.links.listen_address[0] not in ("0.0.0.0", "::"):
            addresses = (self.links.listen_address,)
        return self.identity.make_record(addresses, flags, record_summary(self.exit_policy, self.udp_policy))

    # -- tasks -------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Start a node-owned task; it ends with the node and cannot crash it."""
        if self._group is None or self._stop.is_set():
            coro.close()
            return
        task = self._group.create_task(self._guarded(coro, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task failed", task=name)

    def dump_state(self) -> None:
        """SIGUSR1: log every link, relay hop and circuit at debug level (for diagnosing a stall)."""
        for link in self.links.all_links:
            log.debug("state link", **link.statistics())
        for hop in list(self.relay.hops):
            up, down = hop.upstream, hop.downstream
            log.debug(
                "state hop",
                state=hop.core.state.value,
                up=(up.stream_id, up.bytes_in, up.bytes_out, up.finished_sending, up.finished_receiving, up.closed),
                down=(down.stream_id, down.bytes_in, down.bytes_out, down.finished_sending, down.finished_receiving, down.closed)
                if down is not None
                else None,
                up_link=up.link.label(),
                down_link=down.link.label() if down is not None else None,
            )
        for circuit in self.circuits.values():
            log.debug("state circuit", **circuit.statistics(), stream=circuit.stream.stream_id, stream_in=circuit.stream.bytes_in)

    def stop(self) -> None:
        self._stop.set()

    # -- running -----------------------------------------------------------
    def _publish_site(self, name: str, folder: Path) -> None:
        """Sign `folder` as site `name` and seed the cache from it (the publisher is the first mirror)."""
        from .site.manifest import SiteError
        from .site.store import sign_folder

        try:
            signed = sign_folder(Path(self.config.data_dir), name, folder)
            self.site_cache.seed_from_folder(signed.manifest.site_key, signed.manifest.encode(), folder)
        except (SiteError, OSError) as exc:
            raise GnetError(ErrorKind.INTERNAL, f"-publish {name}: {exc}") from None
        m = signed.manifest
        log.info("site published", name=name, seq=m.seq, files=len(m.files), bytes=m.total_size)
        log.debug("site address", name=name, address=signed.address)

    async def run(self) -> None:
        # the faces (console, metrics, tunnels, SOCKS) are imported only when configured:
        # an idle relay never loads them (less memory per node; see tools/node_memory.py)
        cfg = self.config
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                if cfg.listen:
                    try:
                        await self.links.listen(*cfg.listen)
                    except OSError as exc:  # name the address: the bare errno does not
                        where = format_host_port(*cfg.listen)
                        raise OSError(exc.errno, f"-listen {where} (UDP): {exc.strerror or exc}") from None
                    self.links.refresh_record()
                if cfg.console is not None:
                    from .console.server import start_console

                    self.console = await start_console(self, *cfg.console)
                if cfg.metrics is not None:
                    from .metrics.server import start_metrics
                    from .node_metrics import NodeMetricsSource

                    settings = MetricsSettings(*cfg.metrics)
                    self.metrics_server = await start_metrics(settings, NodeMetricsSource(self), self.metrics, self.spawn)
                log.info(
                    "node started",
                    node_id=self.identity.node_id.hex(),
                    listen=f"{self.links.listen_address[0]}:{self.links.listen_address[1]}" if self.links.listen_address else "no",
                    exit="on" if self.exit_policy.enabled else "off",
                    console=self.console.address_text() if self.console else "no",
                    crypto=BACKEND_NAME,
                    version=__version__,
                )
                loaded = self.peers.load()
                if loaded:
                    log.info("peer table loaded", relays=loaded, file=str(self.peers.path))
                kept = self.guards.load()
                if kept:
                    log.info("guards loaded", guards=kept, file=str(self.guards.path))
                for peer in cfg.connect:
                    self.spawn(self._keep_connected(peer), "bootstrap")
                self._progress(self.bootstrap.relays_learned(len(self.peers.relays())))
                if not cfg.connect and not loaded and self.bootstrap.relays_needed > 0:
                    log.info("no bootstrap peers: give -connect HOST:PORT or a bootstrap list in the config")
                if cfg.tunnels:
                    from .tunnel import Tunnel
                    from .udp_tunnel import UdpTunnel
                for spec in cfg.tunnels:
                    tunnel = UdpTunnel(self, spec, cfg.udp_idle_timeout) if spec.udp else Tunnel(self, spec)
                    await tunnel.start()
                    self.tunnels.append(tunnel)
                for service in self.services:
                    self.spawn(service.run(), f"service {service.name}")
                for name, folder in cfg.publish:
                    self._publish_site(name, folder)
                if cfg.proxies:
                    from .socks import SocksProxy
                for spec in cfg.proxies:
                    proxy = SocksProxy(self, spec, cfg.proxy_auth, cfg.proxy_timeout, cfg.udp_idle_timeout)
                    await proxy.start()
                    self.proxies.append(proxy)
                self.spawn(self.links.run_keepalive(), "keepalive")
                self.spawn(self._upkeep(), "upkeep")
                if self.dht is not None:
                    self.spawn(self._dht_upkeep(), "dht upkeep")
                self.ready.set()
                self._progress(self.bootstrap.start())
                await self._stop.wait()
                log.info("node stopping")
                if self.console is not None:
                    self.console.close()
                if self.metrics_server is not None:
                    self.metrics_server.close()
                self.messenger.close()
                for tunnel in self.tunnels:
                    tunnel.close()
                self.dht_client.close()
                for proxy in self.proxies:
                    proxy.close()
                for task in list(self._tasks):
                    task.cancel()
        finally:
            self._save_peers()
            self._group = None
            self.links.close()
            await asyncio.sleep(0.05)  # let CLOSE frames leave

    async def _keep_connected(self, peer: HopAddr) -> None:
        """Link to a bootstrap peer, retrying with back-off; re-link if it drops."""
        delay = CONNECT_RETRY[0]
        where = f"{peer.host}:{peer.port}"
        while True:
            try:
                link = await self.links.get_link(peer.host, peer.port, peer.node_id)
                log.info("linked to peer", peer=short_id(link.peer_id), address=where)
                delay = CONNECT_RETRY[0]
                await link.wait_closed()
                log.info("link to peer lost, reconnecting", peer=short_id(link.peer_id), address=where)
            except GnetError as exc:
                log.warning("cannot link to peer", address=where, reason=str(exc), retry_in=f"{delay:.0f}s")
                if exc.kind is ErrorKind.PIN_MISMATCH:
                    delay = CONNECT_RETRY[1]
            await asyncio.sleep(delay)
            delay = min(delay * 2, CONNECT_RETRY[1])

    async def _upkeep(self) -> None:
        """Onion key rotation, peer exchange, enough links, the peer table on disk."""
        first = True
        while True:
            await asyncio.sleep(2.0 if first else UPKEEP_INTERVAL)
            first = False
            if self.identity.onion.rotate_if_due(time.time()):
                self.links.refresh_record()
                log.info("onion key rotated")
            self.peers.expire()
            await self.probe_guards()
            self._refresh_guards()
            for link in list(self.links.links.values()):
                link.send_peers([r.encode() for r in self.peers.sample(PEERS_SAMPLE)])
            if self.config.listen:
                await self._keep_links()
            if self.peers.changed:
                self._save_peers()

    async def probe_guards(self) -> None:
        """Dial guards that are down when their back-off says so: a guard is given up only
        after it stayed unreachable at the link layer (circuit failures never count)."""
        for record in self.guards.due_for_retry():
            host, port = record.addresses[0]
            try:
                await self.links.get_link(host, port, record.node_id)
            except GnetError:
                self.guards.link_failed(record.node_id)
            else:
                self.guards.link_ok(record.node_id)

    async def _keep_links(self) -> None:
        """Link to random known relays until MIN_LINKS links are up."""
        missing = MIN_LINKS - len(self.links.links)
        if missing <= 0:
            return
        candidates = [r for r in self.peers.relays() if r.node_id not in self.links.links]
        for record in self.peers.sample(len(candidates))[: missing * 2]:
            if record.node_id in self.links.links:
                continue
            host, port = record.addresses[0]
            try:
                await self.links.get_link(host, port, record.node_id)
                missing -= 1
            except GnetError as exc:
                self.peers.failed(record.node_id)
                log.debug("cannot link to known relay", peer=short_id(record.node_id), reason=str(exc))
            if missing <= 0:
                return

    def _save_peers(self) -> None:
        try:
            self.peers.save()
        except OSError as exc:
            log.warning("cannot save the peer table", file=str(self.peers.path), reason=exc.strerror)

    # -- peer discovery ------------------------------------------------------
    def _on_link_ready(self, link: Link) -> None:
        assert link.peer is not None
        if link.peer.flags & FLAG_RELAY and link.peer.addresses:
            if self.peers.add(link.peer):
                self._report_progress()
            if self.dht is not None:
                self.dht.add_contact(link.peer)
        link.send_peers([r.encode() for r in self.peers.sample(PEERS_SAMPLE)])
        self._progress(self.bootstrap.links_up(len(self.links.links)))

    def _on_peers(self, link: Link, records: list[bytes]) -> None:
        if self.peers.update_many(records):
            self._report_progress()

    # -- the DHT -------------------------------------------------------------
    async def _dht_upkeep(self) -> None:
        """Join the DHT, publish our record, then keep the routing table and values fresh."""
        assert self.dht is not None
        dht = self.dht
        delay = 1.0
        while True:
            await asyncio.sleep(delay)
            try:
                contacts = await dht.bootstrap(self.peers.relays())
                if contacts:
                    key, value = node_record_value(self.links.own_record())
                    stored = await dht.publish(key, value, keep=True)
                    log.debug("dht joined", contacts=contacts, record_stored_on=stored)
                    self._progress(self.bootstrap.dht_joined())
                    await self._learn_from_dht()
                    await dht.refresh()
            except (GnetError, TimeoutError) as exc:
                log.debug("dht upkeep failed", reason=str(exc))
            delay = min(delay * 2, DHT_REFRESH)

    async def _learn_from_dht(self) -> None:
        """Fetch the records of DHT contacts we do not know yet (relay work, not a private lookup)."""
        assert self.dht is not None
        unknown = [n.id for b in self.dht.protocol.router.buckets for n in b.get_nodes() if n.id not in self.peers]
        for node_id in unknown[:16]:
            found = await self.dht.lookup(node_id)
            if found is not None:
                try:
                    self.peers.add(record_from_value(found.value))
                except GnetError:
                    pass

    async def _open_dht_circuit(self) -> tuple[ClientCircuit, FrameSession]:
        # a hosting node never routes through its own access points: on a small network
        # that leaves fewer relays for a DHT circuit (2 hops on the README's 3 relays)
        hops = min(3, max(1, len(self.peers.relays()) - len(self._access_points())))
        circuit = await self.open_circuit(
            tuple(HopRandom() for _ in range(hops)), RelayConnect(Proto.DHT), "dht", vanguards=True
        )
        assert circuit.core.session is not None
        return circuit, circuit.core.session

    async def dht_lookup(self, key: bytes) -> ValidValue | None:
        """A lookup for ourselves: through a circuit, never from our own address."""
        try:
            found = await self.dht_client.lookup(key)
        except GnetError:
            self.metrics.dht_lookup(ok=False)
            raise
        self.metrics.dht_lookup(ok=found is not None)
        return found

    async def dht_publish(self, key: bytes, value: bytes) -> int:
        return await self.dht_client.publish(key, value)

    async def _lookup_record(self, node_id: bytes) -> NodeRecord | None:
        try:
            found = await self.dht_lookup(node_id)
        except GnetError:
            return None
        if found is None:
            return None
        try:
            record = record_from_value(found.value)
        except GnetError:
            return None
        self.peers.add(record)
        return record

    def _report_progress(self) -> None:
        known = len(self.peers.relays())
        if known <= 20 or known % 50 == 0:
            log.debug("learning relays", known=known)
        self._progress(self.bootstrap.relays_learned(known))

    # -- bootstrap progress (hooks for guards and services) -------------------
    def _progress(self, step: Progress | None) -> None:
        if step is None:
            return
        if step.ready:
            log.info("ready", percent=100, tunnels=len(self.config.tunnels), proxies=len(self.config.proxies),
                     services=len(self.config.services), relays_known=self.bootstrap.relays_known)
        else:
            log.info(step.line(), percent=step.percent, phase=step.phase)

    def service_published(self, name: str) -> None:
        self._progress(self.bootstrap.service_published(name))

    def guards_chosen(self, count: int) -> None:
        self._progress(self.bootstrap.guards_chosen(count))

    def _refresh_guards(self) -> None:
        self.guards.refresh(self.peers.relays())
        if self.guards.entry.guards:
            self.guards_chosen(len(self.guards.entry.guards))

    # -- circuits ----------------------------------------------------------
    def path_to(self, node_id: bytes, via: tuple[Hop, ...] | None = None) -> tuple[Hop, ...]:
        """The hops of a circuit whose last hop is the node `node_id` itself
        (console messages, pings): two random relays, then the node, so the node
        sees a relay and never us. `via` replaces the relays (tests, and the
        console's `send hop>...>id text`)."""
        relays: tuple[Hop, ...] = (HopRandom(), HopRandom()) if via is None else via
        return (*relays, HopId(node_id))

    async def open_circuit(
        self,
        hops: tuple[Hop, ...],
        final: RelayConnect,
        purpose: str,
        avoid: set[bytes] | None = None,
        isolation: Hashable | None = None,
        vanguards: bool = False,
    ) -> ClientCircuit:
        """Build a circuit through `hops` (explicit, node ids or rand); the last hop executes `final`.

        A `rand` first hop is one of our entry guards (circuit/guards.py); with
        `vanguards` (hidden-service and DHT circuits) a `rand` second hop is
        one of our second-layer guards.

        A path with `rand` hops is retried with other relays when a relay on
        it cannot be reached (that relay is marked failed in the peer table);
        an explicit path is tried once, so its error names the hop the user wrote.
        `isolation` says who the circuit is for; circuits with different keys
        must never be shared (today none is: one circuit per connection).
        """
        attempts = CIRCUIT_ATTEMPTS if any(isinstance(h, HopRandom) for h in hops) else 1
        for attempt in range(attempts):
            try:
                circuit = await self._open_circuit_once(
                    hops, final, purpose, (avoid or set()) | self._access_points(), vanguards
                )
                circuit.isolation = isolation
                return circuit
            except GnetError as exc:
                if exc.node_id is not None and exc.node_id not in self.guards.records:
                    self.peers.failed(exc.node_id)  # a guard is judged by guards.py, not by the peer table
                retry = exc.kind in (ErrorKind.NO_ROUTE, ErrorKind.TIMEOUT, ErrorKind.LINK_LOST, ErrorKind.HANDSHAKE_FAILED)
                if attempt + 1 >= attempts or not retry:
                    raise
                log.debug("circuit attempt failed, trying other relays", purpose=purpose, reason=str(exc))
        raise AssertionError("unreachable")

    def _access_points(self) -> set[bytes]:
        """The access points of the services we host: none of our circuits passes through
        one as an ordinary hop, so none of them learns our address."""
        return {ap for service in self.services for ap in service.intros}

    async def _open_circuit_once(
        self, hops: tuple[Hop, ...], final: RelayConnect, purpose: str, avoid: set[bytes], vanguards: bool = False
    ) -> ClientCircuit:
        targets = await self._resolve_with_guards(hops, final, avoid, vanguards)
        first = targets[0]
        try:
            link = await self.links.get_link(first.host, first.port, first.node_id)
        except GnetError as exc:
            if first.node_id is not None:
                self.guards.link_failed(first.node_id)
            raise GnetError(exc.kind, f"hop 1 ({first.describe()}): {exc.detail or exc.kind.describe}", first.node_id) from None
        if first.node_id is not None:
            self.guards.link_ok(first.node_id)
        started = time.monotonic()
        try:
            circuit = await build_circuit(link, targets[1:], final, purpose)
        except GnetError:
            if first.node_id is not None and not link.is_ready:
                # the guard's link died under the circuit: that is the guard unreachable (a link
                # failure), unlike a circuit refused or cut further on, which never counts
                self.guards.link_failed(first.node_id)
            raise
        self.metrics.circuit_built(time.monotonic() - started)
        self.circuits[circuit.id] = circuit
        return circuit

    async def _resolve_with_guards(
        self, hops: tuple[Hop, ...], final: RelayConnect, avoid: set[bytes], vanguards: bool
    ) -> list[HopTarget]:
        """Pin a `rand` first hop to an entry guard (and, with `vanguards`, a `rand` second hop
        to a second-layer guard), then resolve the rest. A guard that cannot be the first hop
        of this path (e.g. it is the only exit for the target) gives way to the next guard."""
        if not hops or not isinstance(hops[0], HopRandom):
            return await self.resolver.resolve(hops, final, avoid=avoid)
        for waited in (False, True):
            self._refresh_guards()
            named = {h.node_id for h in hops if isinstance(h, (HopId, HopAddr)) and h.node_id is not None}
            entries = [g for g in self.guards.entry_guards() if g.node_id not in avoid | named]
            fallback: list[HopTarget] | None = None
            for guard in entries:  # in the guards' order (reachable first, shuffled)
                try:
                    path = await self.resolver.resolve(self._guarded_hops(hops, guard, avoid, vanguards), final, avoid=avoid, wait=0.0)
                except NoExitError:
                    raise  # no exit allows the target at all: no other guard changes that
                except GnetError:
                    continue  # this guard cannot start this path (e.g. it is the only fitting exit)
                if len({network_of_target(t) for t in path}) == len(path):
                    return path  # every hop in its own /16
                fallback = fallback or path  # e.g. the only fitting exit shares this guard's /16: try the next guard
            if fallback is not None:
                return fallback
            if entries:
                # no guard fits with the relays known now: wait for more, keeping our first guard
                return await self.resolver.resolve(self._guarded_hops(hops, entries[0], avoid, vanguards), final, avoid=avoid)
            if waited:
                break
            await self.resolver.resolve(hops, final, avoid=avoid)  # knows no relay yet: wait until it does
        raise GnetError(ErrorKind.NO_ROUTE, "no entry guard could be chosen")

    def _guarded_hops(self, hops: tuple[Hop, ...], guard: NodeRecord, avoid: set[bytes], vanguards: bool) -> tuple[Hop, ...]:
        pinned: list[Hop] = [_pin(guard), *hops[1:]]
        if vanguards and len(hops) > 2 and isinstance(hops[1], HopRandom):
            named = {h.node_id for h in hops if isinstance(h, (HopId, HopAddr)) and h.node_id is not None}
            middles = self.guards.middle_guards(exclude=avoid | named | {guard.node_id})
            if middles:
                pinned[1] = _pin(middles[0])
        return tuple(pinned)

    async def open_service(
        self, address: str, then: TargetTcp | None, purpose: str, command: RelayConnect | None = None
    ) -> ClientCircuit:
        """A circuit to a hidden service (its own target, or `then` if the service allows it)."""
        circuit = await open_service_circuit(self, address, then, purpose, command)
        self.circuits[circuit.id] = circuit
        return circuit

    def forget_circuit(self, circuit: ClientCircuit) -> None:
        self.circuits.pop(circuit.id, None)

    def statistics(self) -> dict[str, Any]:
        return {
            "node_id": self.identity.node_id.hex(),
            "uptime": round(time.monotonic() - self.started, 1),
            "circuits": len(self.circuits),
            "crypto": BACKEND_NAME,
            "relays_known": len(self.peers.relays()),
            "bootstrap": self.bootstrap.status(),
            **self.links.statistics(),
            **self.relay.statistics(),
            **_udp_statistics(self.udp_totals, self.relay.udp_totals),
            **(self.dht.statistics() if self.dht else {}),
        }
