"""Cluster health history: raw probe samples, their rollups, retention and downsampling.

``HealthStore`` is the only way the rest of Pilothouse writes or reads health
history. SQLAlchemy 2 does the work on SQLite and PostgreSQL alike; the two
upserts use each dialect's ``INSERT … ON CONFLICT``. Callers name clusters;
rows key on the cluster's id (so a re-created cluster starts a fresh
history) and go with the cluster when it is deleted (``ON DELETE CASCADE``).

Raw samples (``health_samples``) are kept ``raw_retention`` (48 h): enough for
every burn-rate window. ``compact(now)`` folds older ones into fixed buckets
(``health_rollups``, 5 minutes by default) of up and observed seconds, and drops
buckets older than ``rollup_retention`` (35 days, so a 30-day window is always
whole), in one transaction. Folding uses the time-weighting of
``fleet/sla.py`` (each sample holds until the next one, at most ``max_gap``),
restated here because the store may not import a service: a test checks that
availability is the same before and after compaction.

``samples(cluster, since)`` returns the history as spans (``HealthSpan``) that
``fleet.sla`` reads directly: one per held raw sample and one per bucket.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, Executable, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pilothouse import errors
from pilothouse.store.db import Database
from pilothouse.store.models import Base, ClusterRow, HealthRollupRow, HealthSampleRow

log = structlog.get_logger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Serialises ``compact`` across processes on PostgreSQL (SQLite has one writer anyway).
_COMPACT_LOCK = 0x70696C6F_68656C74  # "pilohelt"
_SAMPLE_KEY = ["cluster_id", "at"]
_ROLLUP_KEY = ["cluster_id", "start"]


@dataclass(frozen=True)
class NewSample:
    """A probe result to record."""

    cluster: str
    at: datetime
    up: bool
    latency_ms: float | None = None


@dataclass(frozen=True)
class HealthSample:
    at: datetime
    up: bool
    latency_ms: float | None


@dataclass(frozen=True)
class HealthRollup:
    start: datetime
    seconds: int
    up_seconds: float
    observed_seconds: float
    samples: int
    latency_ms_sum: float
    latency_samples: int

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.seconds)

    @property
    def latency_ms(self) -> float | None:
        """Mean latency of the folded samples that had one."""
        return self.latency_ms_sum / self.latency_samples if self.latency_samples else None


@dataclass(frozen=True)
class HealthSpan:
    """``[start, end)`` with the up and observed seconds inside it (``fleet.sla.SpanLike``)."""

    start: datetime
    end: datetime
    up_seconds: float
    observed_seconds: float


@dataclass(frozen=True)
class Compaction:
    """What one ``compact`` did."""

    cutoff: datetime
    folded_samples: int
    buckets_written: int
    dropped_rollups: int


@dataclass
class _Bucket:
    up_seconds: float = 0.0
    observed_seconds: float = 0.0
    samples: int = 0
    latency_ms_sum: float = 0.0
    latency_samples: int = 0


def floor_to(moment: datetime, step: timedelta) -> datetime:
    """The start of the ``step``-long bucket (aligned to the Unix epoch) holding ``moment``."""
    return _EPOCH + step * ((moment - _EPOCH) // step)


def _hold_end(at: datetime, following: datetime | None, max_gap: timedelta) -> datetime:
    end = at + max_gap
    return end if following is None else min(end, following)


def _spans(
    samples: Sequence[tuple[datetime, bool]], max_gap: timedelta, until: datetime | None
) -> list[HealthSpan]:
    spans = []
    for index, (at, up) in enumerate(samples):
        end = _hold_end(at, samples[index + 1][0] if index + 1 < len(samples) else None, max_gap)
        if until is not None:
            end = min(end, until)
        if end > at:
            seconds = (end - at).total_seconds()
            spans.append(HealthSpan(at, end, seconds if up else 0.0, seconds))
    return spans


def _fold(
    samples: Sequence[tuple[datetime, bool, float | None]],
    following: datetime | None,
    *,
    max_gap: timedelta,
    bucket: timedelta,
) -> dict[datetime, _Bucket]:
    """Fold time-ordered samples into buckets; a hold crossing a bucket edge is split across both."""
    buckets: dict[datetime, _Bucket] = {}
    for index, (at, up, latency_ms) in enumerate(samples):
        first = buckets.setdefault(floor_to(at, bucket), _Bucket())
        first.samples += 1
        if latency_ms is not None:
            first.latency_ms_sum += latency_ms
            first.latency_samples += 1
        end = _hold_end(at, samples[index + 1][0] if index + 1 < len(samples) else following, max_gap)
        moment = at
        while moment < end:
            start = floor_to(moment, bucket)
            piece_end = min(end, start + bucket)
            seconds = (piece_end - moment).total_seconds()
            target = buckets.setdefault(start, _Bucket())
            target.observed_seconds += seconds
            if up:
                target.up_seconds += seconds
            moment = piece_end
    return buckets


_ADDED = ("up_seconds", "observed_seconds", "samples", "latency_ms_sum", "latency_samples")


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _insert_new_samples(session: Session, rows: list[dict[str, Any]]) -> int:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING``, batched; the number of rows inserted.

    One compiled statement, executed for all rows (SQLAlchemy batches them into
    multi-row inserts); counted from RETURNING, since psycopg reports no usable
    rowcount for a batched insert.
    """
    table = Base.metadata.tables[HealthSampleRow.__tablename__]
    if _postgres(session):
        statement: Executable = (
            postgresql.insert(table).on_conflict_do_nothing(index_elements=_SAMPLE_KEY).returning(table.c.at)
        )
    else:
        statement = (
            sqlite.insert(table).on_conflict_do_nothing(index_elements=_SAMPLE_KEY).returning(table.c.at)
        )
    return len(session.connection().execute(statement, rows).all())


def _add_to_rollups(session: Session, rows: list[dict[str, Any]]) -> None:
    """``INSERT … ON CONFLICT DO UPDATE`` adding each bucket's seconds and counts to a stored one."""
    table = Base.metadata.tables[HealthRollupRow.__tablename__]
    if _postgres(session):
        pg = postgresql.insert(table)
        statement: Executable = pg.on_conflict_do_update(
            index_elements=_ROLLUP_KEY, set_={name: table.c[name] + pg.excluded[name] for name in _ADDED}
        )
    else:
        lite = sqlite.insert(table)
        statement = lite.on_conflict_do_update(
            index_elements=_ROLLUP_KEY, set_={name: table.c[name] + lite.excluded[name] for name in _ADDED}
        )
    session.connection().execute(statement, rows)


class HealthStore:
    """Health samples per cluster, with retention and downsampling."""

    def __init__(
        self,
        db: Database,
        *,
        max_gap: timedelta = timedelta(seconds=30),
        raw_retention: timedelta = timedelta(hours=48),
        rollup_retention: timedelta = timedelta(days=35),
        bucket: timedelta = timedelta(minutes=5),
    ) -> None:
        if bucket < timedelta(seconds=1) or bucket % timedelta(seconds=1):
            raise ValueError(f"the rollup bucket must be a whole number of seconds, not {bucket}")
        if not timedelta(0) < max_gap <= raw_retention <= rollup_retention:
            raise ValueError("need 0 < max_gap <= raw_retention <= rollup_retention")
        self.db = db
        self.max_gap = max_gap
        self.raw_retention = raw_retention
        self.rollup_retention = rollup_retention
        self.bucket = bucket

    # ----- writes ----------------------------------------------------------------------------

    def record(self, cluster: str, *, at: datetime, up: bool, latency_ms: float | None = None) -> None:
        """Record one probe result; ``NotFound`` for an unknown cluster."""
        if not self.record_many([NewSample(cluster, at, up, latency_ms)]):
            with self.db.session() as session:
                self._cluster_id(session, cluster)  # raises NotFound when the cluster is unknown

    def record_many(self, samples: Iterable[NewSample]) -> int:
        """Record probe results of many clusters in one transaction; return how many were new.

        Samples of clusters that no longer exist are skipped (a cluster deleted while
        it was being probed), and so is a repeated (cluster, at).
        """
        batch = list(samples)
        if not batch:
            return 0
        for attempt in range(2):
            try:
                with self.db.session() as session:
                    names = {s.cluster for s in batch}
                    ids = {
                        name: cluster_id
                        for name, cluster_id in session.execute(
                            select(ClusterRow.name, ClusterRow.id).where(ClusterRow.name.in_(names))
                        )
                    }
                    rows = [
                        {"cluster_id": ids[s.cluster], "at": s.at, "up": s.up, "latency_ms": s.latency_ms}
                        for s in batch
                        if s.cluster in ids
                    ]
                    return _insert_new_samples(session, rows) if rows else 0
            except IntegrityError:  # a cluster was deleted between the lookup and the insert
                if attempt:
                    raise
                log.info("health.record_retry", clusters=len({s.cluster for s in batch}))
        return 0  # pragma: no cover - the loop returns or raises

    def compact(self, now: datetime) -> Compaction:
        """Fold raw samples older than ``raw_retention`` into buckets and drop expired buckets.

        One transaction. Only samples before a bucket-aligned cutoff are folded, so every
        bucket before it is complete; the hold of the last folded sample may reach past
        the cutoff, and that part is added to the next bucket (which later folds add to).
        """
        cutoff = floor_to(now - self.raw_retention, self.bucket)
        expiry = now - self.rollup_retention
        folded = written = dropped = 0
        with self.db.session() as session:
            if _postgres(session):
                session.execute(select(func.pg_advisory_xact_lock(_COMPACT_LOCK)))
            for cluster_id in session.scalars(select(ClusterRow.id)).all():
                # DELETE … RETURNING first: on SQLite it also takes the write lock, so the
                # reads below see exactly what this transaction folds.
                rows = session.execute(
                    delete(HealthSampleRow)
                    .where(HealthSampleRow.cluster_id == cluster_id, HealthSampleRow.at < cutoff)
                    .returning(HealthSampleRow.at, HealthSampleRow.up, HealthSampleRow.latency_ms)
                ).all()
                if rows:
                    following = session.scalar(
                        select(func.min(HealthSampleRow.at)).where(
                            HealthSampleRow.cluster_id == cluster_id, HealthSampleRow.at >= cutoff
                        )
                    )
                    ordered = sorted(((at, up, latency) for at, up, latency in rows), key=lambda r: r[0])
                    buckets = _fold(ordered, following, max_gap=self.max_gap, bucket=self.bucket)
                    _add_to_rollups(session, self._rollup_rows_for(cluster_id, buckets))
                    folded += len(rows)
                    written += len(buckets)
                result = session.execute(
                    delete(HealthRollupRow).where(
                        HealthRollupRow.cluster_id == cluster_id, HealthRollupRow.start < expiry
                    )
                )
                dropped += int(getattr(result, "rowcount", 0))
        outcome = Compaction(cutoff, folded, written, dropped)
        log.info(
            "health.compacted",
            cutoff=cutoff.isoformat(),
            folded_samples=folded,
            buckets_written=written,
            dropped_rollups=dropped,
        )
        return outcome

    def _rollup_rows_for(self, cluster_id: str, buckets: dict[datetime, _Bucket]) -> list[dict[str, Any]]:
        seconds = int(self.bucket.total_seconds())
        return [
            {
                "cluster_id": cluster_id,
                "start": start,
                "seconds": seconds,
                "up_seconds": b.up_seconds,
                "observed_seconds": b.observed_seconds,
                "samples": b.samples,
                "latency_ms_sum": b.latency_ms_sum,
                "latency_samples": b.latency_samples,
            }
            for start, b in sorted(buckets.items())
        ]

    # ----- reads -----------------------------------------------------------------------------

    def _cluster_id(self, session: Session, cluster: str) -> str:
        cluster_id = session.scalar(select(ClusterRow.id).where(ClusterRow.name == cluster))
        if cluster_id is None:
            raise errors.NotFound(f"no cluster named {cluster!r}", hint="see `pilothouse cluster list`")
        return cluster_id

    def samples(self, cluster: str, since: datetime, *, until: datetime | None = None) -> list[HealthSpan]:
        """The cluster's history overlapping ``[since, until)`` as spans, in time order.

        Rollups become one span per bucket; raw samples one span each, held until the
        next sample (at most ``max_gap``, and not past ``until``). Spans may begin
        before ``since``; ``fleet.sla`` clips them to its windows.
        """
        with self.db.session() as session:
            cluster_id = self._cluster_id(session, cluster)
            rollups = self._rollup_rows(session, cluster_id, since - self.bucket, until)
            raw = session.execute(
                select(HealthSampleRow.at, HealthSampleRow.up)
                .where(*_raw_window(cluster_id, since - self.max_gap, until))
                .order_by(HealthSampleRow.at)
            ).all()
            spans = _spans([(at, up) for at, up in raw], self.max_gap, until)
        spans += [HealthSpan(r.start, r.end, r.up_seconds, r.observed_seconds) for r in rollups]
        return sorted(spans, key=lambda span: span.start)

    def raw_samples(
        self, cluster: str, since: datetime, *, until: datetime | None = None
    ) -> list[HealthSample]:
        """Raw samples at or after ``since`` (and before ``until``), oldest first."""
        with self.db.session() as session:
            cluster_id = self._cluster_id(session, cluster)
            rows = session.scalars(
                select(HealthSampleRow)
                .where(*_raw_window(cluster_id, since, until))
                .order_by(HealthSampleRow.at)
            ).all()
            return [HealthSample(r.at, r.up, r.latency_ms) for r in rows]

    def rollups(self, cluster: str, since: datetime, *, until: datetime | None = None) -> list[HealthRollup]:
        """Buckets starting at or after ``since`` (and before ``until``), oldest first."""
        with self.db.session() as session:
            return self._rollup_rows(session, self._cluster_id(session, cluster), since, until)

    def latest(self, cluster: str) -> HealthSample | None:
        """The newest raw sample of the cluster, if any."""
        with self.db.session() as session:
            cluster_id = self._cluster_id(session, cluster)
            row = session.scalars(
                select(HealthSampleRow)
                .where(HealthSampleRow.cluster_id == cluster_id)
                .order_by(HealthSampleRow.at.desc())
                .limit(1)
            ).one_or_none()
            return None if row is None else HealthSample(row.at, row.up, row.latency_ms)

    def _rollup_rows(
        self, session: Session, cluster_id: str, since: datetime, until: datetime | None
    ) -> list[HealthRollup]:
        conditions = [HealthRollupRow.cluster_id == cluster_id, HealthRollupRow.start >= since]
        if until is not None:
            conditions.append(HealthRollupRow.start < until)
        query = select(HealthRollupRow).where(*conditions)
        return [
            HealthRollup(
                r.start,
                r.seconds,
                r.up_seconds,
                r.observed_seconds,
                r.samples,
                r.latency_ms_sum,
                r.latency_samples,
            )
            for r in session.scalars(query.order_by(HealthRollupRow.start))
        ]


def _raw_window(cluster_id: str, since: datetime, until: datetime | None) -> list[ColumnElement[bool]]:
    conditions = [HealthSampleRow.cluster_id == cluster_id, HealthSampleRow.at >= since]
    if until is not None:
        conditions.append(HealthSampleRow.at < until)
    return conditions
