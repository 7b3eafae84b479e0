"""Alert states, silences and the notification delivery log.

``AlertStore`` is the only way the rest of Pilothouse reads or writes them.
The alert pass (``fleet.alerting.evaluate``) works on the whole set of
current states: ``records()`` loads it, ``save(states)`` writes it back
(upserting every given state and deleting the rows it no longer holds), in
one transaction. The store cannot import the service layer, so it reads
states through the ``AlertFields`` protocol and hands back ``AlertRecord``
(plain strings), which ``fleet.alerting.restore`` turns back into states.

An acknowledgement may arrive (``acknowledge``, from the CLI or the API)
while a pass is between its load and its save: ``save`` never drops an
acknowledgement the stored row has for the same incarnation (same
``started_at``) of a still-active alert.

Silences are rows of label matchers with a time range; ``expire_silence``
ends one early. The delivery log keeps one row per attempt per channel;
``prune_deliveries`` bounds it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select

from pilothouse import errors
from pilothouse.shapes import AlertFields
from pilothouse.store.db import Database
from pilothouse.store.models import AlertDeliveryRow, AlertRow, SilenceRow, new_id

_ACTIVE = ("pending", "firing")


@dataclass(frozen=True)
class AlertRecord:
    fingerprint: str
    rule: str
    cluster: str
    labels: Mapping[str, str]
    severity: str
    status: str
    summary: str
    started_at: datetime
    last_seen_at: datetime
    fired_at: datetime | None
    resolved_at: datetime | None
    acked_by: str | None
    acked_at: datetime | None
    last_notified_at: datetime | None
    notified: str | None
    silenced_by: str | None


@dataclass(frozen=True)
class SilenceRecord:
    id: str
    matchers: tuple[Mapping[str, str], ...]  # {"name", "value", "op"}
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime


@dataclass(frozen=True)
class DeliveryAttempt:
    """One attempt to deliver one notice (``kind``: firing or resolved) to one channel."""

    fingerprint: str
    kind: str
    channel: str
    attempt: int
    ok: bool
    error: str | None
    at: datetime


def _record(row: AlertRow) -> AlertRecord:
    return AlertRecord(
        fingerprint=row.fingerprint,
        rule=row.rule,
        cluster=row.cluster,
        labels={str(k): str(v) for k, v in row.labels.items()},
        severity=row.severity,
        status=row.status,
        summary=row.summary,
        started_at=row.started_at,
        last_seen_at=row.last_seen_at,
        fired_at=row.fired_at,
        resolved_at=row.resolved_at,
        acked_by=row.acked_by,
        acked_at=row.acked_at,
        last_notified_at=row.last_notified_at,
        notified=row.notified,
        silenced_by=row.silenced_by,
    )


def _silence(row: SilenceRow) -> SilenceRecord:
    return SilenceRecord(
        id=row.id,
        matchers=tuple(dict(m) for m in row.matchers),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        created_by=row.created_by,
        comment=row.comment,
        created_at=row.created_at,
    )


def _fields(state: AlertFields) -> dict[str, Any]:
    return {
        "rule": str(state.rule),
        "cluster": state.labels.get("cluster", ""),
        "labels": dict(state.labels),
        "severity": str(state.severity),
        "status": str(state.status),
        "summary": state.summary,
        "started_at": state.started_at,
        "last_seen_at": state.last_seen_at,
        "fired_at": state.fired_at,
        "resolved_at": state.resolved_at,
        "acked_by": state.acked_by,
        "acked_at": state.acked_at,
        "last_notified_at": state.last_notified_at,
        "notified": str(state.notified) if state.notified is not None else None,
        "silenced_by": state.silenced_by,
    }


class AlertStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- alert states --

    def records(
        self, *, cluster: str | None = None, statuses: Sequence[str] | None = None
    ) -> list[AlertRecord]:
        """Stored alerts, newest first; filtered by cluster and status when given."""
        query = select(AlertRow).order_by(AlertRow.started_at.desc(), AlertRow.fingerprint)
        if cluster is not None:
            query = query.where(AlertRow.cluster == cluster)
        if statuses is not None:
            query = query.where(AlertRow.status.in_(list(statuses)))
        with self.db.session() as session:
            return [_record(row) for row in session.scalars(query)]

    def get(self, fingerprint: str) -> AlertRecord:
        with self.db.session() as session:
            row = session.get(AlertRow, fingerprint)
            if row is None:
                raise errors.NotFound(
                    f"no alert with fingerprint {fingerprint!r}",
                    hint="list alerts with `pilothouse alerts list`",
                )
            return _record(row)

    def save(self, states: Iterable[AlertFields]) -> None:
        """Make the stored set exactly ``states``, keeping acknowledgements made meanwhile."""
        wanted = {s.fingerprint: s for s in states}
        with self.db.session() as session:
            rows = {row.fingerprint: row for row in session.scalars(select(AlertRow).with_for_update())}
            for fp, gone in rows.items():
                if fp not in wanted:
                    session.delete(gone)
            for fp, state in wanted.items():
                fields = _fields(state)
                row = rows.get(fp)
                if row is None:
                    session.add(AlertRow(fingerprint=fp, **fields))
                    continue
                keep_ack = (
                    row.acked_by is not None
                    and fields["acked_by"] is None
                    and row.started_at == state.started_at
                    and fields["status"] in _ACTIVE
                )
                if keep_ack:
                    fields["acked_by"], fields["acked_at"] = row.acked_by, row.acked_at
                for name, value in fields.items():
                    setattr(row, name, value)

    def acknowledge(self, fingerprint: str, *, by: str, at: datetime) -> AlertRecord:
        """Acknowledge an active alert; ``InvalidInput`` for a resolved one."""
        with self.db.session() as session:
            row = session.get(AlertRow, fingerprint, with_for_update=True)
            if row is None:
                raise errors.NotFound(
                    f"no alert with fingerprint {fingerprint!r}",
                    hint="list alerts with `pilothouse alerts list`",
                )
            if row.status not in _ACTIVE:
                raise errors.InvalidInput(
                    f"alert {fingerprint} is resolved; there is nothing to acknowledge",
                    hint="list active alerts with `pilothouse alerts list`",
                )
            row.acked_by, row.acked_at = by, at
            return _record(row)

    # -- silences --

    def add_silence(
        self,
        matchers: Sequence[Mapping[str, str]],
        *,
        starts_at: datetime,
        ends_at: datetime,
        created_by: str = "",
        comment: str = "",
    ) -> SilenceRecord:
        if not matchers:
            raise errors.InvalidInput(
                "a silence needs at least one matcher", hint="e.g. cluster=prod alertname=NodeNotReady"
            )
        if ends_at <= starts_at:
            raise errors.InvalidInput("a silence must end after it starts", hint="check --duration / --until")
        row = SilenceRow(
            id=new_id(),
            matchers=[dict(m) for m in matchers],
            starts_at=starts_at.astimezone(UTC),
            ends_at=ends_at.astimezone(UTC),
            created_by=created_by,
            comment=comment,
        )
        with self.db.session() as session:
            session.add(row)
            session.flush()
            return _silence(row)

    def silences(self, *, active_at: datetime | None = None) -> list[SilenceRecord]:
        """All silences (or those active at ``active_at``), by start time."""
        query = select(SilenceRow).order_by(SilenceRow.starts_at, SilenceRow.id)
        if active_at is not None:
            query = query.where(SilenceRow.starts_at <= active_at, SilenceRow.ends_at > active_at)
        with self.db.session() as session:
            return [_silence(row) for row in session.scalars(query)]

    def expire_silence(self, silence_id: str, *, at: datetime) -> SilenceRecord:
        """End a silence at ``at`` (no-op for one already over)."""
        with self.db.session() as session:
            row = session.get(SilenceRow, silence_id)
            if row is None:
                raise errors.NotFound(f"no silence with id {silence_id!r}", hint="list silences first")
            if row.ends_at > at:
                row.ends_at = max(at.astimezone(UTC), row.starts_at)
            return _silence(row)

    def prune_silences(self, *, ended_before: datetime) -> int:
        with self.db.session() as session:
            result = session.execute(delete(SilenceRow).where(SilenceRow.ends_at < ended_before))
            return int(result.rowcount)  # type: ignore[attr-defined]

    # -- delivery log --

    def record_delivery(self, attempt: DeliveryAttempt) -> None:
        self.record_deliveries([attempt])

    def record_deliveries(self, attempts: Iterable[DeliveryAttempt]) -> None:
        rows = [
            AlertDeliveryRow(
                fingerprint=a.fingerprint,
                kind=a.kind,
                channel=a.channel,
                attempt=a.attempt,
                ok=a.ok,
                error=a.error,
                at=a.at,
            )
            for a in attempts
        ]
        if rows:
            with self.db.session() as session:
                session.add_all(rows)

    def deliveries(self, *, fingerprint: str | None = None, limit: int = 1000) -> list[DeliveryAttempt]:
        """The newest ``limit`` attempts (of one alert when given), oldest first."""
        query = select(AlertDeliveryRow).order_by(AlertDeliveryRow.id.desc()).limit(limit)
        if fingerprint is not None:
            query = query.where(AlertDeliveryRow.fingerprint == fingerprint)
        with self.db.session() as session:
            rows = list(session.scalars(query))
        return [
            DeliveryAttempt(r.fingerprint, r.kind, r.channel, r.attempt, r.ok, r.error, r.at)
            for r in reversed(rows)
        ]

    def prune_deliveries(self, *, before: datetime) -> int:
        with self.db.session() as session:
            result = session.execute(delete(AlertDeliveryRow).where(AlertDeliveryRow.at < before))
            return int(result.rowcount)  # type: ignore[attr-defined]

    def delivery_count(self) -> int:
        with self.db.session() as session:
            return int(session.scalar(select(func.count()).select_from(AlertDeliveryRow)) or 0)
