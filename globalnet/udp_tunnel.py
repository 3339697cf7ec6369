"""UDP port forwarding (`-tunnel "udp:PORT>hop>...>host:port"`), and the client half of UDP circuits.

Each local source address (ip, port) that sends to the tunnel's port gets its
own circuit, as each TCP connection does: two local applications never share
a circuit, and replies go back to the address that sent. Datagrams that
arrive while the circuit is being built wait in a small bounded queue (and
are dropped past it, counted); an idle flow closes after the idle timeout.
Nothing is ever split, reordered on purpose, or retried: UDP semantics, end
to end.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import structlog

from .endpoint.datagram_flow import DatagramCounters
from .endpoint.datagram_pump import DatagramPump
from .errors import ErrorKind, GnetError
from .link.udp import size_buffers
from .service.node_api import ServiceOpener
from .wire.commands import Proto, RelayConnect
from .wire.datagram import Datagram
from .wire.pathspec import PathSpec, TargetService, TargetTcp

log = structlog.get_logger("globalnet.tunnel")

MAX_FLOWS = 256  # local source addresses with a circuit at once, per tunnel
MAX_EARLY = 32  # datagrams queued per flow while its circuit is built
BUILD_TIMEOUT = 30.0


class UdpCircuit(Protocol):
    """What a UDP flow needs of its client circuit (a ClientCircuit)."""

    id: int
    core: Any

    def send_wire(self, data: bytes, end: bool = False) -> None: ...

    def reset(self, kind: ErrorKind) -> None: ...

    def attach(self, pump: Any) -> None: ...


class UdpClientNode(ServiceOpener, Protocol):
    """The node, as a UDP client sees it: circuits and services, and where its own flows are counted."""

    @property
    def udp_totals(self) -> DatagramCounters: ...


class UdpFlow:
    """One UDP circuit on the client side: queue while building, then a DatagramPump."""

    def __init__(
        self,
        deliver: Callable[[Datagram], None],
        on_close: Callable[[UdpFlow], None],
        idle_timeout: float,
        totals: DatagramCounters | None = None,
    ) -> None:
        self.totals = totals
        self._deliver = deliver
        self._on_close = on_close
        self.idle_timeout = idle_timeout
        self.early: deque[tuple[str, int, bytes]] = deque()
        self.dropped_early = 0
        self.pump: DatagramPump | None = None
        self.circuit: Any = None
        self.closed = False

    def send(self, host: str, port: int, payload: bytes) -> None:
        if self.closed:
            return
        if self.pump is None:
            if len(self.early) >= MAX_EARLY:
                self.dropped_early += 1
                return
            self.early.append((host, port, payload))
            return
        self.pump.send(host, port, payload)

    async def run(self, open_circuit: Callable[[], Coroutine[Any, Any, Any]], node: UdpClientNode, label: str) -> None:
        """Build the circuit, attach the pump, flush what waited; ends when the flow closes."""
        try:
            async with asyncio.timeout(BUILD_TIMEOUT):
                circuit = await open_circuit()
        except (TimeoutError, GnetError) as exc:
            reason = "circuit build timed out" if isinstance(exc, TimeoutError) else str(exc)
            log.warning("udp flow failed", tunnel=label, reason=reason)
            self._finish()
            return
        if self.closed:  # closed while building (tunnel shut down)
            circuit.reset(ErrorKind.CLOSED)
            node.forget_circuit(circuit)
            return
        self.circuit = circuit
        done = asyncio.get_running_loop().create_future()

        def closed(error: GnetError | None) -> None:
            if error is not None:
                log.info("udp flow cut", tunnel=label, circuit=circuit.id, reason=str(error))
            if not done.done():
                done.set_result(None)

        assert circuit.core.session is not None
        self.pump = DatagramPump(
            circuit.core.session, circuit, self._deliver, closed, self.idle_timeout, totals=self.totals
        )
        circuit.udp = self.pump  # `list circuits` shows its datagram counters
        circuit.attach(self.pump)
        while self.early and not self.pump.closed:
            self.pump.send(*self.early.popleft())
        try:
            await done
        finally:
            if not self.pump.closed:
                self.pump.close()
            node.forget_circuit(circuit)
            self._finish()

    def close(self) -> None:
        if self.pump is not None:
            self.pump.close()
        self._finish()

    def _finish(self) -> None:
        if not self.closed:
            self.closed = True
            self._on_close(self)


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, tunnel: UdpTunnel) -> None:
        self.tunnel = tunnel

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.tunnel.received(data, addr)


class UdpTunnel:
    def __init__(self, node: UdpClientNode, spec: PathSpec, idle_timeout: float) -> None:
        if not isinstance(spec.target, (TargetTcp, TargetService)):
            raise GnetError(ErrorKind.NOT_SUPPORTED, "a UDP tunnel's target is host:port or a hidden service")
        self.node = node
        self.spec = spec
        self.target = spec.target
        self.idle_timeout = idle_timeout
        self.transport: asyncio.DatagramTransport | None = None
        self.flows: dict[tuple[str, int], UdpFlow] = {}
        self.refused = 0
        self.port = spec.listen_port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: _Listener(self), local_addr=(self.spec.listen_host, self.spec.listen_port)
        )
        self.port = self.transport.get_extra_info("sockname")[1]
        size_buffers(self.transport.get_extra_info("socket"))  # bursts from local applications stay in the kernel
        log.info("udp tunnel listening", listen=f"{self.spec.listen_host}:{self.port}", hops=len(self.spec.hops))

    def close(self) -> None:
        for flow in list(self.flows.values()):
            flow.close()
        if self.transport is not None:
            self.transport.close()

    def received(self, data: bytes, addr: Any) -> None:
        key = (str(addr[0]), int(addr[1]))
        flow = self.flows.get(key)
        if flow is None:
            if len(self.flows) >= MAX_FLOWS:
                self.refused += 1
                return
            flow = UdpFlow(functools.partial(self._reply, addr=key), self._forget, self.idle_timeout, self.node.udp_totals)
            self.flows[key] = flow
            self.node.spawn(flow.run(self._open, self.node, str(self.port)), "udp tunnel flow")
        flow.send("", 0, data)

    async def _open(self) -> Any:
        if isinstance(self.target, TargetService):
            return await self.node.open_service(self.target.address, None, "udp tunnel", RelayConnect(Proto.UDP))
        return await self.node.open_circuit(
            self.spec.hops, RelayConnect(Proto.UDP, self.target.host, self.target.port), "udp tunnel"
        )

    def _reply(self, datagram: Datagram, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(datagram.payload, addr)

    def _forget(self, flow: UdpFlow) -> None:
        for key, known in list(self.flows.items()):
            if known is flow:
                del self.flows[key]
