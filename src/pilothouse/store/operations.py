"""Durable operations: their records, journals and operator requests.

``OperationStore`` is the only way the rest of Pilothouse reads or writes the
``operations`` table. A record holds the operation's spec (what was asked),
its phase, and its journal: an ordered list of steps, each a plain dict
(``fleet.operations.Step`` owns its fields). ``save_progress`` replaces
phase, message and journal together and bumps ``generation``; it never
touches ``requested``, so a pause or abort written by the CLI or an API
replica is never lost to a concurrent journal write. At most one unfinished
operation exists per cluster: ``create`` refuses a second one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pilothouse import errors
from pilothouse.store.db import Database
from pilothouse.store.models import OperationRow
from pilothouse.vocabulary import OperationPhase, OperationRequest

_UNFINISHED = tuple(p.value for p in OperationPhase if not p.finished)


@dataclass(frozen=True)
class OperationRecord:
    id: str
    kind: str
    cluster: str
    spec: Mapping[str, Any]
    phase: OperationPhase
    steps: tuple[Mapping[str, Any], ...]
    message: str
    requested: OperationRequest | None
    created_by: str
    generation: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _row(session: Session, operation_id: str) -> OperationRow:
    row = session.get(OperationRow, operation_id)
    if row is None:
        raise errors.NotFound(
            f"no operation {operation_id!r}", hint="list them with `pilothouse operations list`"
        )
    return row


def _record(row: OperationRow) -> OperationRecord:
    return OperationRecord(
        id=row.id,
        kind=row.kind,
        cluster=row.cluster,
        spec=dict(row.spec),
        phase=OperationPhase(row.phase),
        steps=tuple(dict(s) for s in row.steps),
        message=row.message,
        requested=OperationRequest(row.requested) if row.requested else None,
        created_by=row.created_by,
        generation=row.generation,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def _require_unfinished(row: OperationRow, action: str) -> None:
    if OperationPhase(row.phase).finished:
        raise errors.Conflict(
            f"operation {row.id} is already {row.phase}; there is nothing to {action}",
            hint="start a new operation instead",
        )


class OperationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self,
        kind: str,
        cluster: str,
        spec: Mapping[str, Any],
        *,
        steps: Sequence[Mapping[str, Any]] = (),
        created_by: str = "",
    ) -> OperationRecord:
        """A new PENDING operation; ``Conflict`` while another one on ``cluster`` is unfinished."""
        with self.db.session() as session:
            busy = session.scalars(
                select(OperationRow).where(
                    OperationRow.cluster == cluster, OperationRow.phase.in_(_UNFINISHED)
                )
            ).first()
            if busy is not None:
                raise errors.Conflict(
                    f"cluster {cluster!r} already has an unfinished {busy.kind} operation ({busy.id}, "
                    f"{busy.phase})",
                    hint=f"wait for it, or `pilothouse operations abort {busy.id}`",
                    cluster=cluster,
                )
            row = OperationRow(
                kind=kind,
                cluster=cluster,
                spec=dict(spec),
                phase=OperationPhase.PENDING.value,
                steps=[dict(s) for s in steps],
                message="waiting to start",
                created_by=created_by,
            )
            session.add(row)
            session.flush()
            return _record(row)

    def get(self, operation_id: str) -> OperationRecord:
        with self.db.session() as session:
            row = _row(session, operation_id)
            return _record(row)

    def list(
        self, *, cluster: str | None = None, kind: str | None = None, unfinished: bool = False
    ) -> list[OperationRecord]:
        """Newest first."""
        query = select(OperationRow).order_by(OperationRow.created_at.desc(), OperationRow.id)
        if cluster is not None:
            query = query.where(OperationRow.cluster == cluster)
        if kind is not None:
            query = query.where(OperationRow.kind == kind)
        if unfinished:
            query = query.where(OperationRow.phase.in_(_UNFINISHED))
        with self.db.session() as session:
            return [_record(row) for row in session.scalars(query)]

    def save_progress(
        self,
        operation_id: str,
        *,
        phase: OperationPhase,
        steps: Sequence[Mapping[str, Any]],
        message: str,
        now: datetime | None = None,
    ) -> OperationRecord:
        """Write the journal, phase and message in one transaction; clears a request the new
        phase answers (a pause once PAUSED, any request once finished)."""
        moment = now or datetime.now(UTC)
        with self.db.session() as session:
            row = _row(session, operation_id)
            row.phase = phase.value
            row.steps = [dict(s) for s in steps]
            row.message = message
            row.generation += 1
            if phase is OperationPhase.RUNNING and row.started_at is None:
                row.started_at = moment
            if phase.finished:
                row.finished_at = moment
                row.requested = None
            elif phase is OperationPhase.PAUSED and row.requested == OperationRequest.PAUSE.value:
                row.requested = None
            session.flush()
            return _record(row)

    def request(self, operation_id: str, action: OperationRequest | None) -> OperationRecord:
        """Ask the running process to pause or abort (``None`` withdraws a request)."""
        with self.db.session() as session:
            row = _row(session, operation_id)
            _require_unfinished(row, action.value if action else "change")
            row.requested = action.value if action is not None else None
            if action is OperationRequest.ABORT and row.phase == OperationPhase.PAUSED.value:
                row.phase = OperationPhase.PENDING.value  # a runner picks it up and aborts it cleanly
            session.flush()
            return _record(row)

    def resume(self, operation_id: str) -> OperationRecord:
        """A PAUSED (or pause-requested) operation is PENDING again; a runner picks it up."""
        with self.db.session() as session:
            row = _row(session, operation_id)
            _require_unfinished(row, "resume")
            row.requested = None
            if row.phase == OperationPhase.PAUSED.value:
                row.phase = OperationPhase.PENDING.value
                row.message = "resumed; waiting to continue"
            session.flush()
            return _record(row)
