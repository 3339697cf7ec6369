"""An exit's TCP connection to its target: the exit policy judged before any DNS query and
again on every address a name resolves to, and the connection made to the address that was
checked (no second resolution, so no DNS rebinding between the check and the connect)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import structlog

from ..errors import ErrorKind, GnetError
from ..policy.exit_policy import ExitPolicy
from ..policy.target_name import target_name_problem

log = structlog.get_logger("globalnet.relay")


async def open_exit_connection(policy: ExitPolicy, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to the target of an exit's RELAY_CONNECT tcp, or GnetError saying why not."""
    if not policy.enabled:
        raise GnetError(ErrorKind.EXIT_POLICY, "this node is not an exit")
    problem = target_name_problem(host)
    if problem is not None:
        # refused before the resolver sees it: no DNS query for garbage or .gnet names
        raise GnetError(ErrorKind.HOST_UNREACHABLE, problem)
    loop = asyncio.get_running_loop()
    is_name = not _is_ip_literal(host)
    refusal = policy.name_refusal(host, port) if is_name else None
    if refusal is not None:
        raise GnetError(ErrorKind.EXIT_POLICY, refusal)  # before DNS: the resolver never sees it
    if not is_name:  # an address: no resolver thread needed
        literal = ipaddress.ip_address(host.strip("[]"))
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        infos: list[tuple[Any, ...]] = [(family, socket.SOCK_STREAM, 0, "", (str(literal), port))]
    else:
        try:
            infos = list(await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (socket.gaierror, UnicodeError) as exc:
            raise GnetError(
                ErrorKind.HOST_UNREACHABLE, f"cannot resolve the target name ({getattr(exc, 'strerror', exc)})"
            ) from None
    if is_name:
        log.debug("exit resolved target name", name=host, addresses=len(infos))
    refusal = ""
    failure: GnetError | None = None
    for family, _, _, _, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        decision = policy.check(address, port)
        if not decision.allowed:
            refusal = refusal or decision.reason
            continue
        try:
            # connect to the address that was checked: no second resolution, no rebinding
            return await asyncio.open_connection(str(address), port, family=family)
        except ConnectionRefusedError:
            failure = failure or GnetError(ErrorKind.CONNECTION_REFUSED, "the target refused the connection")
        except OSError as exc:
            failure = failure or GnetError(ErrorKind.HOST_UNREACHABLE, f"cannot reach the target ({exc.strerror})")
        # a name may have several addresses (IPv6 and IPv4): try the next one
    if failure is not None:
        raise failure
    raise GnetError(ErrorKind.EXIT_POLICY, refusal or "no allowed address")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False
