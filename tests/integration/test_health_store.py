"""Health history in the store, on real SQLite and a real PostgreSQL (``store_url``).

Samples go in through ``HealthStore``; what comes back is checked against the
pure SLA arithmetic on the same samples, before and after compaction, so
downsampling is shown not to change availability. Raw SQL counts check what is
really left on disk after retention and after a cluster is deleted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography.fernet import Fernet
from sqlalchemy import inspect, text

from pilothouse import errors
from pilothouse.fleet import sla
from pilothouse.store import clusters, db, models, secrets
from pilothouse.store.health import HealthSample, HealthStore, NewSample, floor_to

NOW = datetime(2026, 3, 10, 12, 3, 7, tzinfo=UTC)  # deliberately not on a bucket boundary
STEP = timedelta(seconds=10)
WINDOWS = (timedelta(hours=1), timedelta(hours=24), timedelta(days=30))


@pytest.fixture
def database(store_url: str) -> Iterator[db.Database]:
    database = db.Database(store_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def cluster_store(database: db.Database) -> clusters.ClusterStore:
    return clusters.ClusterStore(database, secrets.SecretBox(Fernet.generate_key()))


@pytest.fixture
def health(database: db.Database, cluster_store: clusters.ClusterStore) -> HealthStore:
    for name in ("alpha", "beta"):
        cluster_store.add(name=name, provider="local", desired_state="running", phase="Running")
    return HealthStore(database)


def count(database: db.Database, table: str) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608 - fixed names


def probe_history(
    start: datetime,
    end: datetime,
    *,
    outages: tuple[tuple[datetime, datetime], ...] = (),
    silences: tuple[tuple[datetime, datetime], ...] = (),
) -> list[sla.Sample]:
    """A sample every 10 s: down inside an outage, none inside a silence (Pilothouse itself down)."""
    samples = []
    moment = start
    while moment < end:
        if not any(a <= moment < b for a, b in silences):
            samples.append(sla.Sample(moment, not any(a <= moment < b for a, b in outages)))
        moment += STEP
    return samples


def store_all(health: HealthStore, cluster: str, samples: list[sla.Sample]) -> None:
    written = health.record_many(NewSample(cluster, s.at, s.up, 12.5) for s in samples)
    assert written == len(samples)


def figures(
    spans: list[Any], now: datetime, lengths: tuple[timedelta, ...] = WINDOWS
) -> list[tuple[float, float]]:
    return [
        (w.up_seconds, w.observed_seconds)
        for w in (sla.compute_window(spans, now=now, length=length) for length in lengths)
    ]


def assert_same(
    left: list[tuple[float, float]], right: list[tuple[float, float]], *, tolerance: float
) -> None:
    for (up_a, seen_a), (up_b, seen_b) in zip(left, right, strict=True):
        assert up_a == pytest.approx(up_b, abs=tolerance)
        assert seen_a == pytest.approx(seen_b, abs=tolerance)


# ----- schema ----------------------------------------------------------------------------------


def test_migration_creates_the_tables_and_matches_the_models(database: db.Database) -> None:
    assert {"health_samples", "health_rollups"} <= set(database.table_names())
    with database.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), models.Base.metadata) == []
    inspector = inspect(database.engine)
    # the primary key is the (cluster, time) index every query uses
    assert inspector.get_pk_constraint("health_samples")["constrained_columns"] == ["cluster_id", "at"]
    assert inspector.get_pk_constraint("health_rollups")["constrained_columns"] == ["cluster_id", "start"]
    foreign = inspector.get_foreign_keys("health_samples")
    assert [(f["referred_table"], f["options"].get("ondelete")) for f in foreign] == [("clusters", "CASCADE")]


# ----- writes and reads ------------------------------------------------------------------------


def test_recorded_samples_come_back_in_order_as_utc(health: HealthStore) -> None:
    plus2 = NOW.astimezone(timezone(timedelta(hours=2)))  # the same instant, another offset
    health.record("alpha", at=NOW + STEP, up=False)
    health.record("alpha", at=plus2, up=True, latency_ms=3.25)
    health.record("beta", at=NOW, up=False)

    got = health.raw_samples("alpha", NOW - timedelta(hours=1))
    assert got == [HealthSample(NOW, True, 3.25), HealthSample(NOW + STEP, False, None)]
    assert all(s.at.tzinfo is not None and s.at.utcoffset() == timedelta(0) for s in got)
    assert health.latest("alpha") == HealthSample(NOW + STEP, False, None)
    assert health.raw_samples("beta", NOW) == [HealthSample(NOW, False, None)]
    assert health.raw_samples("alpha", NOW + STEP, until=NOW + 2 * STEP) == [
        HealthSample(NOW + STEP, False, None)
    ]


def test_spans_hold_each_sample_until_the_next_for_at_most_the_maximum_gap(health: HealthStore) -> None:
    for offset, up in ((0, True), (10, False), (20, True), (200, True)):
        health.record("alpha", at=NOW + timedelta(seconds=offset), up=up)

    spans = health.samples("alpha", NOW, until=NOW + timedelta(seconds=215))
    assert [(s.start - NOW, s.end - NOW, s.up_seconds, s.observed_seconds) for s in spans] == [
        (timedelta(0), timedelta(seconds=10), 10.0, 10.0),
        (timedelta(seconds=10), timedelta(seconds=20), 0.0, 10.0),
        (timedelta(seconds=20), timedelta(seconds=50), 30.0, 30.0),  # then 150 s unknown
        (timedelta(seconds=200), timedelta(seconds=215), 15.0, 15.0),  # cut at ``until``
    ]


def test_a_repeated_sample_is_ignored_and_unknown_clusters_are_skipped(health: HealthStore) -> None:
    assert health.record_many([NewSample("alpha", NOW, True), NewSample("gone", NOW, True)]) == 1
    assert health.record_many([NewSample("alpha", NOW, False)]) == 0
    health.record("alpha", at=NOW, up=False)  # a repeat, not an error
    assert health.raw_samples("alpha", NOW) == [HealthSample(NOW, True, None)]
    with pytest.raises(errors.NotFound):
        health.record("gone", at=NOW, up=True)
    with pytest.raises(errors.NotFound):
        health.samples("gone", NOW)


def test_samples_match_the_pure_arithmetic(health: HealthStore) -> None:
    samples = probe_history(
        NOW - timedelta(hours=3),
        NOW,
        outages=((NOW - timedelta(minutes=50), NOW - timedelta(minutes=47)),),
        silences=((NOW - timedelta(hours=2), NOW - timedelta(hours=1, minutes=45)),),
    )
    store_all(health, "alpha", samples)
    lengths = (timedelta(minutes=5), timedelta(hours=1), timedelta(hours=6))

    stored = figures(health.samples("alpha", NOW - timedelta(hours=6), until=NOW), NOW, lengths)
    assert_same(stored, figures(sla.spans_from_samples(samples, until=NOW), NOW, lengths), tolerance=1e-6)
    hour = sla.compute_window(
        health.samples("alpha", NOW - timedelta(hours=1)), now=NOW, length=timedelta(hours=1)
    )
    assert hour.down_seconds == pytest.approx(180.0)


# ----- compaction and retention ----------------------------------------------------------------


def three_days(health: HealthStore) -> list[sla.Sample]:
    samples = probe_history(
        NOW - timedelta(days=3),
        NOW,
        outages=(
            (NOW - timedelta(days=2, hours=5), NOW - timedelta(days=2, hours=4, minutes=30)),  # to be folded
            (
                NOW - timedelta(hours=49, minutes=7),
                NOW - timedelta(hours=47, minutes=58),
            ),  # across the cutoff
            (NOW - timedelta(hours=3), NOW - timedelta(hours=2, minutes=58)),
        ),
        silences=((NOW - timedelta(days=2, hours=12), NOW - timedelta(days=2, hours=11)),),
    )
    store_all(health, "alpha", samples)
    store_all(health, "beta", samples[::2])
    return samples


def test_compaction_keeps_availability_and_leaves_only_recent_raw_samples(
    health: HealthStore, database: db.Database
) -> None:
    samples = three_days(health)
    since = NOW - timedelta(days=31)
    lengths = (*WINDOWS, timedelta(hours=60), timedelta(hours=49))  # the last two start among the buckets
    before = {c: figures(health.samples(c, since), NOW, lengths) for c in ("alpha", "beta")}
    assert_same(before["alpha"], figures(sla.spans_from_samples(samples), NOW, lengths), tolerance=1e-6)

    result = health.compact(NOW)

    cutoff = floor_to(NOW - timedelta(hours=48), timedelta(minutes=5))
    assert result.cutoff == cutoff
    assert result.folded_samples == sum(1 for s in samples if s.at < cutoff) + sum(
        1 for s in samples[::2] if s.at < cutoff
    )
    assert result.dropped_rollups == 0
    assert min(s.at for s in health.raw_samples("alpha", since)) >= cutoff
    rollups = health.rollups("alpha", since)
    assert all(r.seconds == 300 and r.start == floor_to(r.start, timedelta(minutes=5)) for r in rollups)
    assert sum(r.samples for r in rollups) == sum(1 for s in samples if s.at < cutoff)
    assert all(r.latency_ms == pytest.approx(12.5) for r in rollups if r.samples)
    recent = sum(1 for s in samples if s.at >= cutoff) + sum(1 for s in samples[::2] if s.at >= cutoff)
    assert count(database, "health_samples") == recent
    for cluster in ("alpha", "beta"):
        after = figures(health.samples(cluster, since), NOW, lengths)
        # windows starting outside the buckets are exact; a window cutting a bucket spreads it evenly
        assert_same(after[:3], before[cluster][:3], tolerance=1e-6)
        assert_same(after[3:], before[cluster][3:], tolerance=300.0)
        report = sla.compute_report(cluster, health.samples(cluster, since), now=NOW)
        assert report.window("30d").down_seconds == pytest.approx(30 * 60 + 69 * 60 + 120, abs=1e-6)

    # compacting again changes nothing; compacting later folds more and still agrees
    assert health.compact(NOW).folded_samples == 0
    later = NOW + timedelta(hours=7)
    health.compact(later)
    assert_same(
        figures(health.samples("alpha", since), later),
        figures(sla.spans_from_samples(samples), later),
        tolerance=1e-6,
    )


def test_retention_drops_buckets_older_than_35_days(health: HealthStore, database: db.Database) -> None:
    old = probe_history(NOW - timedelta(days=36), NOW - timedelta(days=36) + timedelta(minutes=30))
    kept = probe_history(NOW - timedelta(days=34), NOW - timedelta(days=34) + timedelta(minutes=30))
    store_all(health, "alpha", old + kept)

    first = health.compact(NOW)  # folds both, then drops the buckets past retention at once
    assert first.folded_samples == len(old) + len(kept)
    assert first.dropped_rollups == 7  # the seven 5-minute buckets the old half hour touched
    rollups = health.rollups("alpha", NOW - timedelta(days=40))
    assert {r.start.date() for r in rollups} == {(NOW - timedelta(days=34)).date()}
    assert sum(r.observed_seconds for r in rollups) == pytest.approx(30 * 60 + 20)
    assert count(database, "health_samples") == 0

    health.compact(NOW + timedelta(days=2))
    assert health.rollups("alpha", NOW - timedelta(days=40)) == []


def test_deleting_a_cluster_deletes_its_history(
    health: HealthStore, cluster_store: clusters.ClusterStore, database: db.Database
) -> None:
    three_days(health)
    health.compact(NOW)
    assert count(database, "health_rollups") > 0

    cluster_store.remove("alpha")
    cluster_store.remove("beta")

    assert count(database, "health_samples") == 0
    assert count(database, "health_rollups") == 0


def test_concurrent_compactions_fold_each_sample_once(store_url: str, health: HealthStore) -> None:
    samples = three_days(health)
    since = NOW - timedelta(days=31)
    before = figures(health.samples("alpha", since), NOW)
    stores = [HealthStore(db.Database(store_url)) for _ in range(3)]
    start = threading.Barrier(len(stores))
    results: list[int] = []

    def run(store: HealthStore) -> None:
        start.wait()
        results.append(store.compact(NOW).folded_samples)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.db.dispose()

    cutoff = floor_to(NOW - timedelta(hours=48), timedelta(minutes=5))
    assert sorted(results) == [
        0,
        0,
        sum(1 for s in samples if s.at < cutoff) + sum(1 for s in samples[::2] if s.at < cutoff),
    ]
    assert_same(figures(health.samples("alpha", since), NOW), before, tolerance=1e-6)
