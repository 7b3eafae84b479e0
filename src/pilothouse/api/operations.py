"""REST routes of durable operations, upgrade plans and certificates.

``/api/v1/operations`` lists operations with their live journal (the step
running now, attempts, outcomes) and takes pause, resume and abort requests.
``/api/v1/clusters/{name}/upgrade-plan`` returns the planner's steps, blockers
and warnings; ``POST …/upgrades`` and ``POST …/certificates/rotate`` record an
operation that the server's background loop (``fleet.operations``) drives; a
refused upgrade answers 409 with the blockers.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from pilothouse.api.auth import Principal, authenticate, get_platform, guarded
from pilothouse.fleet import operations
from pilothouse.identity.policy import Permission
from pilothouse.platform import Platform
from pilothouse.store.operations import OperationRecord
from pilothouse.vocabulary import OperationRequest

router = APIRouter(tags=["operations"])
PlatformDep = Annotated[Platform, Depends(get_platform)]
PrincipalDep = Annotated[Principal, Depends(authenticate)]


class StepOut(BaseModel):
    name: str
    title: str
    state: str
    attempts: int
    acted: int
    started_at: str | None
    finished_at: str | None
    detail: str


class OperationOut(BaseModel):
    id: str
    kind: str
    cluster: str
    spec: dict[str, Any]
    phase: str
    requested: str | None
    message: str
    progress: str = Field(description="done steps / all steps")
    steps: list[StepOut]
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, record: OperationRecord) -> OperationOut:
        steps = operations.journal(record)
        done = sum(s.state is operations.StepState.DONE for s in steps)
        return cls(
            id=record.id,
            kind=record.kind,
            cluster=record.cluster,
            spec=dict(record.spec),
            phase=record.phase.value,
            requested=record.requested.value if record.requested else None,
            message=record.message,
            progress=f"{done}/{len(steps)}",
            steps=[StepOut(**s.to_dict()) for s in steps],
            created_by=record.created_by,
            created_at=record.created_at,
            started_at=record.started_at,
            finished_at=record.finished_at,
        )


class UpgradeIn(BaseModel):
    to: str = Field(min_length=1, max_length=32, description="The Kubernetes version, e.g. 1.36.3.")


class CertificateOut(BaseModel):
    path: str
    not_before: datetime
    not_after: datetime
    is_ca: bool
    days_left: float


@router.get("/api/v1/operations", response_model=list[OperationOut], **guarded(Permission.CLUSTERS_READ))
def list_operations(
    platform: PlatformDep, cluster: str | None = None, kind: str | None = None
) -> list[OperationOut]:
    """Operations, newest first, with their live journal."""
    return [OperationOut.of(r) for r in platform.operations.store.list(cluster=cluster, kind=kind)]


@router.get(
    "/api/v1/operations/{operation_id}", response_model=OperationOut, **guarded(Permission.CLUSTERS_READ)
)
def get_operation(operation_id: str, platform: PlatformDep) -> OperationOut:
    return OperationOut.of(platform.operations.store.get(operation_id))


@router.post(
    "/api/v1/operations/{operation_id}/pause",
    response_model=OperationOut,
    **guarded(Permission.CLUSTERS_WRITE),
)
def pause_operation(operation_id: str, platform: PlatformDep) -> OperationOut:
    """Pause after the current step."""
    return OperationOut.of(platform.operations.store.request(operation_id, OperationRequest.PAUSE))


@router.post(
    "/api/v1/operations/{operation_id}/abort",
    response_model=OperationOut,
    **guarded(Permission.CLUSTERS_WRITE),
)
def abort_operation(operation_id: str, platform: PlatformDep) -> OperationOut:
    """Abort after the current step; the cluster is left serving."""
    return OperationOut.of(platform.operations.store.request(operation_id, OperationRequest.ABORT))


@router.post(
    "/api/v1/operations/{operation_id}/resume",
    response_model=OperationOut,
    **guarded(Permission.CLUSTERS_WRITE),
)
def resume_operation(operation_id: str, platform: PlatformDep) -> OperationOut:
    """Resume a paused operation; the server's background loop drives it on."""
    return OperationOut.of(platform.operations.store.resume(operation_id))


@router.get("/api/v1/clusters/{name}/upgrade-plan", **guarded(Permission.CLUSTERS_READ))
async def upgrade_plan(
    name: str, platform: PlatformDep, to: Annotated[str, Query(min_length=1, max_length=32)]
) -> dict[str, Any]:
    """The ordered steps of upgrading the cluster to ``to``, and every blocker and warning."""
    return (await platform.upgrades.plan(name, to)).to_dict()


@router.post(
    "/api/v1/clusters/{name}/upgrades",
    response_model=OperationOut,
    status_code=202,
    **guarded(Permission.CLUSTERS_WRITE),
)
async def start_upgrade(
    name: str, body: UpgradeIn, platform: PlatformDep, principal: PrincipalDep
) -> OperationOut:
    """Record the upgrade (409 with the blockers if it is refused); the server drives it."""
    return OperationOut.of(await platform.upgrades.start(name, body.to, created_by=principal.name))


@router.get(
    "/api/v1/clusters/{name}/certificates",
    response_model=list[CertificateOut],
    **guarded(Permission.CLUSTERS_READ),
)
async def list_certificates(name: str, platform: PlatformDep) -> list[CertificateOut]:
    """A local cluster's certificates, soonest expiry first."""
    found = await asyncio.to_thread(platform.certificates.status, name)
    return [CertificateOut(**c.__dict__) for c in found]


@router.post(
    "/api/v1/clusters/{name}/certificates/rotate",
    response_model=OperationOut,
    status_code=202,
    **guarded(Permission.CLUSTERS_WRITE),
)
async def rotate_certificates(name: str, platform: PlatformDep, principal: PrincipalDep) -> OperationOut:
    """Record a rotation of the cluster's leaf certificates; the server drives it."""
    record = await asyncio.to_thread(platform.certificates.start_rotation, name, created_by=principal.name)
    return OperationOut.of(record)
