"""etcd backups of local clusters: take them, schedule them, prune them, and restore them.

``Backups`` owns the lifecycle of a backup. ``create`` (under the cluster's
lease) records it RUNNING, has ``etcdctl snapshot save`` stream a snapshot
from a running etcd member into a staging file, reads its revision with
``etcdutl snapshot status``, hashes it, stores it (``fleet.backup_storage``:
a local directory, written atomically, or an S3-compatible bucket) and only
then records it COMPLETED with location, size, sha256, revision and the
cluster's encryption config (sealed in the store; see ``store.backups``).
``run_schedules`` is the background job: cron schedules and retention from
``fleet.backup_plan`` (pure), one backup per cron slot and cluster.

A restore is a durable operation (``fleet.operations``, kind ``restore``):
``start_restore`` refuses, before anything is recorded or stopped, an unknown
cluster or backup, a backup of another cluster or of a newer Kubernetes, a
running cluster without ``force``, and a snapshot file whose size or sha256
differs from the record (truncated or corrupt). ``RestoreDriver`` then runs
these steps, each observing before it acts so a ``kill -9`` and a resume
never repeat one that took effect:

1. ``fetch``: a local copy of the snapshot, checked against its sha256.
2. ``stop-cluster``: desired state Stopped (so a reconcile pass after a crash
   keeps it stopped), then every process stopped, controllers first.
3. ``restore-etcd``: ``etcdutl snapshot restore`` per member into
   ``etcd-<i>.restore-<op>`` (via a ``.part`` directory renamed when complete),
   with the member's name and peer URL, the revision bumped by
   ``backup_plan.REVISION_BUMP`` and marked compacted, so every client that
   watched the old data relists.
4. ``swap-data``: per member, ``etcd-<i>`` → ``etcd-<i>.pre-restore-<op>`` and the
   restored directory → ``etcd-<i>`` (two renames; a crash between them is
   finished on resume); the backup's encryption config replaces the current one
   if they differ (the old one is kept beside it).
5. ``start-cluster``: desired state Running; etcd, then the API servers, then
   the load balancer, controllers and kwok (``LocalProvider.start``'s waves);
   a process a crashed run had started is adopted, never started twice.
6. ``verify``: the API serves a revision beyond the snapshot's bumped one.
7. ``cleanup``: the replaced data directories are removed only now.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from pilothouse import errors
from pilothouse.atomic_files import fsync_dir, write_atomically
from pilothouse.binaries import catalog
from pilothouse.fleet import backup_plan, operations
from pilothouse.fleet.backup_storage import (
    BackupStorage,
    LocalDirectory,
    S3Bucket,
    sha256_file,
)
from pilothouse.fleet.leases import holder_is_dead
from pilothouse.fleet.registry import ClusterRegistry, local_spec
from pilothouse.kube import client as kube_client
from pilothouse.progress import ProgressEvent, ProgressSink, discard
from pilothouse.providers.local import etcd_snapshots, topology
from pilothouse.providers.local.provider import LocalRuntime, Persist
from pilothouse.settings import Settings
from pilothouse.store.backups import BackupRecord, BackupStore
from pilothouse.store.clusters import ClusterRecord
from pilothouse.store.operations import OperationRecord, OperationStore
from pilothouse.vocabulary import (
    BackupStatus,
    BackupStorageKind,
    BackupTrigger,
    ClusterPhase,
    Component,
    DesiredState,
    ProviderKind,
)

log = structlog.get_logger(__name__)

RESTORE_KIND = "restore"
RESTORE_STEPS = (
    ("fetch", "fetch and verify the snapshot"),
    ("stop-cluster", "stop every process of the cluster"),
    ("restore-etcd", "restore the snapshot into fresh etcd data directories"),
    ("swap-data", "swap the restored etcd data in"),
    ("start-cluster", "start etcd, the API servers, then the rest"),
    ("verify", "check the restored cluster serves"),
    ("cleanup", "remove the replaced etcd data"),
)
_TOOLS = (Component.ETCDCTL, Component.ETCDUTL)


@dataclass(frozen=True)
class LocalCluster:
    record: ClusterRecord
    spec: topology.LocalClusterSpec
    runtime: LocalRuntime

    @property
    def members(self) -> range:
        return range(len(self.runtime.ports.etcd_client))


def load_local(registry: ClusterRegistry, name: str) -> LocalCluster:
    """A local cluster with processes set up; ``Conflict`` for an imported or unfinished one."""
    record = registry.get(name)
    if record.provider != ProviderKind.LOCAL:
        raise errors.Conflict(
            f"cluster {name!r} was imported: Pilothouse cannot reach its etcd",
            hint="back up imported clusters with their own tooling; backups cover local clusters",
            cluster=name,
        )
    if not record.runtime:
        raise errors.Conflict(
            f"cluster {name!r} has no processes set up: {record.message}",
            hint=f"delete it (`pilothouse cluster delete {name}`) and create it again",
            cluster=name,
        )
    return LocalCluster(record, local_spec(record), LocalRuntime.from_dict(record.runtime))


def persist_runtime(registry: ClusterRegistry, name: str) -> Persist:
    def save(runtime: LocalRuntime) -> None:
        registry.store.update(name, runtime=runtime.to_dict())

    return save


def restore_member(
    etcdutl: Path, snapshot: Path, *, cluster: str, runtime: LocalRuntime, member: int, target: Path
) -> None:
    """Restore ``snapshot`` as ``member`` of ``cluster`` into ``target`` (which must not exist), via a
    ``.part`` directory renamed when complete."""
    part = target.with_name(f"{target.name}.part")
    shutil.rmtree(part, ignore_errors=True)
    etcd_snapshots.run(
        etcd_snapshots.restore_argv(
            etcdutl,
            snapshot,
            cluster=cluster,
            ports=runtime.ports,
            member=member,
            data_dir=part,
            bump_revision=backup_plan.REVISION_BUMP,
        ),
        what=f"etcdutl snapshot restore of etcd-{member} of {cluster}",
    )
    part.chmod(0o700)
    part.rename(target)
    fsync_dir(target.parent)


class Backups:
    """Takes, lists, prunes and verifies backups; starts restores. See the module docstring."""

    def __init__(
        self,
        registry: ClusterRegistry,
        store: BackupStore,
        operation_store: OperationStore,
        *,
        storage: BackupStorage,
        storages: dict[BackupStorageKind, BackupStorage],
        work_dir: Path,
        schedules: tuple[backup_plan.BackupSchedule, ...] = (),
    ) -> None:
        self.registry = registry
        self.store = store
        self.operation_store = operation_store
        self.storage = storage
        self.storages = storages
        self.work_dir = work_dir
        self.schedules = schedules

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        registry: ClusterRegistry,
        store: BackupStore,
        operation_store: OperationStore,
    ) -> Backups:
        storages: dict[BackupStorageKind, BackupStorage] = {
            BackupStorageKind.LOCAL: LocalDirectory(settings.effective_backup_dir)
        }
        if settings.backup_s3_bucket:
            storages[BackupStorageKind.S3] = S3Bucket(
                bucket=settings.backup_s3_bucket,
                prefix=settings.backup_s3_prefix,
                endpoint_url=settings.backup_s3_endpoint_url,
                region=settings.backup_s3_region,
            )
        kind = BackupStorageKind(settings.backup_storage)
        if kind not in storages:
            raise errors.InvalidInput(
                "backup_storage is s3 but no bucket is configured",
                hint="set backup_s3_bucket (and backup_s3_endpoint_url for a non-AWS store)",
            )
        return cls(
            registry,
            store,
            operation_store,
            storage=storages[kind],
            storages=storages,
            work_dir=settings.data_dir / "restores",
            schedules=backup_plan.parse_schedules(settings.backup_schedules),
        )

    def storage_for(self, backup: BackupRecord) -> BackupStorage:
        storage = self.storages.get(backup.storage)
        if storage is None:
            raise errors.InvalidInput(
                f"backup {backup.id} is stored in {backup.storage}, which this Pilothouse is not configured for",
                hint="configure backup_s3_bucket / backup_s3_endpoint_url as when it was taken",
            )
        return storage

    # ----- taking backups -------------------------------------------------------------------

    def _snapshotable(self, name: str) -> tuple[LocalCluster, int]:
        """The cluster and a running etcd member to snapshot; refusals say why."""
        cluster = load_local(self.registry, name)
        states = self.registry.local.process_states(cluster.runtime)
        member = next((i for i in cluster.members if states.get(f"etcd-{i}")), None)
        if member is None:
            raise errors.Conflict(
                f"cluster {name!r} is not running: no etcd member to take a snapshot from",
                hint=f"start it (`pilothouse cluster start {name}`), then back it up",
                cluster=name,
            )
        return cluster, member

    async def create(
        self,
        name: str,
        *,
        trigger: BackupTrigger = BackupTrigger.MANUAL,
        schedule: str | None = None,
        scheduled_for: datetime | None = None,
        progress: ProgressSink = discard,
    ) -> BackupRecord:
        """Snapshot a running local cluster and store it; under the cluster's lease."""
        await asyncio.to_thread(self._snapshotable, name)  # refuse before waiting for the lease
        async with self.registry.leases.hold(name):
            return await self.snapshot(
                name, trigger=trigger, schedule=schedule, scheduled_for=scheduled_for, progress=progress
            )

    async def snapshot(
        self,
        name: str,
        *,
        trigger: BackupTrigger,
        schedule: str | None = None,
        scheduled_for: datetime | None = None,
        operation_id: str | None = None,
        progress: ProgressSink = discard,
    ) -> BackupRecord:
        """``create`` for a caller that already holds the cluster's lease (a DR drill)."""
        cluster, member = await asyncio.to_thread(self._snapshotable, name)
        version = cluster.spec.kubernetes_version
        tools = await asyncio.to_thread(self.registry.binaries.require, version, _TOOLS)
        backup = await asyncio.to_thread(
            functools.partial(
                self.store.begin,
                name,
                trigger=trigger,
                storage=self.storage.kind,
                kubernetes_version=version,
                etcd_version=catalog.pins_for(version).etcd,
                control_planes=cluster.spec.control_planes,
                holder=self.registry.leases.holder,
                schedule=schedule,
                scheduled_for=scheduled_for,
                operation_id=operation_id,
            )
        )
        log.info("backup.started", cluster=name, backup=backup.id, trigger=trigger.value)
        staging = self._staging_dir()
        snapshot = staging / f"{backup.id}.db"
        try:
            progress(ProgressEvent("backup", f"etcdctl snapshot save from etcd-{member}", 0, 3))
            await asyncio.to_thread(
                etcd_snapshots.run,
                etcd_snapshots.save_argv(
                    tools[Component.ETCDCTL], cluster.runtime.layout, cluster.runtime.ports, member, snapshot
                ),
                what=f"etcdctl snapshot save from etcd-{member} of {name}",
            )
            status = backup_plan.parse_snapshot_status(
                await asyncio.to_thread(
                    etcd_snapshots.run,
                    etcd_snapshots.status_argv(tools[Component.ETCDUTL], snapshot),
                    what="etcdutl snapshot status",
                ),
                source=str(snapshot),
            )
            progress(ProgressEvent("backup", "hashing and storing", 1, 3))
            sha256 = await asyncio.to_thread(sha256_file, snapshot)
            size = snapshot.stat().st_size
            key = f"{name}/{backup.created_at:%Y%m%dT%H%M%SZ}-{backup.id[:12]}.db"
            location = await asyncio.to_thread(self.storage.put, snapshot, key, sha256=sha256)
            encryption = cluster.runtime.layout.encryption_config.read_bytes()
            done = await asyncio.to_thread(
                functools.partial(
                    self.store.complete,
                    backup.id,
                    location=location,
                    size_bytes=size,
                    sha256=sha256,
                    etcd_revision=status.revision,
                    total_keys=status.total_keys,
                    encryption_config=encryption,
                )
            )
            progress(ProgressEvent("backup", f"stored {location}", 3, 3))
            log.info("backup.completed", cluster=name, backup=backup.id, revision=status.revision, bytes=size)
            return done
        except errors.PilothouseError as exc:
            await asyncio.to_thread(self.store.fail, backup.id, exc.message)
            raise
        except BaseException:
            await asyncio.to_thread(self.store.fail, backup.id, "interrupted")
            raise
        finally:
            for leftover in (snapshot, snapshot.with_name(f"{snapshot.name}.part")):
                leftover.unlink(missing_ok=True)

    def _staging_dir(self) -> Path:
        if isinstance(self.storage, LocalDirectory):
            return self.storage.staging  # same filesystem: stored with a rename
        path = self.work_dir / ".staging"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    # ----- reading, verifying and deleting --------------------------------------------------

    def records(self, cluster: str | None = None) -> list[BackupRecord]:
        """Backups, newest first; backups whose writer died are marked failed first."""
        self.sweep_interrupted()
        return self.store.list(cluster=cluster)

    def get(self, ref: str) -> BackupRecord:
        return self.store.resolve(ref)

    def verified_copy(self, backup: BackupRecord, scratch: Path) -> Path:
        """A local file of the snapshot whose size and sha256 match the record."""
        if backup.status is not BackupStatus.COMPLETED:
            raise errors.Conflict(
                f"backup {backup.id} is {backup.status}, not completed: {backup.message}",
                hint="restore a completed backup (`pilothouse backup list`)",
            )
        storage = self.storage_for(backup)
        reusable = scratch / Path(backup.location).name
        if storage.kind is not BackupStorageKind.LOCAL and reusable.is_file():
            path = reusable
            if (path.stat().st_size, sha256_file(path)) != (backup.size_bytes, backup.sha256):
                path.unlink()
                path = storage.local_copy(backup.location, scratch)
        else:
            path = storage.local_copy(backup.location, scratch)
        try:
            backup_plan.check_artifact(
                backup.id,
                where=str(path) if storage.kind is BackupStorageKind.LOCAL else backup.location,
                expected_size=backup.size_bytes,
                expected_sha256=backup.sha256,
                size=path.stat().st_size,
                sha256=sha256_file(path),
            )
        except errors.ChecksumMismatch:
            if storage.kind is not BackupStorageKind.LOCAL:
                path.unlink(missing_ok=True)  # a bad download is not kept
            raise
        return path

    def delete(self, ref: str) -> BackupRecord:
        backup = self.store.resolve(ref)
        if backup.status is BackupStatus.RUNNING:
            raise errors.Conflict(
                f"backup {backup.id} is still being taken", hint="wait for it to finish, then delete it"
            )
        for op in self.operation_store.list(cluster=backup.cluster, unfinished=True):
            if op.spec.get("backup") == backup.id:
                raise errors.Conflict(
                    f"backup {backup.id} is being restored by operation {op.id}",
                    hint="wait for the restore to finish, then delete it",
                )
        if backup.location:
            self.storage_for(backup).delete(backup.location)
        self.store.remove(backup.id)
        log.info("backup.deleted", backup=backup.id, cluster=backup.cluster)
        return backup

    def sweep_interrupted(self) -> list[str]:
        """Mark failed the RUNNING backups whose writer died; remove their staging files."""
        swept = []
        for backup in self.store.list(statuses=[BackupStatus.RUNNING]):
            if backup.holder is not None and holder_is_dead(backup.holder):
                self.store.fail(backup.id, "interrupted: the process taking it stopped")
                for staging in (self._staging_dir(),):
                    for leftover in staging.glob(f"{backup.id}.db*"):
                        leftover.unlink(missing_ok=True)
                swept.append(backup.id)
        return swept

    # ----- schedules and retention ----------------------------------------------------------

    async def run_schedules(
        self,
        *,
        schedules: Iterable[backup_plan.BackupSchedule] | None = None,
        now: datetime | None = None,
    ) -> list[BackupRecord]:
        """One pass of the background job: back up every cluster whose cron slot is due, then
        apply retention. A cluster busy with another operation is tried again next pass."""
        moment = now or datetime.now(UTC)
        await asyncio.to_thread(self.sweep_interrupted)
        made: list[BackupRecord] = []
        for schedule in self.schedules if schedules is None else schedules:
            for record in await asyncio.to_thread(self.registry.clusters):
                if (
                    record.provider != ProviderKind.LOCAL
                    or record.desired_state != DesiredState.RUNNING
                    or record.phase != ClusterPhase.RUNNING
                    or not schedule.covers(record.name)
                ):
                    continue
                last = await asyncio.to_thread(self.store.last_scheduled_slot, record.name, schedule.name)
                slot = backup_plan.due_slot(schedule.cron, moment, last_slot=last)
                if slot is not None and not self.registry.leases.busy(record, datetime.now(UTC)):
                    try:
                        made.append(
                            await self.create(
                                record.name,
                                trigger=BackupTrigger.SCHEDULED,
                                schedule=schedule.name,
                                scheduled_for=slot,
                            )
                        )
                    except errors.Conflict:
                        continue  # busy: the next pass tries again
                    except errors.PilothouseError as exc:
                        log.warning("backup.scheduled_failed", cluster=record.name, error=exc.message)
                await asyncio.to_thread(self.prune, record.name, schedule, moment)
        return made

    def prune(self, cluster: str, schedule: backup_plan.BackupSchedule, now: datetime) -> list[str]:
        """Apply ``schedule``'s retention to its backups of ``cluster``; return the deleted ids."""
        backups = self.store.list(cluster=cluster, schedule=schedule.name)
        doomed = backup_plan.plan_retention(
            [backup_plan.RetainedBackup(b.id, b.created_at, b.status) for b in backups],
            keep_last=schedule.keep_last,
            max_age=schedule.max_age,
            now=now,
        )
        for backup_id in doomed:
            try:
                self.delete(backup_id)
            except errors.PilothouseError as exc:
                log.warning("backup.prune_failed", backup=backup_id, error=exc.message)
        if doomed:
            log.info("backup.pruned", cluster=cluster, schedule=schedule.name, deleted=len(doomed))
        return doomed

    # ----- restores -------------------------------------------------------------------------

    def restore_dir(self, cluster: str) -> Path:
        return self.work_dir / cluster

    async def start_restore(
        self, name: str, ref: str, *, force: bool = False, created_by: str = ""
    ) -> OperationRecord:
        """Check everything, then record the restore operation; nothing is changed on refusal."""
        cluster = await asyncio.to_thread(load_local, self.registry, name)
        backup = await asyncio.to_thread(self.store.resolve, ref)
        if backup.cluster != name:
            raise errors.Conflict(
                f"backup {backup.id} is of cluster {backup.cluster!r}, not {name!r}",
                hint=f"restore it into {backup.cluster}, or rehearse it in a scratch cluster with "
                f"`pilothouse dr drill {backup.cluster}`",
            )
        if backup.status is not BackupStatus.COMPLETED:
            raise errors.Conflict(
                f"backup {backup.id} is {backup.status}, not completed: {backup.message}",
                hint=f"restore a completed backup (`pilothouse backup list {name}`)",
            )
        current = cluster.spec.kubernetes_version
        if catalog.version_key(backup.kubernetes_version) > catalog.version_key(current):
            raise errors.Conflict(
                f"backup {backup.id} was taken on Kubernetes {backup.kubernetes_version}; {name} runs "
                f"{current}, which cannot read newer data",
                hint=f"upgrade {name} to {backup.kubernetes_version} first",
            )
        states = self.registry.local.process_states(cluster.runtime)
        running = sorted(p for p, alive in states.items() if alive)
        if (running or cluster.record.phase == ClusterPhase.RUNNING) and not force:
            raise errors.Conflict(
                f"cluster {name!r} is running: a restore stops it and replaces all of its data with "
                f"backup {backup.id[:12]} (revision {backup.etcd_revision}, taken "
                f"{backup.created_at:%Y-%m-%d %H:%M:%S} UTC); everything written since is lost",
                hint=f"pass --force to stop it and restore, or stop it first (`pilothouse cluster stop {name}`)",
                cluster=name,
            )
        await asyncio.to_thread(self.registry.binaries.require, current, _TOOLS)
        await asyncio.to_thread(self.verified_copy, backup, self.restore_dir(name))
        return await asyncio.to_thread(
            functools.partial(
                self.operation_store.create,
                RESTORE_KIND,
                name,
                {"backup": backup.id, "force": force, "revision": backup.etcd_revision},
                steps=operations.planned(RESTORE_STEPS),
                created_by=created_by,
            )
        )


class RestoreDriver:
    """The driver of ``restore`` operations; see the module docstring."""

    def __init__(self, backups: Backups) -> None:
        self.backups = backups
        self.registry = backups.registry

    async def run_step(
        self, record: OperationRecord, step: operations.Step, report: operations.Report
    ) -> operations.StepOutcome:
        backup = await asyncio.to_thread(self.backups.store.get, str(record.spec["backup"]))
        handlers = {
            "fetch": self._fetch,
            "stop-cluster": self._stop,
            "restore-etcd": self._restore,
            "swap-data": self._swap,
            "start-cluster": self._start,
            "verify": self._verify,
            "cleanup": self._cleanup,
        }
        handler = handlers.get(step.name)
        if handler is None:
            raise errors.InvalidInput(f"unknown restore step {step.name!r}", hint="abort this operation")
        return await handler(record, backup, report)

    def _tag(self, record: OperationRecord) -> str:
        return record.id[:12]

    def _paths(self, cluster: LocalCluster, record: OperationRecord, member: int) -> tuple[Path, Path, Path]:
        """(data dir, restored dir waiting to be swapped in, replaced dir kept until cleanup)."""
        final = cluster.runtime.layout.etcd_data(member)
        tag = self._tag(record)
        return (
            final,
            final.with_name(f"{final.name}.restore-{tag}"),
            final.with_name(f"{final.name}.pre-restore-{tag}"),
        )

    async def _snapshot_file(self, backup: BackupRecord) -> Path:
        return await asyncio.to_thread(
            self.backups.verified_copy, backup, self.backups.restore_dir(backup.cluster)
        )

    async def _fetch(
        self, record: OperationRecord, backup: BackupRecord, report: operations.Report
    ) -> operations.StepOutcome:
        report(f"checking {backup.location}")
        await self._snapshot_file(backup)
        return operations.StepOutcome.CHECKED

    async def _stop(
        self, record: OperationRecord, backup: BackupRecord, report: operations.Report
    ) -> operations.StepOutcome:
        name = record.cluster
        cluster = await asyncio.to_thread(load_local, self.registry, name)
        await self.registry.update_state(
            name, desired_state=DesiredState.STOPPED, message=f"restoring backup {backup.id[:12]}: stopping"
        )
        running = [p for p, alive in self.registry.local.process_states(cluster.runtime).items() if alive]
        report(f"stopping {len(running)} processes")
        await asyncio.to_thread(
            functools.partial(
                self.registry.local.stop,
                cluster.spec,
                cluster.runtime,
                persist=persist_runtime(self.registry, name),
            )
        )
        await self.registry.update_state(
            name, phase=ClusterPhase.STOPPED, message=f"restoring backup {backup.id[:12]}: stopped"
        )
        return operations.StepOutcome.ACTED if running else operations.StepOutcome.ALREADY_DONE

    async def _restore(
        self, record: OperationRecord, backup: BackupRecord, report: operations.Report
    ) -> operations.StepOutcome:
        name = record.cluster
        cluster = await asyncio.to_thread(load_local, self.registry, name)
        etcdutl = (
            await asyncio.to_thread(
                self.registry.binaries.require, cluster.spec.kubernetes_version, (Component.ETCDUTL,)
            )
        )[Component.ETCDUTL]
        snapshot: Path | None = None
        acted = False
        for member in cluster.members:
            _final, staged, replaced = self._paths(cluster, record, member)
            if staged.exists() or replaced.exists():
                continue  # restored already (and perhaps swapped in)
            if snapshot is None:
                snapshot = await self._snapshot_file(backup)
            report(f"etcd-{member}")
            await asyncio.to_thread(
                functools.partial(
                    restore_member,
                    etcdutl,
                    snapshot,
                    cluster=name,
                    runtime=cluster.runtime,
                    member=member,
                    target=staged,
                )
            )
            acted = True
        return operations.StepOutcome.ACTED if acted else operations.StepOutcome.ALREADY_DONE

    async def _swap(
        self, record: OperationRecord, backup: BackupRecord, report: operations.Report
    ) -> operations.StepOutcome:
        name = record.cluster
        cluster = await asyncio.to_thread(load_local, self.registry, name)
        states = self.registry.local.process_states(cluster.runtime)
        if any(states.get(f"etcd-{i}") for i in cluster.members):  # restarted behind our back
            await asyncio.to_thread(
                functools.partial(
                    self.registry.local.stop,
                    cluster.spec,
                    cluster.runtime,
                    persist=persist_runtime(self.registry, name),
                )
            )
        acted = False
        for member in cluster.members:
            final, staged, replaced = self._paths(cluster, record, member)
            if not staged.exists():
                continue
            if final.exists():
                final.rename(replaced)
            staged.rename(final)
            fsync_dir(final.parent)
            report(f"etcd-{member} swapped")
            acted = True
        encryption = await asyncio.to_thread(self.backups.store.encryption_config, backup.id)
        config = cluster.runtime.layout.encryption_config
        if not config.exists() or config.read_bytes() != encryption:
            kept = config.with_name(f"{config.name}.pre-restore-{self._tag(record)}")
            if config.exists() and not kept.exists():
                write_atomically(kept, config.read_bytes())
            write_atomically(config, encryption)
            report("encryption config of the backup restored")
            acted = True
        return operations.StepOutcome.ACTED if acted else operations.StepOutcome.ALREADY_DONE

    async def _start(
        self, record: OperationRecord, backup: BackupRecord, report: operations.Report
    ) -> operations.StepOutcome:
        name = record.cluster
        await self.registry.update_state(
            name,
            desired_state=DesiredState.RUNNING,
            phase=ClusterPhase.PROVISIONING,
            message=f"restoring backup {backup.id[:12]}: starting",
        )
        acted = await start_local(self.registry, name, report)
        await self.registry.update_state(
            name, phase=ClusterPhase.RUNNING, message=f"restored from backup {backup.id[:12]}: verifying"
        )
        return operations.StepOutcome.ACTED if acted else operations.StepOutcome.ALREADY_DONE

    async def _verify(
        self, record: OperationRecord, backup: BackupRecord, report: operations.Report
    ) -> operations.StepOutcome:
        name = record.cluster
        creds = await asyncio.to_thread(self.registry.credentials, name)
        body = await kube_client.get_json(creds, "/api/v1/namespaces?limit=1", timeout=30.0)
        served = int(body.get("metadata", {}).get("resourceVersion") or 0)
        if served < backup.etcd_revision + backup_plan.REVISION_BUMP:
            raise errors.Conflict(
                f"{name} serves revision {served}, not the restored data (revision "
                f"{backup.etcd_revision} + {backup_plan.REVISION_BUMP})",
                hint="read the etcd and kube-apiserver logs; the previous data is kept beside etcd-N",
                cluster=name,
            )
        report(f"serving revision {served}")
        await self.registry.update_state(
            name, message=f"restored from backup {backup.id[:12]} (revision {backup.etcd_revision})"
        )
        return operations.StepOutcome.CHECKED

    async def _cleanup(
        self, record: OperationRecord, backup: BackupRecord, report: operations.Report
    ) -> operations.StepOutcome:
        cluster = await asyncio.to_thread(load_local, self.registry, record.cluster)
        tag = self._tag(record)
        leftovers = [
            p
            for p in cluster.runtime.layout.root.iterdir()
            if p.name.endswith((f".pre-restore-{tag}", f".restore-{tag}", f".restore-{tag}.part"))
        ]
        config = cluster.runtime.layout.encryption_config
        leftovers += [p for p in (config.with_name(f"{config.name}.pre-restore-{tag}"),) if p.exists()]
        scratch = self.backups.restore_dir(record.cluster)
        if scratch.exists():
            leftovers.append(scratch)
        for path in leftovers:
            if path.is_dir():
                await asyncio.to_thread(shutil.rmtree, path, True)
            else:
                path.unlink(missing_ok=True)
        report(f"removed {len(leftovers)} replaced files and directories")
        return operations.StepOutcome.ACTED if leftovers else operations.StepOutcome.ALREADY_DONE

    async def abort(self, record: OperationRecord) -> str:
        """Finish a half-done swap (never mix members' data), or drop the unswapped restore; then
        start the cluster on whichever data is in place."""
        name = record.cluster
        cluster = await asyncio.to_thread(load_local, self.registry, name)
        swapped = any(self._paths(cluster, record, m)[2].exists() for m in cluster.members)
        for member in cluster.members:
            final, staged, replaced = self._paths(cluster, record, member)
            if swapped and staged.exists():
                if final.exists():
                    final.rename(replaced)
                staged.rename(final)
            elif staged.exists():
                shutil.rmtree(staged, ignore_errors=True)
        await self.registry.update_state(name, desired_state=DesiredState.RUNNING)
        await start_local(self.registry, name, lambda _detail: None)
        await self.registry.update_state(name, phase=ClusterPhase.RUNNING, message="running")
        if swapped:
            return "the cluster runs on the restored data; the previous data is kept in etcd-N.pre-restore-*"
        return "the cluster runs on its previous data"


async def start_local(registry: ClusterRegistry, name: str, report: operations.Report) -> bool:
    """Start every process of a local cluster that is not running (etcd, API servers, the rest) and
    wait for its nodes; True if anything was started. The caller holds the lease.

    A process that a crashed Pilothouse started but never recorded is adopted first, so it is
    never started a second time."""
    cluster = await asyncio.to_thread(load_local, registry, name)
    persist = persist_runtime(registry, name)
    plan = await asyncio.to_thread(registry.local.plan, cluster.spec, cluster.runtime)
    for process in plan:
        await asyncio.to_thread(
            functools.partial(
                registry.local.running_binary, cluster.spec, cluster.runtime, process.name, persist=persist
            )
        )
    states = registry.local.process_states(cluster.runtime)
    missing = [p.name for p in plan if not states.get(p.name)]
    report(f"starting {len(missing)} processes" if missing else "every process runs")

    def forward(event: ProgressEvent) -> None:
        report(f"{event.message} ({event.done}/{event.total})" if event.total else event.message)

    await registry.local.start(cluster.spec, cluster.runtime, persist=persist, progress=forward)
    return bool(missing)
