"""REST route of the live inventory (``/api/v1/clusters/{name}/inventory``), from the watch caches."""

from __future__ import annotations

import contextlib
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from pilothouse.api.auth import get_platform, guarded
from pilothouse.fleet.inventory import InventorySnapshot
from pilothouse.identity.policy import Permission
from pilothouse.platform import Platform

router = APIRouter(tags=["inventory"])
PlatformDep = Annotated[Platform, Depends(get_platform)]
SYNC_TIMEOUT_SECONDS = 15.0


class NodeOut(BaseModel):
    name: str
    ready: bool
    unschedulable: bool
    kubelet_version: str
    instance_type: str


class WorkloadOut(BaseModel):
    kind: str
    namespace: str
    name: str
    desired: int
    ready: int
    available: int


class WatchOut(BaseModel):
    synced: bool
    connected: bool
    objects: int
    error: str | None


class InventoryOut(BaseModel):
    cluster: str
    synced: bool
    connected: bool
    nodes_total: int
    nodes_ready: int
    nodes_unschedulable: int
    kubelet_versions: dict[str, int]
    namespaces: int
    pods_total: int
    pods_ready: int
    pods_by_phase: dict[str, int]
    pods_waiting: dict[str, int]
    workloads_available: int
    nodes: list[NodeOut]
    workloads: list[WorkloadOut]
    watches: dict[str, WatchOut]

    @classmethod
    def of(cls, snap: InventorySnapshot) -> InventoryOut:
        return cls(
            cluster=snap.cluster,
            synced=snap.synced,
            connected=snap.connected,
            nodes_total=snap.nodes_total,
            nodes_ready=snap.nodes_ready,
            nodes_unschedulable=snap.nodes_unschedulable,
            kubelet_versions=dict(snap.kubelet_versions),
            namespaces=snap.namespaces,
            pods_total=snap.pods_total,
            pods_ready=snap.pods_ready,
            pods_by_phase=dict(snap.pods_by_phase),
            pods_waiting=dict(snap.pods_waiting),
            workloads_available=snap.workloads_available,
            nodes=[
                NodeOut(
                    name=n.name,
                    ready=n.ready,
                    unschedulable=n.unschedulable,
                    kubelet_version=n.kubelet_version,
                    instance_type=n.instance_type,
                )
                for n in snap.nodes
            ],
            workloads=[
                WorkloadOut(
                    kind=str(w.kind),
                    namespace=w.namespace,
                    name=w.name,
                    desired=w.desired,
                    ready=w.ready,
                    available=w.available,
                )
                for w in snap.workloads
            ],
            watches={
                str(kind): WatchOut(synced=w.synced, connected=w.connected, objects=w.objects, error=w.error)
                for kind, w in snap.watches.items()
            },
        )


@router.get(
    "/api/v1/clusters/{name}/inventory", response_model=InventoryOut, **guarded(Permission.CLUSTERS_READ)
)
async def cluster_inventory(name: str, platform: PlatformDep) -> InventoryOut:
    """Nodes, workloads and pods as the watch caches see them (watching starts on first use)."""
    platform.clusters.get(name)
    inventory = await platform.inventory.ensure(name)
    if not inventory.snapshot().synced:
        with contextlib.suppress(TimeoutError):  # a cluster that is away: show what is known, unsynced
            await inventory.wait_synced(SYNC_TIMEOUT_SECONDS)
    return InventoryOut.of(inventory.snapshot())
