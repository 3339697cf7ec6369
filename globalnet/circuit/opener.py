"""What the layers above circuits need from the node to use one: open, forget, spawn.

A typing.Protocol, so a face or the service layer names only what it uses and
imports nothing above itself; node.Node satisfies it (node/ only wires).
"""

from __future__ import annotations

from collections.abc import Coroutine, Hashable
from typing import Any, Protocol

from ..wire.commands import RelayConnect
from ..wire.pathspec import Hop
from .builder import ClientCircuit


class CircuitOpener(Protocol):
    async def open_circuit(
        self,
        hops: tuple[Hop, ...],
        final: RelayConnect,
        purpose: str,
        avoid: set[bytes] | None = None,
        isolation: Hashable | None = None,
        vanguards: bool = False,
        final_wait: float | None = None,
    ) -> ClientCircuit: ...

    def forget_circuit(self, circuit: ClientCircuit) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None: ...
