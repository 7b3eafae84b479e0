"""The cluster registry: create, import, list, start, stop and delete clusters.

The one service both the CLI and the REST API call. It validates requests,
keeps the store and the real clusters consistent, and cleans up after itself:
a failed create leaves no record, process, port or directory behind, and a
rejected request changes nothing that was stored. Local cluster records are
updated as each step takes effect, so ``reconcile_local`` can finish work a
crashed Pilothouse left half-done.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from pilothouse import errors
from pilothouse.binaries import catalog
from pilothouse.binaries.cache import BinaryCache
from pilothouse.fleet import reconciliation, requests
from pilothouse.fleet.leases import Leases
from pilothouse.kube import client as kube_client
from pilothouse.kube.credentials import ClusterCredentials, parse_kubeconfig
from pilothouse.progress import ProgressEvent, ProgressSink, discard
from pilothouse.providers.local import logfiles, pki
from pilothouse.providers.local.provider import LocalProvider, LocalRuntime
from pilothouse.providers.local.topology import LocalClusterSpec
from pilothouse.settings import Settings
from pilothouse.store.clusters import ClusterRecord, ClusterStore
from pilothouse.store.db import Database
from pilothouse.store.secrets import SecretBox
from pilothouse.vocabulary import ClusterPhase, DesiredState, ProviderKind

log = structlog.get_logger(__name__)

KUBECONFIG_SECRET = "kubeconfig"  # noqa: S105 - the secret's name


@dataclass(frozen=True)
class ClusterView:
    """A cluster record plus what is live right now (local process states)."""

    record: ClusterRecord
    processes: dict[str, bool]
    listens: dict[str, tuple[str, ...]] = field(default_factory=dict)  # process -> "host:port" it serves on


def local_spec(record: ClusterRecord) -> LocalClusterSpec:
    return LocalClusterSpec(
        name=record.name,
        kubernetes_version=record.kubernetes_version,
        control_planes=int(record.spec["control_planes"]),
        nodes=int(record.spec["nodes"]),
    )


class ClusterRegistry:
    def __init__(self, settings: Settings, db: Database, box: SecretBox) -> None:
        self.settings = settings
        self.store = ClusterStore(db, box)
        self.binaries = BinaryCache(settings.binaries_dir)
        self.local = LocalProvider(
            clusters_dir=settings.clusters_dir, binaries=self.binaries, haproxy_binary=settings.haproxy_binary
        )
        self.leases = Leases(self.store)

    # ----- reads ------------------------------------------------------------------------

    def clusters(self) -> list[ClusterRecord]:
        return self.store.clusters()

    async def update_state(self, name: str, **changes: Any) -> ClusterRecord:
        """Record ``changes`` (phase, desired state, message, ...) off the event loop."""
        return await asyncio.to_thread(functools.partial(self.store.update, name, **changes))

    def get(self, name: str) -> ClusterRecord:
        return self.store.get(name)

    def view(self, name: str) -> ClusterView:
        record = self.store.get(name)
        processes: dict[str, bool] = {}
        listens: dict[str, tuple[str, ...]] = {}
        if record.provider == ProviderKind.LOCAL and record.runtime:
            runtime = LocalRuntime.from_dict(record.runtime)
            processes = self.local.process_states(runtime)
            with contextlib.suppress(errors.BinaryError):  # binaries removed: show what is recorded
                listens = {
                    p.name: tuple(f"{host}:{port}" for host, port in p.listens)
                    for p in self.local.plan(local_spec(record), runtime)
                }
        return ClusterView(record=record, processes=processes, listens=listens)

    def credentials(self, name: str) -> ClusterCredentials:
        text = self.store.get_secret(name, KUBECONFIG_SECRET).decode()
        return parse_kubeconfig(text, source=f"stored credentials of {name}")

    def kubeconfig(self, name: str) -> str:
        return self.credentials(name).to_yaml(name)

    def log_file(self, name: str, process: str) -> Path:
        """The log file of one process of a local cluster; ``process`` may name a component
        (``kube-apiserver``) when the cluster runs exactly one of it."""
        record = self._local_record(name)
        runtime = LocalRuntime.from_dict(record.runtime) if record.runtime else None
        processes = self._process_names(record, runtime)
        matches = [p for p in processes if p == process] or [
            p for p in processes if p.rsplit("-", 1)[0] == process
        ]
        if len(matches) != 1 or runtime is None:
            raise errors.NotFound(
                f"cluster {name!r} has no single process {process!r}",
                hint=f"choose one of: {', '.join(processes) or 'none (the cluster has no processes set up)'}",
            )
        return runtime.layout.log_file(matches[0])

    def certificate_expiries(self, name: str) -> dict[str, datetime]:
        """A local cluster's certificates (path relative to its PKI directory) → notAfter (UTC)."""
        record = self._local_record(name)
        if not record.runtime:
            raise errors.NotFound(
                f"cluster {name!r} has no certificates yet",
                hint="they are written when the cluster is created; wait for `pilothouse cluster get`",
            )
        return pki.certificate_expiries(LocalRuntime.from_dict(record.runtime).layout.pki)

    def _process_names(self, record: ClusterRecord, runtime: LocalRuntime | None) -> list[str]:
        if runtime is None:
            return []
        try:
            return [p.name for p in self.local.plan(local_spec(record), runtime)]
        except errors.BinaryError:
            return sorted(runtime.processes)

    def rotate_logs(self, *, max_bytes: int, keep: int) -> dict[str, list[str]]:
        """Rotate outgrown process logs of every local cluster; return what was rotated."""
        rotated: dict[str, list[str]] = {}
        for record in self.store.clusters():
            if record.provider != ProviderKind.LOCAL or not record.runtime:
                continue
            runtime = LocalRuntime.from_dict(record.runtime)
            names = logfiles.rotate_logs(
                runtime.layout.logs, self._process_names(record, runtime), max_bytes=max_bytes, keep=keep
            )
            if names:
                rotated[record.name] = names
                log.info("logs.rotated", cluster=record.name, processes=names)
        return rotated

    # ----- local clusters ---------------------------------------------------------------

    @contextmanager
    def _progress_to_record(self, name: str, sink: ProgressSink) -> Iterator[ProgressSink]:
        """Forward progress to ``sink`` and, at most twice a second, to the record's message."""
        last = [0.0]

        def forward(event: ProgressEvent) -> None:
            sink(event)
            now = time.monotonic()
            if now - last[0] >= 0.5 or event.done == event.total:
                last[0] = now
                detail = f" ({event.done}/{event.total})" if event.total else ""
                self.store.update(name, message=f"{event.message}{detail}")

        yield forward

    async def create_local(
        self, request: requests.CreateLocalCluster, *, progress: ProgressSink = discard
    ) -> ClusterRecord:
        """Create a local cluster and wait until it is Running; on failure leave nothing behind."""
        record = self.begin_local(request)
        return await self.finish_local(record, progress=progress, keep_failed_record=False)

    def begin_local(self, request: requests.CreateLocalCluster) -> ClusterRecord:
        """Check everything that can be checked up front, allocate ports, record the cluster."""
        version = request.version or catalog.pins_for(self.settings.kubernetes_version).kubernetes
        spec = LocalClusterSpec(
            name=request.name,
            kubernetes_version=version,
            control_planes=request.control_planes,
            nodes=request.nodes,
        )
        if self.store.find(spec.name) is not None:
            raise errors.AlreadyExists(
                f"a cluster named {spec.name!r} already exists",
                hint="choose another name, or delete the existing cluster first",
            )
        self.local.check_prerequisites(spec)
        runtime = self.local.new_runtime(spec, api_port=request.api_port)
        log.info(
            "cluster.create", cluster=spec.name, provider="local", nodes=spec.nodes, cps=spec.control_planes
        )
        lease = self.leases.initial(spec.name)
        try:
            return self.store.add(
                name=spec.name,
                provider=ProviderKind.LOCAL,
                desired_state=DesiredState.RUNNING,
                phase=ClusterPhase.PROVISIONING,
                kubernetes_version=version,
                spec={"control_planes": spec.control_planes, "nodes": spec.nodes},
                runtime=runtime.to_dict(),
                message="writing PKI and configuration",
                lease=lease,
            )
        except BaseException:
            self.leases.forget(spec.name)
            raise

    async def finish_local(
        self, record: ClusterRecord, *, progress: ProgressSink = discard, keep_failed_record: bool = False
    ) -> ClusterRecord:
        """Bring a just-recorded local cluster up. On failure its processes and files are removed,
        and so is the record unless ``keep_failed_record`` (the API keeps it, Failed, to show why)."""
        spec = local_spec(record)
        runtime = LocalRuntime.from_dict(record.runtime)
        async with self.leases.hold(record.name, reserved=True):
            try:
                return await self._bring_up(record, spec, runtime, progress)
            except BaseException as exc:
                log.warning("cluster.create_failed", cluster=spec.name, error=str(exc))
                self.local.delete(spec, runtime, persist=lambda _rt: None)
                if keep_failed_record and isinstance(exc, errors.PilothouseError):
                    self.store.update(spec.name, phase=ClusterPhase.FAILED, message=str(exc), runtime={})
                else:
                    self.store.remove(spec.name)
                raise

    async def _bring_up(
        self, record: ClusterRecord, spec: LocalClusterSpec, runtime: LocalRuntime, progress: ProgressSink
    ) -> ClusterRecord:
        """Start what is not running and wait for readiness; the caller holds the lease."""
        name = record.name
        with self._progress_to_record(name, progress) as sink:
            await self.local.start(
                spec,
                runtime,
                persist=lambda rt: self.store.update(name, runtime=rt.to_dict()),
                progress=sink,
            )
        creds = self.local.admin_credentials(spec, runtime)
        self.store.put_secret(name, KUBECONFIG_SECRET, creds.to_yaml(name).encode())
        return self.store.update(
            name,
            phase=ClusterPhase.RUNNING,
            message=f"{spec.nodes} nodes Ready",
            server_url=creds.server,
            runtime=runtime.to_dict(),
        )

    async def start(
        self, name: str, *, progress: ProgressSink = discard, now: datetime | None = None
    ) -> ClusterRecord:
        """Start (or resume, or repair) a local cluster; idempotent."""
        self._local_record(name)
        async with self.leases.hold(name, now=now):
            record = self.store.get(name)  # re-read under the lease
            if not record.runtime:
                raise errors.Conflict(
                    f"cluster {name!r} failed before its processes were set up: {record.message}",
                    hint=f"delete it (`pilothouse cluster delete {name}`) and create it again",
                )
            self.store.update(
                name, desired_state=DesiredState.RUNNING, phase=ClusterPhase.PROVISIONING, message="starting"
            )
            try:
                return await self._bring_up(
                    record, local_spec(record), LocalRuntime.from_dict(record.runtime), progress
                )
            except errors.PilothouseError as exc:
                self.store.update(name, phase=ClusterPhase.FAILED, message=exc.message)
                raise

    async def stop(self, name: str, *, now: datetime | None = None) -> ClusterRecord:
        """Stop every process of a local cluster, keeping its data; idempotent."""
        self._local_record(name)
        async with self.leases.hold(name, now=now):
            record = self.store.get(name)
            self.store.update(name, desired_state=DesiredState.STOPPED, message="stopping")
            if record.runtime:
                await asyncio.to_thread(
                    self.local.stop,
                    local_spec(record),
                    LocalRuntime.from_dict(record.runtime),
                    persist=lambda rt: self.store.update(name, runtime=rt.to_dict()),
                )
            return self.store.update(name, phase=ClusterPhase.STOPPED, message="stopped")

    def _local_record(self, name: str) -> ClusterRecord:
        record = self.store.get(name)
        if record.provider != ProviderKind.LOCAL:
            raise errors.Conflict(
                f"cluster {name!r} was imported; Pilothouse does not run its processes",
                hint="start and stop apply to local clusters only",
            )
        return record

    # ----- import -----------------------------------------------------------------------

    async def import_cluster(
        self, request: requests.ImportCluster, *, source: str = "<request>", base_dir: Path | None = None
    ) -> ClusterRecord:
        if self.store.find(request.name) is not None:
            raise errors.AlreadyExists(
                f"a cluster named {request.name!r} already exists",
                hint="choose another name, or delete the existing cluster first",
            )
        creds = parse_kubeconfig(
            request.kubeconfig, context=request.context, source=source, base_dir=base_dir
        )
        result = await kube_client.probe(creds)
        log.info("cluster.import", cluster=request.name, server=creds.server, nodes=result.node_count)
        return self.store.add(
            name=request.name,
            provider=ProviderKind.IMPORT,
            desired_state=DesiredState.RUNNING,
            phase=ClusterPhase.RUNNING,
            kubernetes_version=result.server_version.removeprefix("v"),
            server_url=creds.server,
            spec={"context": creds.context},
            runtime={"nodes": result.node_count},
            message=f"{result.node_count} nodes",
            secrets={KUBECONFIG_SECRET: creds.to_yaml(request.name).encode()},
        )

    # ----- delete -----------------------------------------------------------------------

    async def delete(self, name: str, *, now: datetime | None = None) -> None:
        """Delete a cluster: a local one's processes and files too. Resumable."""
        self.store.get(name)
        async with self.leases.hold(name, now=now):
            record = self.store.get(name)
            if record.provider == ProviderKind.LOCAL and record.runtime:
                self.store.update(name, phase=ClusterPhase.DELETING, message="stopping processes")
                runtime = LocalRuntime.from_dict(record.runtime)
                await asyncio.to_thread(
                    self.local.delete,
                    local_spec(record),
                    runtime,
                    persist=lambda rt: self.store.update(name, runtime=rt.to_dict()),
                )
            self.store.remove(name)
        log.info("cluster.deleted", cluster=name)

    # ----- reconciliation ---------------------------------------------------------------

    async def reconcile_local(self, *, now: datetime | None = None) -> list[str]:
        """Converge every local cluster to its desired state; return the names acted on.

        Level-triggered and idempotent (``reconciliation.decide`` says what to do): a
        Running cluster with a dead process gets it restarted, a create or delete that a
        crashed Pilothouse left half-done is finished, a Stopped cluster with live
        processes is stopped. Clusters whose lease another live process holds are skipped.
        """
        moment = now or datetime.now(UTC)
        acted: list[str] = []
        for record in self.store.clusters():
            if record.provider != ProviderKind.LOCAL or not record.runtime:
                continue
            if self.leases.busy(record, moment):
                continue
            states = self.local.process_states(LocalRuntime.from_dict(record.runtime))
            action = reconciliation.decide(record.desired_state, record.phase, states)
            if action is reconciliation.Action.NONE:
                continue
            acted.append(record.name)
            dead = sorted(k for k, alive in states.items() if not alive)
            log.info(
                "cluster.reconcile", cluster=record.name, phase=record.phase, action=action.value, dead=dead
            )
            try:
                if action is reconciliation.Action.START:
                    await self.start(record.name, now=now)
                elif action is reconciliation.Action.STOP:
                    await self.stop(record.name, now=now)
                else:
                    await self.delete(record.name, now=now)
            except errors.PilothouseError as exc:
                log.warning("cluster.reconcile_failed", cluster=record.name, error=exc.message)
        return acted
