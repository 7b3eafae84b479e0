"""Disaster-recovery drills: restore a fresh snapshot into a scratch cluster and prove it complete.

``DrDrills.start`` records a durable operation (kind ``dr-drill``) on the source
cluster; ``DrillDriver`` runs its steps, each observing before it acts, and
keeps its working files in ``<data>/drills/<operation id>/`` (``state.json``:
the moments and ids; ``source.json``: the source listing; ``report.json``):

1. ``snapshot``: a backup of the source (``Backups.snapshot``, trigger ``drill``,
   tagged with the operation id so a resumed drill finds it).
2. ``list-source``: every object of the source *as of the snapshot's etcd
   revision* (``kube.objects``, ``resourceVersionMatch=Exact``): exactly what the
   snapshot holds, however busy the source is meanwhile.
3. ``provision-scratch``: the simulated disaster happens here and the RTO clock
   starts. A scratch local cluster ``drill-<op>`` (same Kubernetes version, one
   control plane, as many simulated nodes) is recorded *Stopped*, the backup's
   encryption config is written into it (Secrets stay readable), and the
   snapshot is restored into its etcd data directory with etcdutl.
4. ``start-scratch``: the scratch cluster starts (etcd, API server, controllers,
   kwok) until its nodes are Ready.
5. ``compare``: every object of the scratch cluster is listed and compared with
   the source listing (``backup_plan.compare_objects``); the RTO clock stops
   when the comparison has confirmed every object.
6. ``delete-scratch``: the scratch cluster is deleted, and so is the drill's
   backup unless it was asked to be kept. A drill that fails in steps 3 to 5
   deletes its scratch cluster before it ends Failed.

RPO and RTO, as reported: **RPO** is the age of the restore point when recovery
starts (snapshot taken → step 3 begins): what a real disaster at that moment
would lose, measured on the pipeline itself. ``last_backup_age_seconds`` adds
the RPO the cluster would have had without the drill: the age of its newest
earlier backup. **RTO** runs from the start of step 3 until step 5 has seen
every object of the snapshot served by the scratch cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import shutil
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from pilothouse import errors
from pilothouse.atomic_files import write_atomically
from pilothouse.fleet import backup_plan, operations, requests
from pilothouse.fleet.backups import Backups, load_local, restore_member
from pilothouse.fleet.registry import ClusterRegistry
from pilothouse.kube import objects
from pilothouse.providers.local.provider import LocalRuntime
from pilothouse.store.backups import BackupRecord
from pilothouse.store.operations import OperationRecord, OperationStore
from pilothouse.vocabulary import BackupStatus, BackupTrigger, ClusterPhase, Component, DesiredState

log = structlog.get_logger(__name__)

KIND = "dr-drill"
STEPS = (
    ("snapshot", "snapshot the source cluster"),
    ("list-source", "list the source's objects as of the snapshot"),
    ("provision-scratch", "restore the snapshot into a scratch cluster"),
    ("start-scratch", "start the scratch cluster"),
    ("compare", "compare every object with the source"),
    ("delete-scratch", "delete the scratch cluster"),
)


def scratch_name(operation_id: str) -> str:
    return f"drill-{operation_id[:8]}"


def _now() -> datetime:
    return datetime.now(UTC)


def _write_json(path: Path, body: Any) -> None:
    write_atomically(path, json.dumps(body, indent=1))


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


class DrDrills:
    """Starts drills and reads their reports."""

    def __init__(
        self, registry: ClusterRegistry, backups: Backups, store: OperationStore, work_dir: Path
    ) -> None:
        self.registry = registry
        self.backups = backups
        self.store = store
        self.work_dir = work_dir

    def drill_dir(self, operation_id: str) -> Path:
        return self.work_dir / operation_id

    async def start(self, name: str, *, keep_backup: bool = False, created_by: str = "") -> OperationRecord:
        """Refuse what cannot be drilled (unknown, imported, stopped clusters), else record the drill."""
        cluster = await asyncio.to_thread(load_local, self.registry, name)
        states = self.registry.local.process_states(cluster.runtime)
        if cluster.record.phase != ClusterPhase.RUNNING or not any(states.values()):
            raise errors.Conflict(
                f"cluster {name!r} is not running: a drill snapshots the live cluster",
                hint=f"start it first (`pilothouse cluster start {name}`)",
                cluster=name,
            )
        await asyncio.to_thread(
            self.registry.binaries.require,
            cluster.spec.kubernetes_version,
            (Component.ETCDCTL, Component.ETCDUTL),
        )
        return await asyncio.to_thread(
            functools.partial(
                self.store.create,
                KIND,
                name,
                {"keep_backup": keep_backup},
                steps=operations.planned(STEPS),
                created_by=created_by,
            )
        )

    def report(self, operation_id: str) -> dict[str, Any] | None:
        body = _read_json(self.drill_dir(operation_id) / "report.json")
        return body if isinstance(body, dict) else None


class DrillDriver:
    """The driver of ``dr-drill`` operations; see the module docstring."""

    def __init__(self, drills: DrDrills) -> None:
        self.drills = drills
        self.registry = drills.registry
        self.backups = drills.backups

    # ----- state ----------------------------------------------------------------------------

    def _state(self, record: OperationRecord) -> dict[str, Any]:
        state = _read_json(self.drills.drill_dir(record.id) / "state.json")
        return state if isinstance(state, dict) else {}

    def _save(self, record: OperationRecord, state: dict[str, Any]) -> None:
        _write_json(self.drills.drill_dir(record.id) / "state.json", state)

    def _backup(self, record: OperationRecord) -> BackupRecord:
        done = [
            b for b in self.backups.store.list(operation_id=record.id) if b.status is BackupStatus.COMPLETED
        ]
        if not done:
            raise errors.Conflict(
                f"drill {record.id} has no completed snapshot", hint="abort it and start a new drill"
            )
        return done[0]

    # ----- steps ----------------------------------------------------------------------------

    async def run_step(
        self, record: OperationRecord, step: operations.Step, report: operations.Report
    ) -> operations.StepOutcome:
        handlers = {
            "snapshot": self._snapshot,
            "list-source": self._list_source,
            "provision-scratch": self._provision,
            "start-scratch": self._start_scratch,
            "compare": self._compare,
            "delete-scratch": self._delete_scratch,
        }
        handler = handlers.get(step.name)
        if handler is None:
            raise errors.InvalidInput(f"unknown drill step {step.name!r}", hint="abort this operation")
        try:
            return await handler(record, report)
        except errors.PilothouseError as exc:
            if step.name not in ("provision-scratch", "start-scratch", "compare"):
                raise
            with contextlib.suppress(errors.PilothouseError):  # a failed drill leaves no scratch cluster
                await self._remove_scratch(record)
            raise type(exc)(
                f"{exc.message} (scratch cluster {scratch_name(record.id)} deleted)", hint=exc.hint
            ) from exc

    async def _snapshot(self, record: OperationRecord, report: operations.Report) -> operations.StepOutcome:
        mine = await asyncio.to_thread(functools.partial(self.backups.store.list, operation_id=record.id))
        if any(b.status is BackupStatus.COMPLETED for b in mine):
            return operations.StepOutcome.ALREADY_DONE
        for stale in mine:
            if stale.status is BackupStatus.RUNNING:  # its writer was this drill, which died
                await asyncio.to_thread(self.backups.store.fail, stale.id, "interrupted")
        earlier = [
            b
            for b in await asyncio.to_thread(
                functools.partial(
                    self.backups.store.list, cluster=record.cluster, statuses=[BackupStatus.COMPLETED]
                )
            )
            if b.created_at < record.created_at and b.trigger is not BackupTrigger.DRILL
        ]
        report("etcdctl snapshot save")
        backup = await self.backups.snapshot(
            record.cluster, trigger=BackupTrigger.DRILL, operation_id=record.id
        )
        state = self._state(record)
        state.update(
            backup=backup.id,
            snapshot_at=backup.created_at.isoformat(),
            last_backup_age_seconds=(
                (record.created_at - earlier[0].created_at).total_seconds() if earlier else None
            ),
        )
        await asyncio.to_thread(self._save, record, state)
        return operations.StepOutcome.ACTED

    async def _list_source(
        self, record: OperationRecord, report: operations.Report
    ) -> operations.StepOutcome:
        path = self.drills.drill_dir(record.id) / "source.json"
        if path.is_file():
            return operations.StepOutcome.ALREADY_DONE
        backup = await asyncio.to_thread(self._backup, record)
        creds = await asyncio.to_thread(self.registry.credentials, record.cluster)
        listing = await objects.list_objects(
            creds,
            resource_version=str(backup.etcd_revision),
            exact=True,
            on_progress=lambda done, total: report(f"{done}/{total} resources"),
        )
        body = {
            "revision": backup.etcd_revision,
            "objects": [
                [o.resource, o.namespace, o.name, o.uid, o.resource_version] for o in listing.objects
            ],
        }
        await asyncio.to_thread(_write_json, path, body)
        report(f"{len(listing.objects)} objects in {len(listing.resources)} resources")
        return operations.StepOutcome.ACTED

    async def _provision(self, record: OperationRecord, report: operations.Report) -> operations.StepOutcome:
        state = self._state(record)
        if "restore_started_at" not in state:
            state["restore_started_at"] = _now().isoformat()
            await asyncio.to_thread(self._save, record, state)
        backup = await asyncio.to_thread(self._backup, record)
        scratch = scratch_name(record.id)
        source = await asyncio.to_thread(load_local, self.registry, record.cluster)
        acted = False
        if await asyncio.to_thread(self.registry.store.find, scratch) is None:
            request = requests.parse(
                requests.CreateLocalCluster,
                name=scratch,
                nodes=source.spec.nodes,
                control_planes=1,
                version=backup.kubernetes_version,
            )
            await asyncio.to_thread(self.registry.begin_local, request)
            self.registry.leases.forget(scratch)  # started by ``start-scratch``, not by finish_local
            await self.registry.update_state(
                scratch,
                desired_state=DesiredState.STOPPED,
                message=f"DR drill of {record.cluster}: restoring backup {backup.id[:12]}",
            )
            report(f"scratch cluster {scratch} recorded")
            acted = True
        runtime = LocalRuntime.from_dict((await asyncio.to_thread(self.registry.get, scratch)).runtime)
        layout = runtime.layout
        layout.create()
        encryption = await asyncio.to_thread(self.backups.store.encryption_config, backup.id)
        if not layout.encryption_config.exists() or layout.encryption_config.read_bytes() != encryption:
            write_atomically(layout.encryption_config, encryption)
            acted = True
        etcdutl = (
            await asyncio.to_thread(
                self.registry.binaries.require, backup.kubernetes_version, (Component.ETCDUTL,)
            )
        )[Component.ETCDUTL]
        snapshot: Path | None = None
        for member in range(len(runtime.ports.etcd_client)):
            target = layout.etcd_data(member)
            if target.exists():
                continue
            if snapshot is None:
                snapshot = await asyncio.to_thread(
                    self.backups.verified_copy, backup, self.drills.drill_dir(record.id)
                )
            report(f"etcdutl snapshot restore into {scratch}/etcd-{member}")
            await asyncio.to_thread(
                functools.partial(
                    restore_member,
                    etcdutl,
                    snapshot,
                    cluster=scratch,
                    runtime=runtime,
                    member=member,
                    target=target,
                )
            )
            acted = True
        return operations.StepOutcome.ACTED if acted else operations.StepOutcome.ALREADY_DONE

    async def _start_scratch(
        self, record: OperationRecord, report: operations.Report
    ) -> operations.StepOutcome:
        scratch = scratch_name(record.id)
        view = await asyncio.to_thread(self.registry.view, scratch)
        state = self._state(record)
        if view.record.phase == ClusterPhase.RUNNING and view.processes and all(view.processes.values()):
            return operations.StepOutcome.ALREADY_DONE

        def forward(event: Any) -> None:
            report(f"{event.message} ({event.done}/{event.total})" if event.total else event.message)

        await self.registry.start(scratch, progress=forward)
        state["serving_at"] = _now().isoformat()
        await asyncio.to_thread(self._save, record, state)
        return operations.StepOutcome.ACTED

    async def _compare(self, record: OperationRecord, report: operations.Report) -> operations.StepOutcome:
        directory = self.drills.drill_dir(record.id)
        if (directory / "report.json").is_file():
            return operations.StepOutcome.ALREADY_DONE
        source_body = await asyncio.to_thread(_read_json, directory / "source.json")
        if not isinstance(source_body, dict):
            raise errors.Conflict(f"drill {record.id} lost its source listing", hint="start a new drill")
        revision = int(source_body["revision"])
        source = {
            backup_plan.ObjectKey(r, ns, n): backup_plan.ObjectVersion(uid, rv)
            for r, ns, n, uid, rv in source_body["objects"]
        }
        scratch = scratch_name(record.id)
        creds = await asyncio.to_thread(self.registry.credentials, scratch)
        listing = await objects.list_objects(
            creds, on_progress=lambda done, total: report(f"{done}/{total} resources")
        )
        restored = {
            backup_plan.ObjectKey(o.resource, o.namespace, o.name): backup_plan.ObjectVersion(
                o.uid, o.resource_version
            )
            for o in listing.objects
        }
        comparison = backup_plan.compare_objects(source, restored, snapshot_revision=revision)
        state = self._state(record)
        state["verified_at"] = _now().isoformat()
        await asyncio.to_thread(self._save, record, state)
        times = backup_plan.DrillTimes(
            snapshot_at=datetime.fromisoformat(state["snapshot_at"]),
            restore_started_at=datetime.fromisoformat(state["restore_started_at"]),
            serving_at=datetime.fromisoformat(state.get("serving_at", state["verified_at"])),
            verified_at=datetime.fromisoformat(state["verified_at"]),
        )
        backup = await asyncio.to_thread(self._backup, record)
        body = {
            "operation": record.id,
            "cluster": record.cluster,
            "scratch": scratch,
            "backup": backup.id,
            "snapshot_revision": revision,
            "snapshot_bytes": backup.size_bytes,
            "kubernetes_version": backup.kubernetes_version,
            **{k: v.isoformat() for k, v in asdict(times).items()},
            "rpo_seconds": round(times.rpo.total_seconds(), 3),
            "rto_seconds": round(times.rto.total_seconds(), 3),
            "time_to_serving_seconds": round(
                (times.serving_at - times.restore_started_at).total_seconds(), 3
            ),
            "last_backup_age_seconds": state.get("last_backup_age_seconds"),
            "comparison": comparison.to_dict(),
        }
        await asyncio.to_thread(_write_json, directory / "report.json", body)
        verdict = "equal" if comparison.ok else "DIFFERENT"
        report(f"{comparison.present}/{comparison.source_objects} objects present: {verdict}")
        log.info(
            "drill.compared",
            cluster=record.cluster,
            ok=comparison.ok,
            objects=comparison.source_objects,
            rto=body["rto_seconds"],
        )
        return operations.StepOutcome.CHECKED

    async def _delete_scratch(
        self, record: OperationRecord, report: operations.Report
    ) -> operations.StepOutcome:
        acted = await self._remove_scratch(record)
        if not record.spec.get("keep_backup"):
            for backup in await asyncio.to_thread(
                functools.partial(self.backups.store.list, operation_id=record.id)
            ):
                await asyncio.to_thread(self.backups.delete, backup.id)
                acted = True
        directory = self.drills.drill_dir(record.id)
        for leftover in directory.glob("*"):
            if leftover.name not in ("report.json", "state.json"):
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)
        return operations.StepOutcome.ACTED if acted else operations.StepOutcome.ALREADY_DONE

    async def _remove_scratch(self, record: OperationRecord) -> bool:
        scratch = scratch_name(record.id)
        if await asyncio.to_thread(self.registry.store.find, scratch) is None:
            return False
        with contextlib.suppress(errors.NotFound):
            await self.registry.delete(scratch)
        return True

    async def abort(self, record: OperationRecord) -> str:
        removed = await self._remove_scratch(record)
        return f"scratch cluster {scratch_name(record.id)} {'deleted' if removed else 'never created'}"
