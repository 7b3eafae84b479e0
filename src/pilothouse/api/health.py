"""REST routes of fleet health and SLA (``/api/v1/fleet/health``, ``/api/v1/clusters/{name}/health|sla``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from pilothouse.api.auth import get_platform, guarded
from pilothouse.fleet import health, sla
from pilothouse.identity.policy import Permission
from pilothouse.platform import Platform

router = APIRouter(tags=["health"])
PlatformDep = Annotated[Platform, Depends(get_platform)]


class EndpointOut(BaseModel):
    name: str
    kind: str
    url: str
    ok: bool
    latency_ms: float | None
    error: str | None


class HealthOut(BaseModel):
    cluster: str
    up: bool
    checked_at: datetime
    endpoints: list[EndpointOut]

    @classmethod
    def of(cls, result: health.ClusterHealth) -> HealthOut:
        return cls(
            cluster=result.cluster,
            up=result.up,
            checked_at=result.checked_at,
            endpoints=[
                EndpointOut(
                    name=e.name, kind=str(e.kind), url=e.url, ok=e.ok, latency_ms=e.latency_ms, error=e.error
                )
                for e in result.endpoints
            ],
        )


class WindowOut(BaseModel):
    window: str
    availability: float | None
    up_seconds: float
    observed_seconds: float


class BudgetOut(BaseModel):
    period_days: float
    total_seconds: float
    consumed_seconds: float
    remaining_seconds: float
    remaining_fraction: float


class AlertOut(BaseModel):
    rule: str
    factor: float
    long_burn: float | None
    short_burn: float | None
    firing: bool


class SLAOut(BaseModel):
    cluster: str
    now: datetime
    slo: float
    windows: list[WindowOut]
    error_budget: BudgetOut
    burn_rates: dict[str, float | None]
    alerts: list[AlertOut]

    @classmethod
    def of(cls, report: sla.SLAReport) -> SLAOut:
        budget = report.budget
        return cls(
            cluster=report.cluster,
            now=report.now,
            slo=report.slo,
            windows=[
                WindowOut(
                    window=w.name,
                    availability=w.availability,
                    up_seconds=w.up_seconds,
                    observed_seconds=w.observed_seconds,
                )
                for w in report.windows
            ],
            error_budget=BudgetOut(
                period_days=budget.period.total_seconds() / 86400,
                total_seconds=budget.total_seconds,
                consumed_seconds=budget.consumed_seconds,
                remaining_seconds=budget.remaining_seconds,
                remaining_fraction=budget.remaining_fraction,
            ),
            burn_rates={b.window: b.rate for b in report.burn_rates},
            alerts=[
                AlertOut(
                    rule=a.rule.name,
                    factor=a.rule.factor,
                    long_burn=a.long_burn,
                    short_burn=a.short_burn,
                    firing=a.firing,
                )
                for a in report.alerts
            ],
        )


@router.get("/api/v1/fleet/health", response_model=list[HealthOut], **guarded(Permission.CLUSTERS_READ))
async def fleet_health(platform: PlatformDep) -> list[HealthOut]:
    """The latest probe of every cluster (probed now if the monitor has not run yet)."""
    results = platform.health.latest or {r.cluster: r for r in await platform.health.probe_once()}
    return [HealthOut.of(r) for r in results.values()]


@router.get("/api/v1/clusters/{name}/health", response_model=HealthOut, **guarded(Permission.CLUSTERS_READ))
async def cluster_health(
    name: str,
    platform: PlatformDep,
    fresh: Annotated[bool, Query(description="Probe now instead of returning the latest probe.")] = False,
) -> HealthOut:
    latest = platform.health.latest.get(name)
    if fresh or latest is None:
        latest = await platform.health.probe(name)
    return HealthOut.of(latest)


@router.get("/api/v1/clusters/{name}/sla", response_model=SLAOut, **guarded(Permission.CLUSTERS_READ))
def cluster_sla(name: str, platform: PlatformDep) -> SLAOut:
    """Availability over 1 h, 24 h and 30 d against the SLO, error budget and burn rates."""
    return SLAOut.of(platform.health.report(name))
