"""Loopback port allocation and checks for local clusters.

A port is free when it can be bound on every address that will use it. The
kernel picks candidates (bind to port 0); allocations made together never
repeat a port. There is a short window between the check and the process
binding the port: a process that then fails to bind is reported with the
port in its log, and ``check_free`` gives the clear error up front.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence

from pilothouse import errors


def _can_bind(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class PortAllocator:
    """Hands out distinct free ports on loopback addresses."""

    def __init__(self, reserved: Iterable[int] = ()) -> None:
        self._taken: set[int] = set(reserved)

    def allocate(self, hosts: Sequence[str] = ("127.0.0.1",)) -> int:
        for _attempt in range(200):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((hosts[0], 0))
                port = int(sock.getsockname()[1])
            if port in self._taken:
                continue
            if all(_can_bind(host, port) for host in hosts[1:]):
                self._taken.add(port)
                return port
        raise errors.PortUnavailable(
            f"no free port found on {', '.join(hosts)}", hint="free some ports or stop other clusters"
        )

    def claim(self, port: int, hosts: Sequence[str] = ("127.0.0.1",)) -> int:
        """Reserve a port the user chose; ``PortUnavailable`` if it is in use."""
        check_free([(host, port) for host in hosts])
        if port in self._taken:
            raise errors.PortUnavailable(f"port {port} is requested twice", hint="choose another port")
        self._taken.add(port)
        return port


def check_free(pairs: Iterable[tuple[str, int]]) -> None:
    """Raise ``PortUnavailable`` naming the first (host, port) already in use."""
    for host, port in pairs:
        if not _can_bind(host, port):
            raise errors.PortUnavailable(
                f"port {port} on {host} is already in use",
                hint=f"find the owner with `ss -ltnp 'sport = :{port}'`, stop it, or choose another port",
                host=host,
                port=port,
            )


def listening(host: str, port: int) -> bool:
    """True when something accepts connections on (host, port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
