"""One running node: wires identity, links, relay, tunnels together.

The package: this module (the `Node` that wires the parts and runs them),
``upkeep.py`` (links to bootstrap peers and random relays, peer exchange, key rotation,
guard probes) and ``state_report.py`` (the SIGUSR1 state dump, UDP counters); memory,
ports and sites have a module each. Opening circuits is ``circuit/guarded_open.py``, the DHT membership
``dht/membership.py``; the node hands them their parts and callbacks.

Every task the node starts lives in one TaskGroup and is wrapped so that an
unexpected exception is logged with its traceback and does not take the node
down; shutdown cancels them all and closes every link with a reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from .. import __version__
from ..bootstrap import BootstrapTracker, Progress, relays_needed
from ..circuit.builder import ClientCircuit
from ..circuit.guard_store import GuardStore
from ..circuit.guarded_open import GuardedCircuitOpener
from ..circuit.resolve import PathResolver
from ..config import Config
from ..config_values import ConfigError
from ..crypto import BACKEND_NAME
from ..dht.agent import DhtAgent, DhtClient
from ..dht.membership import DhtMembership
from ..dht.participant import Dht
from ..dht.values import ValidValue, record_from_value
from ..endpoint.datagram_flow import DatagramCounters
from ..endpoint.session import FrameSession
from ..errors import GnetError
from ..identity import Identity, load_or_create_identity
from ..link.manager import LinkManager, LinkSettings
from ..link.quic_link import Link
from ..metrics import MetricsSettings, NodeCounters
from ..peertable import PeerTable
from ..policy.exit_policy import ExitPolicy, record_summary
from ..relay.budget import RelayBudget
from ..relay.server import RelayService
from ..service.access_point import AccessPoint
from ..service.access_point_failures import AccessPointFailures
from ..service.client_auth import load_client_key
from ..wire.commands import Proto, RelayConnect
from ..wire.pathspec import Hop, HopId, HopRandom, TargetTcp
from ..wire.records import FLAG_EXIT, FLAG_RELAY, NodeRecord
from . import memory, state_report
from .ports import naming_bind_errors
from .sites import NodeSites
from .upkeep import PEERS_SAMPLE, NetworkUpkeep

if TYPE_CHECKING:
    from ..endpoint.pump import CircuitEnd
    from ..messaging import InboundCircuit, MessageService, Messenger
    from ..service.host import HostedService
    from ..site.mirror import SiteMirror

log = structlog.get_logger("globalnet.node")


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
        self.upkeep = NetworkUpkeep(
            self.identity, self.links, self.peers, self.guards,
            relaying=bool(config.listen), refresh_guards=self._refresh_guards,
        )  # fmt: skip
        self.opener = GuardedCircuitOpener(
            self.links, self.peers, self.guards, self.resolver,
            never_through=self._access_points, refresh_guards=self._refresh_guards, on_built=self._circuit_built,
        )  # fmt: skip
        # every relay takes part in the DHT; a client-only node uses it through circuits
        self.dht: Dht | None = Dht(self.identity.node_id, self.links, self.spawn) if config.listen else None
        self.dht_membership: DhtMembership | None = None
        if self.dht is not None:
            dht = self.dht
            self.relay.endpoints[Proto.DHT] = lambda session, hop: DhtAgent(dht, session, hop, self.spawn)
            self.dht_membership = DhtMembership(
                dht, self.peers, self.links.own_record, lambda: self._progress(self.bootstrap.dht_joined())
            )
        self.dht_client = DhtClient(self._open_dht_circuit)
        if config.listen:
            self.relay.access_point = AccessPoint(self.identity.node_id)
        self.services: list[HostedService] = []
        if config.services:  # (imported only then: an idle relay hosts nothing)
            from ..service.host import HostedService

            self.services = [HostedService(self, sc) for sc in config.services]
        self.sites = NodeSites(self, Path(config.data_dir), config.site_quota_mib << 20)
        # what the console lists (SOCKS and tunnels serve sites through self.sites: site.serve.SiteFront)
        self.site_mirrors = self.sites.mirrors
        self.service_descriptors: dict[bytes, Any] = {}  # descriptors this node looked up, until they expire
        self.access_point_failures = AccessPointFailures()  # access points we failed to reach: tried last
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
        # console messages for this node and from it: made on first use (most relays see none)
        self._messages: MessageService | None = None
        self._messenger: Messenger | None = None
        self.relay.endpoints[Proto.MESSAGE] = self._open_message_circuit
        self.console: Any = None  # a console.server.ConsoleServer with -console
        self.proxies: list[Any] = []
        self.metrics = NodeCounters()  # per node: several nodes may share a process
        self.metrics_server: Any = None  # a metrics.MetricsServer with -metrics
        hosted = len(config.services) + len(config.publish) + len(config.mirror)  # every site is a service too
        needed = relays_needed(config.tunnels + config.proxies, hosted, bool(config.listen))
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
        """SIGUSR1: every link, relay hop and circuit, and the modules loaded, at debug level."""
        state_report.dump_state(self.links, self.relay, self.circuits.values())

    def stop(self) -> None:
        self._stop.set()

    # -- console messages (messaging.py), made on first use -----------------------
    @property
    def messages(self) -> MessageService:
        """Message circuits that end at this node."""
        if self._messages is None:
            from ..messaging import MessageService

            self._messages = MessageService()
        return self._messages

    @property
    def messenger(self) -> Messenger:
        """Messages and pings this node sends."""
        if self._messenger is None:
            from ..messaging import Messenger

            self._messenger = Messenger(self)
        return self._messenger

    def _open_message_circuit(self, session: FrameSession, end: CircuitEnd) -> InboundCircuit:
        return self.messages.open(session, end)

    # -- running -----------------------------------------------------------
    def _publish_site(self, name: str, folder: Path) -> None:
        """-publish at start: a folder that cannot be published is a setting found unusable."""
        try:
            self.sites.publish(name, folder)
        except GnetError as exc:
            raise ConfigError(f"-publish {name}: {exc.detail}") from None

    # the console's site commands (console/node_api.py): node/sites.py does the work
    def publish_site(self, name: str, folder: Path) -> tuple[int, bool]:
        return self.sites.publish(name, folder)

    def announce_site(self, name: str, text: str) -> None:
        self.sites.announce(name, text)

    def mirror_site(self, site_key: bytes) -> SiteMirror:
        return self.sites.mirror(site_key)

    async def run(self) -> None:
        """Start everything the config asks for, run until stop(), then close it all."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                await self._start_operator_faces()
                await self._open_user_faces()
                self._say_started()
                self._load_state()
                for service in self.services:
                    self.spawn(service.run(), f"service {service.name}")
                self.spawn(self.links.run_keepalive(), "keepalive")
                self.spawn(self.upkeep.run(), "upkeep")
                self.spawn(memory.run(self.links.traffic), "memory after bursts")
                if self.dht_membership is not None:
                    self.spawn(self.dht_membership.run(), "dht upkeep")
                self.ready.set()
                self._progress(self.bootstrap.start())
                await self._stop.wait()
                log.info("node stopping")
                self._close_faces()
        finally:
            self.upkeep.save_peers()
            self._group = None
            self.links.close()
            await asyncio.sleep(0.05)  # let CLOSE frames leave

    async def _start_operator_faces(self) -> None:
        """The relay's listener, the console and the metrics page.

        The faces (console, metrics, tunnels, SOCKS) are imported only when configured: an
        idle relay never loads them (memory per node; `make memory`, bench/node_memory.py).
        """
        cfg = self.config
        if cfg.listen:
            with naming_bind_errors("-listen", *cfg.listen, "(UDP)"):
                await self.links.listen(*cfg.listen)
            self.links.refresh_record()
        if cfg.console is not None:
            from ..console.server import start_console

            with naming_bind_errors("-console", *cfg.console):
                self.console = await start_console(self, *cfg.console)
        if cfg.metrics is not None:
            from ..metrics.server import start_metrics
            from ..node_metrics import NodeMetricsSource

            settings = MetricsSettings(*cfg.metrics)
            with naming_bind_errors("-metrics", *cfg.metrics):
                self.metrics_server = await start_metrics(settings, NodeMetricsSource(self), self.metrics, self.spawn)

    def _say_started(self) -> None:
        """One line once every port is bound: a busy port stops the node before any log line."""
        log.info(
            "node started",
            node_id=self.identity.node_id.hex(),
            listen=f"{self.links.listen_address[0]}:{self.links.listen_address[1]}" if self.links.listen_address else "no",
            exit="on" if self.exit_policy.enabled else "off",
            console=self.console.address_text() if self.console else "no",
            crypto=BACKEND_NAME,
            version=__version__,
        )

    def _load_state(self) -> None:
        """The peer table and guards from the data dir; links to the bootstrap peers."""
        cfg = self.config
        loaded = self.peers.load()
        if loaded:
            log.info("peer table loaded", relays=loaded, file=str(self.peers.path))
        kept = self.guards.load()
        if kept:
            log.info("guards loaded", guards=kept, file=str(self.guards.path))
        for peer in cfg.connect:
            self.spawn(self.upkeep.keep_connected(peer), "bootstrap")
        self._progress(self.bootstrap.relays_learned(len(self.peers.relays())))
        if not cfg.connect and not loaded and self.bootstrap.relays_needed > 0:
            log.info("no bootstrap peers: give -connect HOST:PORT or a bootstrap list in the config")

    async def _open_user_faces(self) -> None:
        """Tunnels, published sites and proxies, in that order (sites before the proxy that
        serves them); all bound before the node says it started or links anywhere."""
        cfg = self.config
        if cfg.tunnels:
            from ..tunnel import Tunnel
            from ..udp_tunnel import UdpTunnel
        for spec in cfg.tunnels:
            tunnel = UdpTunnel(self, spec, cfg.udp_idle_timeout) if spec.udp else Tunnel(self, spec)
            with naming_bind_errors("-tunnel", spec.listen_host, spec.listen_port, "(UDP)" if spec.udp else ""):
                await tunnel.start()
            self.tunnels.append(tunnel)
        for name, folder in cfg.publish:
            self._publish_site(name, folder)
        for site_key in cfg.mirror:
            self.mirror_site(site_key)
        if cfg.proxies:
            from ..socks import SocksProxy
        for spec in cfg.proxies:
            proxy = SocksProxy(self, spec, cfg.proxy_auth, cfg.proxy_timeout, cfg.udp_idle_timeout)
            with naming_bind_errors("-proxy", spec.listen_host, spec.listen_port):
                await proxy.start()
            self.proxies.append(proxy)

    def _close_faces(self) -> None:
        if self.console is not None:
            self.console.close()
        if self.metrics_server is not None:
            self.metrics_server.close()
        if self._messenger is not None:
            self._messenger.close()
        for tunnel in self.tunnels:
            tunnel.close()
        self.dht_client.close()
        self.sites.close()  # (its sessions to mirrors, if it ever made any)
        for proxy in self.proxies:
            proxy.close()
        for task in list(self._tasks):
            task.cancel()

    async def probe_guards(self) -> None:
        await self.upkeep.probe_guards()

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
        final_wait: float | None = None,
    ) -> ClientCircuit:
        """Build a circuit through `hops` (explicit, node ids or rand); the last hop executes `final`
        (answering within `final_wait` s, or the hop timeout).

        Guards, `vanguards` and retries: circuit/guarded_open.py. `isolation` says who the
        circuit is for; circuits with different keys must never be shared (today none is:
        one circuit per connection).
        """
        circuit = await self.opener.open(hops, final, purpose, avoid, vanguards, final_wait)
        circuit.isolation = isolation
        return circuit

    def _circuit_built(self, circuit: ClientCircuit, seconds: float) -> None:
        self.metrics.circuit_built(seconds)
        self.circuits[circuit.id] = circuit

    def _access_points(self) -> set[bytes]:
        """The access points of the services we host: none of our circuits passes through
        one as an ordinary hop, so none of them learns our address."""
        return {ap for service in self.services for ap in service.intros} | {
            ap for mirror in self.site_mirrors.values() for ap in mirror.intros
        }

    async def open_service(
        self, address: str, then: TargetTcp | None, purpose: str, command: RelayConnect | None = None
    ) -> ClientCircuit:
        """A circuit to a hidden service (its own target, or `then` if the service allows it)."""
        from ..service.client import open_service_circuit

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
            **state_report.udp_statistics(self.udp_totals, self.relay.udp_totals),
            **(self.dht.statistics() if self.dht else {}),
        }
