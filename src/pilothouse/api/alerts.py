"""REST routes of alerts and silences (``/api/v1/alerts``, ``/api/v1/silences``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from pilothouse.api.auth import Principal, authenticate, get_platform, guarded
from pilothouse.identity.policy import Permission
from pilothouse.platform import Platform
from pilothouse.store.alerts import AlertRecord, DeliveryAttempt, SilenceRecord

router = APIRouter(tags=["alerts"])
PlatformDep = Annotated[Platform, Depends(get_platform)]


class AlertOut(BaseModel):
    fingerprint: str
    rule: str
    cluster: str
    labels: dict[str, str]
    severity: str
    status: str
    summary: str
    started_at: datetime
    fired_at: datetime | None
    resolved_at: datetime | None
    acked_by: str | None
    acked_at: datetime | None
    silenced_by: str | None

    @classmethod
    def of(cls, r: AlertRecord) -> AlertOut:
        return cls(
            fingerprint=r.fingerprint,
            rule=r.rule,
            cluster=r.cluster,
            labels=dict(r.labels),
            severity=r.severity,
            status=r.status,
            summary=r.summary,
            started_at=r.started_at,
            fired_at=r.fired_at,
            resolved_at=r.resolved_at,
            acked_by=r.acked_by,
            acked_at=r.acked_at,
            silenced_by=r.silenced_by,
        )


class SilenceIn(BaseModel):
    matchers: list[str] = Field(min_length=1, description="e.g. cluster=prod, alertname=~Node.*")
    duration_minutes: float = Field(gt=0, le=60 * 24 * 90)
    comment: str = Field(default="", max_length=1000)


class SilenceOut(BaseModel):
    id: str
    matchers: list[dict[str, str]]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str

    @classmethod
    def of(cls, s: SilenceRecord) -> SilenceOut:
        return cls(
            id=s.id,
            matchers=[dict(m) for m in s.matchers],
            starts_at=s.starts_at,
            ends_at=s.ends_at,
            created_by=s.created_by,
            comment=s.comment,
        )


class DeliveryOut(BaseModel):
    channel: str
    kind: str
    attempt: int
    ok: bool
    error: str | None
    at: datetime

    @classmethod
    def of(cls, d: DeliveryAttempt) -> DeliveryOut:
        return cls(channel=d.channel, kind=d.kind, attempt=d.attempt, ok=d.ok, error=d.error, at=d.at)


@router.get("/api/v1/alerts", response_model=list[AlertOut], **guarded(Permission.CLUSTERS_READ))
def list_alerts(
    platform: PlatformDep,
    cluster: str | None = None,
    include_resolved: Annotated[bool, Query(alias="all")] = False,
) -> list[AlertOut]:
    """Pending and firing alerts (``all=true``: resolved ones too), newest first."""
    return [
        AlertOut.of(r) for r in platform.alerts.current(cluster=cluster, include_resolved=include_resolved)
    ]


@router.post("/api/v1/alerts/{fingerprint}/ack", response_model=AlertOut, **guarded(Permission.ALERTS_MANAGE))
def acknowledge(
    fingerprint: str,
    platform: PlatformDep,
    principal: Annotated[Principal, Depends(authenticate)],
) -> AlertOut:
    """Acknowledge an alert: no repeated notices until it resolves."""
    return AlertOut.of(platform.alerts.acknowledge(fingerprint, by=principal.name))


@router.get(
    "/api/v1/alerts/{fingerprint}/deliveries",
    response_model=list[DeliveryOut],
    **guarded(Permission.CLUSTERS_READ),
)
def deliveries(fingerprint: str, platform: PlatformDep) -> list[DeliveryOut]:
    """Every delivery attempt of the alert's notices, per channel."""
    platform.alerts.store.get(fingerprint)
    return [DeliveryOut.of(d) for d in platform.alerts.store.deliveries(fingerprint=fingerprint)]


@router.get("/api/v1/silences", response_model=list[SilenceOut], **guarded(Permission.CLUSTERS_READ))
def list_silences(platform: PlatformDep) -> list[SilenceOut]:
    return [SilenceOut.of(s) for s in platform.alerts.silences()]


@router.post(
    "/api/v1/silences", response_model=SilenceOut, status_code=201, **guarded(Permission.ALERTS_MANAGE)
)
def create_silence(
    body: SilenceIn, platform: PlatformDep, principal: Annotated[Principal, Depends(authenticate)]
) -> SilenceOut:
    """Silence notifications of matching alerts for a while (their state is still tracked)."""
    record = platform.alerts.silence(
        body.matchers,
        duration=timedelta(minutes=body.duration_minutes),
        by=principal.name,
        comment=body.comment,
    )
    return SilenceOut.of(record)


@router.delete(
    "/api/v1/silences/{silence_id}", response_model=SilenceOut, **guarded(Permission.ALERTS_MANAGE)
)
def expire_silence(silence_id: str, platform: PlatformDep) -> SilenceOut:
    return SilenceOut.of(platform.alerts.expire_silence(silence_id))
