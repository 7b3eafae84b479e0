"""HAProxy in front of an HA cluster's API servers (Debian's ``haproxy``).

``render_config`` is pure. HAProxy runs in TCP mode so TLS goes end to end
from the client to an API server, and health-checks each backend with an
HTTPS ``GET /readyz`` so a stopped or not-ready API server leaves the
rotation within about two seconds. The admin socket lets later operations
(rolling upgrades) drain a backend before stopping it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def render_config(
    *,
    cluster: str,
    listen_port: int,
    backends: Sequence[tuple[str, int]],
    admin_socket: Path,
) -> str:
    servers = "\n".join(
        f"    server apiserver-{i} {host}:{port} check check-ssl verify none inter 1s fall 2 rise 1"
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
    default_backend kube-apiservers

backend kube-apiservers
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz
    http-check expect status 200
    default-server on-marked-down shutdown-sessions
{servers}
"""
