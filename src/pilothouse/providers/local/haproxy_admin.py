"""HAProxy's runtime API over the cluster's admin socket: drain and restore API servers.

A rolling control-plane upgrade takes one API server out of the load
balancer's rotation before stopping it and puts it back once it is ready
again. ``set_state`` sends ``set server BACKEND/SERVER state maint|ready``;
``servers`` reads ``show stat`` (parsed by the pure ``haproxy.parse_stat``).
The socket speaks one command per connection; asyncio's Unix streams do the I/O.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from pathlib import Path

from pilothouse import errors
from pilothouse.providers.local import haproxy


class ServerState(StrEnum):
    READY = "ready"
    MAINT = "maint"  # no new connections; health checks stop
    DRAIN = "drain"  # no new connections; health checks go on


async def _command(socket: Path, command: str, *, timeout: float = 5.0) -> str:
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(str(socket))
            try:
                writer.write(command.encode() + b"\n")
                await writer.drain()
                answer = await reader.read()
            finally:
                writer.close()
                await writer.wait_closed()
    except (OSError, TimeoutError) as exc:
        raise errors.ProcessFailed(
            f"HAProxy's admin socket {socket} did not answer {command.split()[0]!r}: {exc or 'timed out'}",
            hint="check that the cluster's haproxy process runs (`pilothouse cluster show`)",
        ) from None
    return answer.decode(errors="replace")


async def servers(socket: Path) -> dict[str, haproxy.ServerStat]:
    """Every API server in the backend, by HAProxy server name."""
    text = await _command(socket, "show stat")
    try:
        return haproxy.parse_stat(text)
    except ValueError as exc:
        raise errors.ProcessFailed(f"unexpected answer from HAProxy's admin socket: {exc}") from None


async def set_state(socket: Path, server: str, state: ServerState) -> None:
    answer = (await _command(socket, f"set server {haproxy.BACKEND}/{server} state {state.value}")).strip()
    if answer:  # HAProxy answers nothing on success
        raise errors.ProcessFailed(f"HAProxy refused to set {server} to {state.value}: {answer}")


async def wait_for(
    socket: Path, server: str, *, serving: bool, timeout: float = 30.0, poll: float = 0.2
) -> haproxy.ServerStat:
    """Wait until HAProxy reports ``server`` healthy (UP, its checks passing) or not serving at
    all; ``ProcessFailed`` after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        stat = (await servers(socket)).get(server)
        if stat is not None and (stat.healthy if serving else not stat.serving):
            return stat
        if loop.time() >= deadline:
            raise errors.ProcessFailed(
                f"HAProxy still reports {server} as {stat.status if stat else 'missing'} after {timeout:.0f}s",
                hint="read the cluster's haproxy and kube-apiserver logs (`pilothouse logs`)",
            )
        await asyncio.sleep(poll)


async def wait_drained(socket: Path, server: str, *, timeout: float, poll: float = 0.2) -> int:
    """Wait up to ``timeout`` for ``server``'s sessions to end; return how many remain.

    Connections HAProxy opened just before the server left the rotation may not have
    sent their request yet: stopping the server at once would drop them. Long-lived
    watches never end on their own, so this waits a bounded time, not for zero.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        stat = (await servers(socket)).get(server)
        remaining = stat.sessions if stat is not None else 0
        if remaining == 0 or loop.time() >= deadline:
            return remaining
        await asyncio.sleep(poll)
