"""The ``local`` provider: real Kubernetes control planes as processes on this machine.

A cluster is etcd (1 or 3 members), kube-apiserver (1 or 3, behind Debian's
HAProxy when 3), kube-controller-manager and kube-scheduler per control
plane, and the kwok controller playing the kubelet of N simulated nodes.
Every step is idempotent and its effects are recorded through ``persist``
as soon as they happen (ports, PKI, process records), so an interrupted
create or start resumes where it stopped and never starts a second copy of
a running process. ``topology`` decides what runs; this module makes it so.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import structlog

from pilothouse import errors
from pilothouse.atomic_files import write_atomically
from pilothouse.binaries.cache import BinaryCache
from pilothouse.kube import client as kube_client
from pilothouse.kube import nodes as kube_nodes
from pilothouse.kube.credentials import ClusterCredentials
from pilothouse.progress import ProgressEvent, ProgressSink, discard
from pilothouse.providers.local import config_files, haproxy, pki, ports, supervisor, topology
from pilothouse.providers.local.layout import ClusterLayout
from pilothouse.vocabulary import CACHED_COMPONENTS, Component

log = structlog.get_logger(__name__)

WAVE_NAMES = {
    topology.StartWave.ETCD: "etcd",
    topology.StartWave.APISERVER: "API servers",
    topology.StartWave.LOAD_BALANCER: "load balancer",
    topology.StartWave.CONTROLLERS: "controllers and kwok",
}


@dataclass
class LocalRuntime:
    """What exists of a local cluster on this machine (persisted in the cluster record)."""

    root: str
    ports: topology.PortPlan
    processes: dict[str, supervisor.ProcessRecord] = field(default_factory=dict)
    #: Processes pinned to a Kubernetes version other than the cluster's (mid-upgrade): a
    #: process that crashes is restarted on the version it was running.
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "ports": self.ports.to_dict(),
            "processes": {name: rec.to_dict() for name, rec in self.processes.items()},
            "versions": dict(self.versions),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LocalRuntime:
        return cls(
            root=str(data["root"]),
            ports=topology.PortPlan.from_dict(data["ports"]),
            processes={
                name: supervisor.ProcessRecord.from_dict(rec)
                for name, rec in dict(data.get("processes", {})).items()
            },
            versions={str(k): str(v) for k, v in dict(data.get("versions", {})).items()},
        )

    @property
    def layout(self) -> ClusterLayout:
        return ClusterLayout(Path(self.root))


Persist = Callable[[LocalRuntime], object]


def plan_ports(spec: topology.LocalClusterSpec, *, api_port: int | None = None) -> topology.PortPlan:
    """Allocate every port the cluster needs; ``api_port`` is the user's choice for the client endpoint."""
    allocator = ports.PortAllocator()
    cps = spec.control_planes
    hosts = [topology.member_host(i, cps) for i in range(cps)]
    members = spec.control_planes
    lb: int | None = None
    if spec.ha:
        lb = allocator.claim(api_port) if api_port is not None else allocator.allocate()
        apiserver = allocator.allocate(hosts)
    else:
        apiserver = allocator.claim(api_port) if api_port is not None else allocator.allocate()
    return topology.PortPlan(
        apiserver=apiserver,
        etcd_client=tuple(allocator.allocate() for _ in range(members)),
        etcd_peer=tuple(allocator.allocate() for _ in range(members)),
        etcd_metrics=tuple(allocator.allocate() for _ in range(members)),
        controller_manager=tuple(allocator.allocate([hosts[i]]) for i in range(cps)),
        scheduler=tuple(allocator.allocate([hosts[i]]) for i in range(cps)),
        kwok=allocator.allocate(),
        load_balancer=lb,
    )


class LocalProvider:
    """Creates, starts, stops and deletes local clusters."""

    def __init__(self, *, clusters_dir: Path, binaries: BinaryCache, haproxy_binary: str = "haproxy") -> None:
        self.clusters_dir = clusters_dir
        self.binaries = binaries
        self.haproxy_binary = haproxy_binary

    # ----- planning -------------------------------------------------------------------------

    def check_prerequisites(self, spec: topology.LocalClusterSpec) -> dict[Component, Path]:
        """The binaries the cluster needs; ``BinaryError`` naming what is missing."""
        paths = self.binaries.require(spec.kubernetes_version, CACHED_COMPONENTS)
        if spec.ha and shutil.which(self.haproxy_binary) is None:
            raise errors.BinaryError(
                f"HAProxy ({self.haproxy_binary}) is not installed; HA clusters need it as their load balancer",
                hint="install Debian's package: apt-get install haproxy",
            )
        return paths

    def plan(self, spec: topology.LocalClusterSpec, runtime: LocalRuntime) -> list[topology.ProcessSpec]:
        """Every process, each on its pinned version (``runtime.versions``) or the cluster's."""
        paths = self.check_prerequisites(spec)
        plan = topology.plan_processes(
            spec, runtime.ports, runtime.layout, paths, haproxy=self.haproxy_binary
        )
        for version in sorted(set(runtime.versions.values()) - {spec.kubernetes_version}):
            other = self.plan_at(spec, runtime, version)
            plan = [other[p.name] if runtime.versions.get(p.name) == version else p for p in plan]
        return plan

    def plan_at(
        self, spec: topology.LocalClusterSpec, runtime: LocalRuntime, version: str
    ) -> dict[str, topology.ProcessSpec]:
        """Every process as it would run on Kubernetes ``version``, by name."""
        paths = self.binaries.require(version, CACHED_COMPONENTS)
        plan = topology.plan_processes(
            replace(spec, kubernetes_version=version),
            runtime.ports,
            runtime.layout,
            paths,
            haproxy=self.haproxy_binary,
        )
        return {p.name: p for p in plan}

    async def restart_process(
        self, spec: topology.LocalClusterSpec, runtime: LocalRuntime, process: str, *, persist: Persist
    ) -> None:
        """Stop ``process`` (gracefully) and start it as ``plan`` now says, then wait until it is
        ready. Pin its version in ``runtime.versions`` first to change what it runs."""
        wanted = {p.name: p for p in self.plan(spec, runtime)}.get(process)
        if wanted is None:
            raise errors.NotFound(
                f"no process {process!r} in this cluster",
                hint=f"known: {', '.join(sorted(runtime.processes))}",
            )
        record = runtime.processes.get(process)
        if record is not None:
            await asyncio.to_thread(supervisor.stop, process, record)
            del runtime.processes[process]
            persist(runtime)
        runtime.processes[process] = supervisor.start(
            process,
            wanted.argv,
            log_file=runtime.layout.log_file(process),
            cwd=runtime.layout.root,
            env=wanted.env,
        )
        persist(runtime)
        await self._wait_ready(wanted, runtime, timeout=120.0)

    def running_binary(
        self, spec: topology.LocalClusterSpec, runtime: LocalRuntime, process: str, *, persist: Persist
    ) -> Path | None:
        """The executable ``process`` runs from (None: not running).

        A copy started by a Pilothouse that died before recording it is found by its
        arguments and recorded (adopted), so the caller never starts a second one.
        """
        record = runtime.processes.get(process)
        if record is not None and supervisor.is_running(record):
            return supervisor.executable(record)
        wanted = {p.name: p for p in self.plan(spec, runtime)}.get(process)
        if wanted is None:
            return None
        known = {r.pid for r in runtime.processes.values()}
        orphans = supervisor.find_unrecorded(wanted.argv, known=known)
        if not orphans:
            return None
        adopted = orphans[0]
        for extra in orphans[1:]:  # never more than one copy of a process
            supervisor.stop(process, supervisor.record_of(extra))
        runtime.processes[process] = supervisor.record_of(adopted)
        persist(runtime)
        log.warning("process.adopted", process=process, pid=adopted.pid)
        return supervisor.executable(runtime.processes[process])

    def new_runtime(self, spec: topology.LocalClusterSpec, *, api_port: int | None = None) -> LocalRuntime:
        root = self.clusters_dir / spec.name
        if root.exists():
            raise errors.AlreadyExists(
                f"the directory {root} of a local cluster named {spec.name!r} already exists",
                hint=f"delete the leftover directory or choose another name (`rm -r {root}`)",
            )
        return LocalRuntime(root=str(root), ports=plan_ports(spec, api_port=api_port))

    # ----- files ----------------------------------------------------------------------------

    def _write_files(self, spec: topology.LocalClusterSpec, runtime: LocalRuntime) -> None:
        layout = runtime.layout
        layout.create()
        cps = spec.control_planes
        complete = layout.pki / ".complete"  # written last: a crash mid-way regenerates the whole PKI
        if not complete.exists():
            pki.write_pki(pki.plan_cluster_pki(_pki_request(spec), now=datetime.now(UTC)), layout.pki)
            write_atomically(complete, "", mode=0o600)
        ca_pem = (layout.pki / "ca.crt").read_bytes()

        def kubeconfig(user_file: str, cert: str, server: str) -> None:
            pair = ((layout.pki / f"{cert}.crt").read_bytes(), (layout.pki / f"{cert}.key").read_bytes())
            document = pki.kubeconfig_for(
                cluster_name=spec.name, server=server, ca_pem=ca_pem, client=pair, user=cert
            )
            write_atomically(layout.kubeconfig(user_file), _yaml(document))

        for i in range(cps):
            local = f"https://{topology.member_host(i, cps)}:{runtime.ports.apiserver}"
            kubeconfig(f"controller-manager-{i}", "controller-manager", local)
            kubeconfig(f"scheduler-{i}", "scheduler", local)
        endpoint = topology.api_server_url(spec, runtime.ports)
        kubeconfig("kwok", "kwok", endpoint)
        kubeconfig("admin", "admin", endpoint)
        write_atomically(layout.audit_policy, config_files.render_audit_policy(), mode=0o644)
        if not layout.encryption_config.exists():
            write_atomically(layout.encryption_config, config_files.render_encryption_config(os.urandom(32)))
        write_atomically(layout.kwok_config, config_files.kwok_stages(), mode=0o644)
        if runtime.ports.load_balancer is not None:
            backends = [(topology.member_host(i, cps), runtime.ports.apiserver) for i in range(cps)]
            text = haproxy.render_config(
                cluster=spec.name,
                listen_port=runtime.ports.load_balancer,
                backends=backends,
                admin_socket=layout.haproxy_socket,
            )
            write_atomically(layout.haproxy_config, text, mode=0o644)

    def rotate_leaf_certificates(
        self, spec: topology.LocalClusterSpec, runtime: LocalRuntime, *, now: datetime
    ) -> None:
        """Re-issue every leaf certificate from the cluster's CAs and rewrite the kubeconfigs
        that embed them. Running processes keep their old (still valid) certificates until
        they are restarted; both chain to the same CAs."""
        authorities = pki.load_authorities(runtime.layout.pki)
        pki.write_pki(
            pki.plan_leaf_certificates(_pki_request(spec), authorities, now=now), runtime.layout.pki
        )
        self._write_files(spec, runtime)

    def admin_credentials(self, spec: topology.LocalClusterSpec, runtime: LocalRuntime) -> ClusterCredentials:
        pki_dir = runtime.layout.pki
        return ClusterCredentials(
            server=topology.api_server_url(spec, runtime.ports),
            context=spec.name,
            ca_pem=(pki_dir / "ca.crt").read_bytes(),
            client_cert_pem=(pki_dir / "admin.crt").read_bytes(),
            client_key_pem=(pki_dir / "admin.key").read_bytes(),
        )

    # ----- processes ------------------------------------------------------------------------

    def process_states(self, runtime: LocalRuntime) -> dict[str, bool]:
        return {name: supervisor.is_running(rec) for name, rec in runtime.processes.items()}

    async def _wait_ready(
        self, process: topology.ProcessSpec, runtime: LocalRuntime, *, timeout: float
    ) -> None:
        probe = process.probe
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(probe.ca_file)) if probe.ca_file else False
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last = "no answer"
        async with httpx.AsyncClient(verify=verify, timeout=2.0, trust_env=False) as http:
            while loop.time() < deadline:
                record = runtime.processes.get(process.name)
                if record is None or not supervisor.is_running(record):
                    raise errors.ProcessFailed(
                        f"{process.name} exited during start-up: {_tail(runtime.layout.log_file(process.name))}",
                        hint=f"read {runtime.layout.log_file(process.name)}",
                        process=process.name,
                    )
                try:
                    response = await http.get(probe.url)
                    if response.status_code == 200:
                        return
                    last = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                await asyncio.sleep(0.25)
        raise errors.ProcessFailed(
            f"{process.name} did not become ready within {timeout:.0f}s ({probe.url}: {last})",
            hint=f"read {runtime.layout.log_file(process.name)}",
            process=process.name,
        )

    async def start(
        self,
        spec: topology.LocalClusterSpec,
        runtime: LocalRuntime,
        *,
        persist: Persist,
        progress: ProgressSink = discard,
        wave_timeout: float = 120.0,
        nodes_timeout: float | None = None,
    ) -> None:
        """Bring every process up (wave by wave) and the simulated nodes to Ready. Idempotent.

        ``nodes_timeout`` defaults to three minutes, plus time for large clusters."""
        if nodes_timeout is None:
            nodes_timeout = max(180.0, 60.0 + 0.1 * spec.nodes)
        plan = self.plan(spec, runtime)
        self._write_files(spec, runtime)
        not_running = [p for p in plan if not _running(runtime, p.name)]
        ports.check_free(pair for process in not_running for pair in process.listens)
        waves = sorted({p.wave for p in plan})
        for wave in waves:
            members = [p for p in plan if p.wave == wave]
            progress(ProgressEvent("processes", f"starting {WAVE_NAMES[wave]}", int(wave), len(waves)))
            for process in members:
                if not _running(runtime, process.name):
                    runtime.processes[process.name] = supervisor.start(
                        process.name,
                        process.argv,
                        log_file=runtime.layout.log_file(process.name),
                        cwd=runtime.layout.root,
                        env=process.env,
                    )
                    persist(runtime)
            await _all_or_first_failure([self._wait_ready(p, runtime, timeout=wave_timeout) for p in members])
        progress(ProgressEvent("processes", "control plane ready", len(waves), len(waves)))
        creds = self.admin_credentials(spec, runtime)
        try:
            async with kube_client.open_client(creds, timeout=30.0) as client:
                await kube_nodes.ensure_simulated_nodes(
                    client, spec.nodes, kubelet_version=f"v{spec.kubernetes_version}"
                )
                deadline = asyncio.get_running_loop().time() + nodes_timeout
                ready = await kube_nodes.wait_ready(
                    client,
                    spec.nodes,
                    deadline=deadline,
                    on_progress=lambda done, total: progress(
                        ProgressEvent("nodes", "simulated nodes Ready", done, total)
                    ),
                )
        except errors.PilothouseError:
            raise
        except Exception as exc:
            raise kube_client.translate(exc, creds) from None
        if ready < spec.nodes:
            raise errors.ProcessFailed(
                f"only {ready} of {spec.nodes} simulated nodes became Ready within {nodes_timeout:.0f}s",
                hint=f"read {runtime.layout.log_file('kwok')}",
            )

    def stop(self, spec: topology.LocalClusterSpec, runtime: LocalRuntime, *, persist: Persist) -> None:
        """Stop every process, controllers first and etcd last. Idempotent."""
        order = [p.name for p in reversed(_plan_or_recorded(self, spec, runtime))]
        order += [name for name in runtime.processes if name not in order]
        for name in order:
            record = runtime.processes.get(name)
            if record is None:
                continue
            supervisor.stop(name, record)
            del runtime.processes[name]
            persist(runtime)
        supervisor.stop_strays(runtime.layout.root)

    def kill(self, runtime: LocalRuntime, process: str) -> None:
        """SIGKILL one process of the cluster (failure drills and tests)."""
        record = runtime.processes.get(process)
        if record is None:
            raise errors.NotFound(
                f"no process {process!r} in this cluster",
                hint=f"known: {', '.join(sorted(runtime.processes))}",
            )
        supervisor.kill(record)

    def delete(self, spec: topology.LocalClusterSpec, runtime: LocalRuntime, *, persist: Persist) -> None:
        """Stop everything and remove the cluster's directory."""
        self.stop(spec, runtime, persist=persist)
        root = Path(runtime.root)
        if root.exists() and root.parent == self.clusters_dir:
            shutil.rmtree(root)


def _pki_request(spec: topology.LocalClusterSpec) -> pki.ClusterPKIRequest:
    cps = spec.control_planes
    return pki.ClusterPKIRequest(
        cluster_name=spec.name,
        etcd_members=spec.control_planes,
        apiserver_count=cps,
        service_cluster_ip=topology.SERVICE_CLUSTER_IP,
        extra_sans=tuple(topology.member_host(i, cps) for i in range(cps)),
    )


def _plan_or_recorded(
    provider: LocalProvider, spec: topology.LocalClusterSpec, runtime: LocalRuntime
) -> list[topology.ProcessSpec]:
    try:
        return provider.plan(spec, runtime)
    except errors.BinaryError:
        return []  # binaries gone: stop what is recorded, in any order


def _running(runtime: LocalRuntime, name: str) -> bool:
    record = runtime.processes.get(name)
    return record is not None and supervisor.is_running(record)


async def _all_or_first_failure(waits: list[Coroutine[Any, Any, None]]) -> None:
    """Await every coroutine; on the first failure cancel the rest and raise that failure."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            error = task.exception()
            if error is not None:
                raise error
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:])[-800:]


def _yaml(document: object) -> str:
    import yaml

    return yaml.safe_dump(document, sort_keys=False)
