"""REST routes of capacity and cost (``/api/v1/clusters/{name}/capacity``, ``/api/v1/capacity``).

The numbers come from ``fleet.capacity`` (pure) over the live inventory's
watch caches; watching a cluster starts on first use. ``capacity_of`` and the
response models are shared with ``pilothouse capacity report``. The price
table is the ``get_prices`` dependency (defaults until a setting names a file;
override it with ``app.dependency_overrides``).
"""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from pilothouse import errors
from pilothouse.api.auth import get_platform, guarded
from pilothouse.fleet import capacity
from pilothouse.fleet.inventory import ClusterInventory
from pilothouse.identity.policy import Permission
from pilothouse.platform import Platform
from pilothouse.vocabulary import ClusterPhase

router = APIRouter(tags=["capacity"])
PlatformDep = Annotated[Platform, Depends(get_platform)]
SYNC_TIMEOUT_SECONDS = 15.0


def get_prices() -> capacity.PriceTable:
    """The price table of API reports (the defaults)."""
    return capacity.PriceTable()


PricesDep = Annotated[capacity.PriceTable, Depends(get_prices)]
GroupByQuery = Annotated[capacity.GroupBy, Query(alias="by", description="Group by namespace or team.")]
ThresholdQuery = Annotated[
    float, Query(gt=0, le=1, description="CapacityHigh when requests exceed this share of allocatable.")
]


# ----- shared with the CLI ---------------------------------------------------------------------


def capacity_of(
    inventory: ClusterInventory,
    *,
    prices: capacity.PriceTable | None = None,
    group_by: capacity.GroupBy = capacity.GroupBy.NAMESPACE,
    threshold: float = capacity.DEFAULT_THRESHOLD,
) -> capacity.ClusterCapacity:
    """The capacity report of one cluster's cache as it is now."""
    return capacity.compute_capacity(
        inventory.name,
        nodes=inventory.nodes.values(),
        pods=inventory.pods.values(),
        namespaces=inventory.namespaces.values(),
        prices=prices,
        group_by=group_by,
        threshold=threshold,
    )


async def synced_inventory(
    platform: Platform, name: str, *, timeout: float = SYNC_TIMEOUT_SECONDS
) -> ClusterInventory:
    """Watch ``name`` (``NotFound`` if unknown) and wait up to ``timeout`` for its first sync;
    a cluster that is away is returned unsynced, with what is known."""
    platform.clusters.get(name)
    inventory = await platform.inventory.ensure(name)
    if not inventory.snapshot().synced:
        with contextlib.suppress(TimeoutError):
            await inventory.wait_synced(timeout)
    return inventory


async def synced_inventories(platform: Platform, names: list[str]) -> list[ClusterInventory]:
    """``synced_inventory`` of each name, concurrently; a cluster deleted meanwhile is left out."""

    async def one(name: str) -> ClusterInventory | None:
        try:
            return await synced_inventory(platform, name)
        except errors.NotFound:
            return None

    return [i for i in await asyncio.gather(*(one(n) for n in names)) if i is not None]


def running_clusters(platform: Platform) -> list[str]:
    """The clusters the fleet views cover: those whose phase is Running."""
    return sorted(r.name for r in platform.clusters.clusters() if r.phase == ClusterPhase.RUNNING)


# ----- response models -------------------------------------------------------------------------


class ResourcesOut(BaseModel):
    cpu_millicores: int
    memory_bytes: int

    @classmethod
    def of(cls, r: capacity.Resources) -> ResourcesOut:
        return cls(cpu_millicores=r.cpu_millicores, memory_bytes=r.memory_bytes)


class ConditionOut(BaseModel):
    type: str
    status: str
    reason: str
    message: str


class GroupOut(BaseModel):
    name: str
    namespaces: list[str]
    pods: int
    requested: ResourcesOut
    limits: ResourcesOut
    cpu_share: float | None
    memory_share: float | None
    cost_per_hour: float


class CapacityOut(BaseModel):
    cluster: str
    synced: bool
    group_by: str
    threshold: float
    nodes: int
    pods: int
    allocatable: ResourcesOut
    requested: ResourcesOut
    limits: ResourcesOut
    idle: ResourcesOut
    cpu_ratio: float | None
    memory_ratio: float | None
    cpu_limit_ratio: float | None
    memory_limit_ratio: float | None
    unscheduled_pods: int
    unscheduled_requests: ResourcesOut
    conditions: list[ConditionOut]
    currency: str
    cost_per_hour: float
    idle_cost_per_hour: float
    groups: list[GroupOut]

    @classmethod
    def of(cls, report: capacity.ClusterCapacity, *, synced: bool) -> CapacityOut:
        high = report.capacity_high
        return cls(
            cluster=report.cluster,
            synced=synced,
            group_by=str(report.group_by),
            threshold=report.threshold,
            nodes=report.nodes,
            pods=report.pods,
            allocatable=ResourcesOut.of(report.allocatable),
            requested=ResourcesOut.of(report.requested),
            limits=ResourcesOut.of(report.limits),
            idle=ResourcesOut.of(report.idle),
            cpu_ratio=report.cpu_ratio,
            memory_ratio=report.memory_ratio,
            cpu_limit_ratio=report.cpu_limit_ratio,
            memory_limit_ratio=report.memory_limit_ratio,
            unscheduled_pods=report.unscheduled_pods,
            unscheduled_requests=ResourcesOut.of(report.unscheduled_requests),
            conditions=[
                ConditionOut(type=high.type, status=high.status, reason=high.reason, message=high.message)
            ],
            currency=report.currency,
            cost_per_hour=_money(report.cost_per_hour),
            idle_cost_per_hour=_money(report.idle_cost_per_hour),
            groups=[
                GroupOut(
                    name=g.name,
                    namespaces=list(g.namespaces),
                    pods=g.pods,
                    requested=ResourcesOut.of(g.requested),
                    limits=ResourcesOut.of(g.limits),
                    cpu_share=g.cpu_share,
                    memory_share=g.memory_share,
                    cost_per_hour=_money(g.cost_per_hour),
                )
                for g in report.groups
            ],
        )


class FleetCapacityOut(BaseModel):
    currency: str
    cost_per_hour: float
    clusters: list[CapacityOut]


def _money(value: Decimal) -> float:
    return float(value)  # already rounded to fleet.capacity.COST_QUANTUM


# ----- routes ----------------------------------------------------------------------------------


@router.get(
    "/api/v1/clusters/{name}/capacity", response_model=CapacityOut, **guarded(Permission.CLUSTERS_READ)
)
async def cluster_capacity(
    name: str,
    platform: PlatformDep,
    prices: PricesDep,
    group_by: GroupByQuery = capacity.GroupBy.NAMESPACE,
    threshold: ThresholdQuery = capacity.DEFAULT_THRESHOLD,
) -> CapacityOut:
    """Requests and limits against allocatable, idle capacity and cost per hour of one cluster."""
    inventory = await synced_inventory(platform, name)
    report = capacity_of(inventory, prices=prices, group_by=group_by, threshold=threshold)
    return CapacityOut.of(report, synced=inventory.snapshot().synced)


@router.get("/api/v1/capacity", response_model=FleetCapacityOut, **guarded(Permission.CLUSTERS_READ))
async def fleet_capacity(
    platform: PlatformDep,
    prices: PricesDep,
    group_by: GroupByQuery = capacity.GroupBy.NAMESPACE,
    threshold: ThresholdQuery = capacity.DEFAULT_THRESHOLD,
) -> FleetCapacityOut:
    """The capacity report of every running cluster (each waits for its sync concurrently)."""
    inventories = await synced_inventories(platform, running_clusters(platform))
    reports = [
        (capacity_of(i, prices=prices, group_by=group_by, threshold=threshold), i.snapshot().synced)
        for i in inventories
    ]
    return FleetCapacityOut(
        currency=prices.currency,
        cost_per_hour=_money(capacity.total_over([r for r, _ in reports])),
        clusters=[CapacityOut.of(r, synced=synced) for r, synced in reports],
    )
