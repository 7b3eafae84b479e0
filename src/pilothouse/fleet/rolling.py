"""Restarting one control-plane process of a local cluster without dropping its clients.

Upgrades and certificate rotations restart a cluster's processes one at a
time. For an API server behind the cluster's HAProxy, ``restart_in_rotation``
first takes it out of the rotation (``state drain``: no new connections, but
HAProxy keeps health-checking it), waits until HAProxy reports it out and its
sessions end (bounded by ``drain_seconds``: long-lived watches never end on
their own), restarts it, waits for ``/readyz``, puts it back and waits until
HAProxy's own checks pass (status ``UP``, not ``UP 1/2``). In ``maint`` HAProxy
stops checking and, put back, trusts the check results from before the
restart; draining avoids that, so clients of the load balancer only ever
reach a server HAProxy has seen ready. Other processes are simply restarted and waited for.
HAProxy's runtime API (``providers.local.haproxy_admin``) does the switching.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from pilothouse.fleet.registry import ClusterRegistry
from pilothouse.providers.local import haproxy, haproxy_admin, topology
from pilothouse.providers.local.provider import LocalRuntime, Persist

log = structlog.get_logger(__name__)

APISERVER_PREFIX = "kube-apiserver-"
Report = Callable[[str], None]


@dataclass(frozen=True)
class RollingSettings:
    #: How long HAProxy may take to take a server out of (or into) its rotation.
    haproxy_timeout: float = 30.0
    #: How long a server out of rotation may finish its sessions before it is stopped.
    drain_seconds: float = 5.0


def _balanced(runtime: LocalRuntime, process: str) -> tuple[bool, str]:
    if not process.startswith(APISERVER_PREFIX) or runtime.ports.load_balancer is None:
        return False, ""
    return True, haproxy.server_name(int(process.removeprefix(APISERVER_PREFIX)))


async def ensure_in_rotation(runtime: LocalRuntime, process: str, settings: RollingSettings) -> None:
    """Put ``process`` back into the load balancer if it is an API server behind one (a step
    interrupted between drain and restore leaves it out)."""
    balanced, server = _balanced(runtime, process)
    if balanced:
        socket = runtime.layout.haproxy_socket
        await haproxy_admin.set_state(socket, server, haproxy_admin.ServerState.READY)
        await haproxy_admin.wait_for(socket, server, serving=True, timeout=settings.haproxy_timeout)


async def restart_in_rotation(
    registry: ClusterRegistry,
    spec: topology.LocalClusterSpec,
    runtime: LocalRuntime,
    process: str,
    *,
    persist: Persist,
    report: Report,
    settings: RollingSettings,
    prepare: Callable[[LocalRuntime], None] | None = None,
) -> None:
    """Restart ``process`` as the plan now says; ``prepare`` changes the runtime first (e.g. pins
    a version) and is persisted before anything stops."""
    balanced, server = _balanced(runtime, process)
    socket = runtime.layout.haproxy_socket
    if balanced:
        report(f"taking {process} out of the load balancer")
        await haproxy_admin.set_state(socket, server, haproxy_admin.ServerState.DRAIN)
        await haproxy_admin.wait_for(socket, server, serving=False, timeout=settings.haproxy_timeout)
        left = await haproxy_admin.wait_drained(socket, server, timeout=settings.drain_seconds)
        if left:
            log.info("rolling.drain_incomplete", process=process, sessions=left)
    if prepare is not None:
        prepare(runtime)
        await asyncio.to_thread(persist, runtime)
    report(f"restarting {process}")
    await registry.local.restart_process(spec, runtime, process, persist=persist)
    if balanced:
        report(f"putting {process} back into the load balancer")
        await ensure_in_rotation(runtime, process, settings)


async def restore_rotation(runtime: LocalRuntime, control_planes: int) -> None:
    """Every API server back into the load balancer (after an abort)."""
    if runtime.ports.load_balancer is None:
        return
    for member in range(control_planes):
        await haproxy_admin.set_state(
            runtime.layout.haproxy_socket, haproxy.server_name(member), haproxy_admin.ServerState.READY
        )
