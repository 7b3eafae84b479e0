"""REST routes of the cluster registry (``/api/v1/clusters``)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from pilothouse import errors
from pilothouse.api.auth import get_platform, guarded
from pilothouse.fleet import requests
from pilothouse.fleet.registry import ClusterView
from pilothouse.identity.policy import Permission
from pilothouse.platform import Platform
from pilothouse.providers.local import logfiles
from pilothouse.store.clusters import ClusterRecord

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/api/v1/clusters", tags=["clusters"])
PlatformDep = Annotated[Platform, Depends(get_platform)]


class ClusterOut(BaseModel):
    name: str
    provider: str
    phase: str
    desired_state: str
    message: str
    kubernetes_version: str
    server_url: str
    nodes: int | None
    control_planes: int | None
    created_at: datetime
    updated_at: datetime
    processes: dict[str, bool] | None = None

    @classmethod
    def of(cls, record: ClusterRecord, processes: dict[str, bool] | None = None) -> ClusterOut:
        nodes = record.spec.get("nodes", record.runtime.get("nodes"))
        return cls(
            name=record.name,
            provider=record.provider,
            phase=record.phase,
            desired_state=record.desired_state,
            message=record.message,
            kubernetes_version=record.kubernetes_version,
            server_url=record.server_url,
            nodes=int(nodes) if nodes is not None else None,
            control_planes=record.spec.get("control_planes"),
            created_at=record.created_at,
            updated_at=record.updated_at,
            processes=processes,
        )


def _spawn(request: Request, coroutine: Any, name: str) -> None:
    """Run a long operation in the background; its progress lives in the cluster record."""
    tasks: set[asyncio.Task[Any]] = request.app.state.tasks
    task = asyncio.create_task(coroutine, name=name)
    tasks.add(task)

    def done(finished: asyncio.Task[Any]) -> None:
        tasks.discard(finished)
        if not finished.cancelled() and finished.exception() is not None:
            exc = finished.exception()
            log.warning("api.operation_failed", operation=name, error=str(exc))

    task.add_done_callback(done)


@router.get("", response_model=list[ClusterOut], **guarded(Permission.CLUSTERS_READ))
def list_clusters(platform: PlatformDep) -> list[ClusterOut]:
    return [ClusterOut.of(r) for r in platform.clusters.clusters()]


@router.post(
    "",
    response_model=ClusterOut,
    status_code=status.HTTP_202_ACCEPTED,
    **guarded(Permission.CLUSTERS_WRITE),
)
async def create_local_cluster(
    body: requests.CreateLocalCluster, request: Request, platform: PlatformDep
) -> ClusterOut:
    """Start creating a local cluster; poll ``GET /api/v1/clusters/{name}`` for its live status."""
    record = platform.clusters.begin_local(body)
    _spawn(request, platform.clusters.finish_local(record, keep_failed_record=True), f"create:{record.name}")
    return ClusterOut.of(record)


@router.post(
    "/import",
    response_model=ClusterOut,
    status_code=status.HTTP_201_CREATED,
    **guarded(Permission.CLUSTERS_WRITE),
)
async def import_cluster(body: requests.ImportCluster, platform: PlatformDep) -> ClusterOut:
    record = await platform.clusters.import_cluster(body, source="request body")
    return ClusterOut.of(record)


@router.get("/{name}", response_model=ClusterOut, **guarded(Permission.CLUSTERS_READ))
def get_cluster(name: str, platform: PlatformDep) -> ClusterOut:
    view: ClusterView = platform.clusters.view(name)
    return ClusterOut.of(view.record, view.processes)


@router.get(
    "/{name}/kubeconfig",
    response_class=PlainTextResponse,
    **guarded(Permission.CLUSTERS_CREDENTIALS),
    responses={200: {"content": {"application/yaml": {}}}},
)
def get_kubeconfig(name: str, platform: PlatformDep) -> PlainTextResponse:
    return PlainTextResponse(platform.clusters.kubeconfig(name), media_type="application/yaml")


@router.post("/{name}/stop", response_model=ClusterOut, **guarded(Permission.CLUSTERS_WRITE))
async def stop_cluster(name: str, platform: PlatformDep) -> ClusterOut:
    return ClusterOut.of(await platform.clusters.stop(name))


@router.post(
    "/{name}/start",
    response_model=ClusterOut,
    status_code=status.HTTP_202_ACCEPTED,
    **guarded(Permission.CLUSTERS_WRITE),
)
async def start_cluster(name: str, request: Request, platform: PlatformDep) -> ClusterOut:
    record = platform.clusters.get(name)
    if record.provider != "local":
        raise errors.Conflict(f"cluster {name!r} was imported; only local clusters can be started")
    _spawn(request, platform.clusters.start(name), f"start:{name}")
    return ClusterOut.of(record)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, **guarded(Permission.CLUSTERS_WRITE))
async def delete_cluster(name: str, platform: PlatformDep) -> Response:
    await platform.clusters.delete(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{name}/logs/{process}",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}},
    **guarded(Permission.CLUSTERS_READ),
)
def get_logs(
    name: str,
    process: str,
    platform: PlatformDep,
    tail: Annotated[int, Query(ge=1, le=10_000, description="Lines from the end.")] = 200,
) -> PlainTextResponse:
    """The last lines of a control-plane process's log (local clusters)."""
    path = platform.clusters.log_file(name, process)
    return PlainTextResponse("\n".join(logfiles.tail(path, tail)) + "\n")
