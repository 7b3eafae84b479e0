"""Kubernetes Events of the fleet, kept in the store: upserted, searched and pruned.

``EventStore`` is the only way the rest of Pilothouse reads or writes them.
``fleet.event_log`` saves what changed in each watched cluster's event ring
(``save``), the API and the CLI search them (``search``), and a background job
bounds them (``prune``): by age (an event's last timestamp; the time it was
last saved for one without a timestamp) and by count per cluster (the newest
are kept, in search order).

One row per (cluster, namespace, Event name), since an Event's count and last
timestamp grow: ``save`` upserts with each dialect's ``INSERT … ON CONFLICT DO
UPDATE`` and never replaces a newer version with an older one, so replicas
that watch the same cluster may flush in either order. Rows key on the
cluster's id: a re-created cluster starts a fresh history, and deleting a
cluster deletes its events (``ON DELETE CASCADE``).

The store may not import the service layer: it reads events through the
``EventFields`` protocol (``kube.summaries.EventSummary`` is one) and queries
through ``EventFilter`` (``fleet.events.EventQuery`` is one), and returns
``StoredEvent`` values. ``search`` answers exactly what the pure
``fleet.events.search_events`` answers over the same events (a test checks it
on both backends), with every filter in SQL: kind, reason, type and text are
matched against case-folded copies kept in the row (``str.casefold``, which no
database function reproduces), and equal timestamps are ordered by code point
(``COLLATE "C"`` on PostgreSQL, whose default collation orders by locale).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog
from sqlalchemy import (
    ColumnElement,
    Executable,
    Result,
    SQLColumnExpression,
    and_,
    delete,
    false,
    func,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from pilothouse import errors
from pilothouse.shapes import EventFields
from pilothouse.store.db import Database
from pilothouse.store.models import Base, ClusterRow, KubeEventRow

log = structlog.get_logger(__name__)

_KEY = ["cluster_id", "namespace", "name"]
_NO_SYNC = {"synchronize_session": False}  # bulk deletes: no ORM objects to keep in step


class EventFilter(Protocol):
    """What ``search`` looks for (``None``: anything); ``fleet.events.EventQuery`` is one."""

    @property
    def cluster(self) -> str | None: ...
    @property
    def namespace(self) -> str | None: ...
    @property
    def kind(self) -> str | None: ...
    @property
    def name(self) -> str | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def type(self) -> str | None: ...
    @property
    def since(self) -> datetime | None: ...
    @property
    def until(self) -> datetime | None: ...
    @property
    def text(self) -> str | None: ...
    @property
    def limit(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A stored event and the name of its cluster."""

    cluster: str
    namespace: str
    name: str
    involved_kind: str
    involved_name: str
    reason: str
    type: str
    message: str
    count: int
    last_timestamp: datetime | None
    source: str


@dataclass(frozen=True)
class EventPruning:
    """What one ``prune`` deleted."""

    expired: int  # older than the retention
    over_limit: int  # beyond the newest ``max_per_cluster`` of their cluster


# the selected columns, in ``StoredEvent`` order
_COLUMNS = (
    ClusterRow.name,
    KubeEventRow.namespace,
    KubeEventRow.name,
    KubeEventRow.involved_kind,
    KubeEventRow.involved_name,
    KubeEventRow.reason,
    KubeEventRow.type,
    KubeEventRow.message,
    KubeEventRow.count,
    KubeEventRow.last_timestamp,
    KubeEventRow.source,
)
# what an upsert overwrites: everything but the id and the key
_UPDATED = tuple(
    c.name for c in Base.metadata.tables[KubeEventRow.__tablename__].columns if c.name not in {"id", *_KEY}
)


def _fields(cluster_id: str, event: EventFields, now: datetime) -> dict[str, Any]:
    text = {
        "namespace": event.namespace,
        "name": event.name,
        "involved_kind": event.involved_kind,
        "involved_name": event.involved_name,
        "reason": event.reason,
        "type": event.type,
        "message": event.message,
        "source": event.source,
    }
    # PostgreSQL text cannot hold NUL, and one such event would fail its whole batch, every flush
    text = {field: value.replace("\x00", "") for field, value in text.items()}
    return {
        **text,
        "cluster_id": cluster_id,
        "count": event.count,
        "last_timestamp": event.last_timestamp,
        "saved_at": now,
        "involved_kind_key": text["involved_kind"].casefold(),
        "reason_key": text["reason"].casefold(),
        "type_key": text["type"].casefold(),
        "message_key": text["message"].casefold(),
    }


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _upsert(session: Session) -> Executable:
    """``INSERT … ON CONFLICT (cluster, namespace, name) DO UPDATE``, unless the stored row is newer
    (a later last timestamp, or the same one with a higher count)."""
    table = Base.metadata.tables[KubeEventRow.__tablename__]
    insert = postgresql.insert(table) if _postgres(session) else sqlite.insert(table)
    new, old = insert.excluded, table.c
    not_older = or_(
        old.last_timestamp.is_(None),
        new.last_timestamp.is_(None),
        new.last_timestamp > old.last_timestamp,
        and_(new.last_timestamp == old.last_timestamp, new["count"] >= old["count"]),
    )
    return insert.on_conflict_do_update(
        index_elements=_KEY, set_={name: new[name] for name in _UPDATED}, where=not_older
    )


def _newest_first(session: Session, *ties: InstrumentedAttribute[str]) -> list[SQLColumnExpression[Any]]:
    """Newest last timestamp first (none last), then ``ties`` ascending by code point."""
    postgres = _postgres(session)
    return [
        KubeEventRow.last_timestamp.desc().nulls_last(),
        *(column.collate("C") if postgres else column for column in ties),
    ]


def _conditions(query: EventFilter) -> list[ColumnElement[bool]]:
    """``query`` as SQL, clause by clause as ``fleet.events.EventQuery.matches`` reads it."""
    given = (query.cluster, query.namespace, query.name, query.kind, query.reason, query.type, query.text)
    if any(value is not None and "\x00" in value for value in given):
        return [false()]  # nothing stored holds NUL (see ``_fields``), and PostgreSQL refuses it
    exact = (
        (ClusterRow.name, query.cluster),
        (KubeEventRow.namespace, query.namespace),
        (KubeEventRow.involved_name, query.name),
    )
    folded = (
        (KubeEventRow.involved_kind_key, query.kind),
        (KubeEventRow.reason_key, query.reason),
        (KubeEventRow.type_key, query.type),
    )
    conditions = [column == value for column, value in exact if value is not None]
    conditions += [column == value.casefold() for column, value in folded if value is not None]
    if query.text is not None:
        conditions.append(KubeEventRow.message_key.contains(query.text.casefold(), autoescape=True))
    if query.since is not None:  # a NULL timestamp satisfies no bound
        conditions.append(KubeEventRow.last_timestamp >= query.since)
    if query.until is not None:
        conditions.append(KubeEventRow.last_timestamp <= query.until)
    return conditions


def _cluster_id(session: Session, cluster: str) -> str:
    cluster_id = session.scalar(select(ClusterRow.id).where(ClusterRow.name == cluster))
    if cluster_id is None:
        raise errors.NotFound(f"no cluster named {cluster!r}", hint="see `pilothouse cluster list`")
    return cluster_id


def _deleted(result: Result[Any]) -> int:
    return int(getattr(result, "rowcount", 0))


class EventStore:
    """The fleet's Kubernetes Events; see the module docstring."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def save(self, cluster: str, events: Iterable[EventFields], *, now: datetime) -> int:
        """Upsert events of ``cluster`` in one transaction; return how many were given.

        ``now`` is recorded as the time they were saved; NUL characters are dropped from
        their text (PostgreSQL cannot store them). ``NotFound`` for an unknown cluster,
        including one deleted while its events were being saved.
        """
        batch = {(e.namespace, e.name): e for e in events}  # one row per key, the last one given
        if not batch:
            return 0
        try:
            with self.db.session() as session:
                cluster_id = _cluster_id(session, cluster)
                rows = [_fields(cluster_id, event, now) for event in batch.values()]
                session.connection().execute(_upsert(session), rows)
        except IntegrityError:
            with self.db.session() as session:
                _cluster_id(session, cluster)  # NotFound: deleted between the lookup and the insert
            raise
        return len(batch)

    def search(self, query: EventFilter) -> list[StoredEvent]:
        """The events matching ``query``, newest first (ties by cluster, namespace and name;
        events without a timestamp last), at most ``query.limit``."""
        with self.db.session() as session:
            statement = (
                select(*_COLUMNS)
                .join(ClusterRow, ClusterRow.id == KubeEventRow.cluster_id)
                .where(*_conditions(query))
                .order_by(*_newest_first(session, ClusterRow.name, KubeEventRow.namespace, KubeEventRow.name))
            )
            if query.limit is not None:
                statement = statement.limit(query.limit)
            return [StoredEvent(*row) for row in session.execute(statement)]

    def prune(self, *, older_than: datetime, max_per_cluster: int) -> EventPruning:
        """Delete events last seen before ``older_than`` and, of every cluster, all but its
        newest ``max_per_cluster``; one transaction."""
        if max_per_cluster < 0:
            raise ValueError(f"max_per_cluster must not be negative, not {max_per_cluster}")
        event = KubeEventRow
        with self.db.session() as session:
            expired = _deleted(
                session.execute(
                    delete(event).where(
                        or_(
                            event.last_timestamp < older_than,
                            and_(event.last_timestamp.is_(None), event.saved_at < older_than),
                        )
                    ),
                    execution_options=_NO_SYNC,
                )
            )
            crowded = session.scalars(
                select(event.cluster_id).group_by(event.cluster_id).having(func.count() > max_per_cluster)
            ).all()
            over_limit = 0
            for cluster_id in crowded:
                order = _newest_first(session, event.namespace, event.name)
                ranked = (
                    select(event.id, func.row_number().over(order_by=order).label("rank"))
                    .where(event.cluster_id == cluster_id)
                    .subquery()
                )
                beyond = select(ranked.c.id).where(ranked.c.rank > max_per_cluster)
                over_limit += _deleted(
                    session.execute(delete(event).where(event.id.in_(beyond)), execution_options=_NO_SYNC)
                )
        if expired or over_limit:
            log.info(
                "events.pruned",
                expired=expired,
                over_limit=over_limit,
                older_than=older_than.isoformat(),
                max_per_cluster=max_per_cluster,
            )
        return EventPruning(expired, over_limit)

    def delete_cluster(self, cluster: str) -> int:
        """Forget every event of ``cluster`` (deleting the cluster does so by itself); return how
        many. Nothing to forget for an unknown cluster."""
        cluster_id = select(ClusterRow.id).where(ClusterRow.name == cluster).scalar_subquery()
        with self.db.session() as session:
            return _deleted(
                session.execute(
                    delete(KubeEventRow).where(KubeEventRow.cluster_id == cluster_id),
                    execution_options=_NO_SYNC,
                )
            )

    def count(self, cluster: str | None = None) -> int:
        """How many events are stored (of ``cluster``, when given)."""
        statement = select(func.count()).select_from(KubeEventRow)
        if cluster is not None:
            statement = statement.join(ClusterRow, ClusterRow.id == KubeEventRow.cluster_id).where(
                ClusterRow.name == cluster
            )
        with self.db.session() as session:
            return int(session.scalar(statement) or 0)
