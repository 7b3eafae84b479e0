"""HAProxy in front of an HA cluster's API servers (Debian's ``haproxy``).

Pure: ``render_config`` writes the configuration, ``parse_stat`` reads the
runtime API's answers; ``haproxy_admin`` talks to the socket. HAProxy runs in TCP mode so TLS goes end to end
from the client to an API server, and health-checks each backend with an
HTTPS ``GET /readyz`` so a stopped or not-ready API server leaves the
rotation within about two seconds. The admin socket lets later operations
(rolling upgrades) drain a backend before stopping it.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BACKEND = "kube-apiservers"


def server_name(member: int) -> str:
    """The HAProxy server name of API server ``member``."""
    return f"apiserver-{member}"


def render_config(
    *,
    cluster: str,
    listen_port: int,
    backends: Sequence[tuple[str, int]],
    admin_socket: Path,
) -> str:
    servers = "\n".join(
        f"    server {server_name(i)} {host}:{port} check check-ssl verify none inter 1s fall 2 rise 1"
        for i, (host, port) in enumerate(backends)
    )
    return f"""# HAProxy for Pilothouse cluster {cluster}; generated, do not edit.
global
    stats socket {admin_socket} mode 600 level admin
    maxconn 4096

defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout check 2s
    option redispatch
    retries 3

frontend kube-apiserver
    bind 127.0.0.1:{listen_port}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz
    http-check expect status 200
    default-server on-marked-down shutdown-sessions
{servers}
"""


@dataclass(frozen=True)
class ServerStat:
    """One backend server as ``show stat`` reports it."""

    name: str
    status: str  # UP, DOWN, MAINT, DRAIN, "UP 1/2", "no check", ...
    sessions: int  # current sessions

    @property
    def serving(self) -> bool:
        """Receives new connections: up and neither in maintenance nor draining."""
        return self.status.startswith("UP")

    @property
    def healthy(self) -> bool:
        """Serving, and its last health checks passed (``UP 1/2`` is up but failing a check)."""
        return self.status == "UP"


def parse_stat(csv_text: str, *, backend: str = BACKEND) -> dict[str, ServerStat]:
    """The servers of ``backend`` from the CSV of the runtime API's ``show stat``."""
    lines = csv_text.strip().splitlines()
    if not lines or not lines[0].startswith("# "):
        raise ValueError(f"not HAProxy stat CSV: {csv_text[:80]!r}")
    rows = csv.DictReader([lines[0][2:], *lines[1:]])
    return {
        row["svname"]: ServerStat(row["svname"], row["status"], int(row["scur"] or 0))
        for row in rows
        if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND")
    }
