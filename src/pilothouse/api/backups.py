"""REST routes of etcd backups, restores and DR drills (``fleet.backups``, ``fleet.dr_drill``).

Everything hangs under ``/api/v1/clusters/{name}``, so a role bound at one
cluster governs its backups. ``POST …/backups`` takes a snapshot now and answers
with the completed record; ``POST …/restores`` and ``POST …/dr-drills`` record a
durable operation (202) that the server's background loop drives, after the
same refusals as the CLI (unknown cluster or backup, a running cluster without
``force``, a truncated or corrupt snapshot: nothing is changed). The drill's
report (RPO, RTO, the comparison) is at ``…/dr-drills/{operation_id}``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, Field

from pilothouse import errors
from pilothouse.api.auth import Principal, authenticate, get_platform, guarded
from pilothouse.api.operations import OperationOut
from pilothouse.fleet import dr_drill
from pilothouse.identity.policy import Permission
from pilothouse.platform import Platform
from pilothouse.store.backups import BackupRecord

router = APIRouter(tags=["backups"])
PlatformDep = Annotated[Platform, Depends(get_platform)]
PrincipalDep = Annotated[Principal, Depends(authenticate)]


class BackupOut(BaseModel):
    id: str
    cluster: str
    status: str
    trigger: str
    schedule: str | None
    scheduled_for: datetime | None
    storage: str
    location: str
    size_bytes: int
    sha256: str
    etcd_revision: int
    total_keys: int
    kubernetes_version: str
    message: str
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, record: BackupRecord) -> BackupOut:
        return cls(
            id=record.id,
            cluster=record.cluster,
            status=record.status.value,
            trigger=record.trigger.value,
            schedule=record.schedule,
            scheduled_for=record.scheduled_for,
            storage=record.storage.value,
            location=record.location,
            size_bytes=record.size_bytes,
            sha256=record.sha256,
            etcd_revision=record.etcd_revision,
            total_keys=record.total_keys,
            kubernetes_version=record.kubernetes_version,
            message=record.message,
            created_at=record.created_at,
            finished_at=record.finished_at,
        )


class RestoreIn(BaseModel):
    backup: str = Field(min_length=1, max_length=32, description="The backup's id (a unique prefix will do).")
    force: bool = Field(default=False, description="Stop the running cluster and restore.")


class DrillIn(BaseModel):
    keep_backup: bool = Field(default=False, description="Keep the drill's snapshot as a backup.")


def _own(platform: Platform, name: str, backup_id: str) -> BackupRecord:
    backup = platform.backups.get(backup_id)
    if backup.cluster != name:
        raise errors.NotFound(
            f"cluster {name!r} has no backup {backup_id!r}",
            hint=f"list them: GET /api/v1/clusters/{name}/backups",
        )
    return backup


@router.get(
    "/api/v1/clusters/{name}/backups", response_model=list[BackupOut], **guarded(Permission.CLUSTERS_READ)
)
async def list_backups(name: str, platform: PlatformDep) -> list[BackupOut]:
    """The cluster's backups, newest first."""
    await asyncio.to_thread(platform.clusters.get, name)
    return [BackupOut.of(b) for b in await asyncio.to_thread(platform.backups.records, name)]


@router.post(
    "/api/v1/clusters/{name}/backups",
    response_model=BackupOut,
    status_code=status.HTTP_201_CREATED,
    **guarded(Permission.CLUSTERS_WRITE),
)
async def create_backup(name: str, platform: PlatformDep) -> BackupOut:
    """Snapshot the cluster's etcd now and store it; answers once it is stored and recorded."""
    return BackupOut.of(await platform.backups.create(name))


@router.delete(
    "/api/v1/clusters/{name}/backups/{backup_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    **guarded(Permission.CLUSTERS_WRITE),
)
async def delete_backup(name: str, backup_id: str, platform: PlatformDep) -> Response:
    backup = await asyncio.to_thread(_own, platform, name, backup_id)
    await asyncio.to_thread(platform.backups.delete, backup.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/api/v1/clusters/{name}/restores",
    response_model=OperationOut,
    status_code=status.HTTP_202_ACCEPTED,
    **guarded(Permission.CLUSTERS_WRITE),
)
async def start_restore(
    name: str, body: RestoreIn, platform: PlatformDep, principal: PrincipalDep
) -> OperationOut:
    """Record a restore of the cluster from a backup; the server drives it."""
    record = await platform.backups.start_restore(
        name, body.backup, force=body.force, created_by=principal.name
    )
    return OperationOut.of(record)


@router.post(
    "/api/v1/clusters/{name}/dr-drills",
    response_model=OperationOut,
    status_code=status.HTTP_202_ACCEPTED,
    **guarded(Permission.CLUSTERS_WRITE),
)
async def start_drill(
    name: str, body: DrillIn, platform: PlatformDep, principal: PrincipalDep
) -> OperationOut:
    """Record a DR drill of the cluster; the server drives it."""
    record = await platform.drills.start(name, keep_backup=body.keep_backup, created_by=principal.name)
    return OperationOut.of(record)


@router.get("/api/v1/clusters/{name}/dr-drills/{operation_id}", **guarded(Permission.CLUSTERS_READ))
async def drill_report(name: str, operation_id: str, platform: PlatformDep) -> dict[str, Any]:
    """The drill's operation and, once it compared, its report (RPO, RTO, differences)."""
    record = await asyncio.to_thread(platform.operations.store.get, operation_id)
    if record.cluster != name or record.kind != dr_drill.KIND:
        raise errors.NotFound(
            f"cluster {name!r} has no DR drill {operation_id!r}",
            hint=f"start one: POST /api/v1/clusters/{name}/dr-drills",
        )
    return {
        "operation": OperationOut.of(record).model_dump(mode="json"),
        "report": platform.drills.report(record.id),
    }
