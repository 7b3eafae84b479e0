"""``store.alerts`` on real SQLite and a real PostgreSQL (``store_url``): alert states
round-trip through ``fleet.alerting``, acknowledgements survive a concurrent pass,
silences and the delivery log, and the migration matches the models.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from pilothouse import errors
from pilothouse.fleet import alerting
from pilothouse.fleet.health import ClusterHealth, EndpointHealth, EndpointKind
from pilothouse.store import db, models
from pilothouse.store.alerts import AlertStore, DeliveryAttempt

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def database(store_url: str) -> Iterator[db.Database]:
    database = db.Database(store_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def store(database: db.Database) -> AlertStore:
    return AlertStore(database)


def down(cluster: str) -> alerting.ClusterObservation:
    endpoint = EndpointHealth(
        "kube-apiserver", "https://127.0.0.1:1", EndpointKind.APISERVER, False, 0.0, "refused"
    )
    return alerting.ClusterObservation(cluster, health=ClusterHealth(cluster, T0, (endpoint,), False))


def up(cluster: str) -> alerting.ClusterObservation:
    endpoint = EndpointHealth("kube-apiserver", "https://127.0.0.1:1", EndpointKind.APISERVER, True, 1.0)
    return alerting.ClusterObservation(cluster, health=ClusterHealth(cluster, T0, (endpoint,), True))


def evaluate_stored(
    store: AlertStore, observations: list[alerting.ClusterObservation], at: float
) -> alerting.Evaluation:
    """One alert pass as the background job runs it: load, evaluate, save."""
    previous = alerting.restore(store.records())
    silences = [
        alerting.Silence(
            s.id, tuple(alerting.Matcher.from_dict(m) for m in s.matchers), s.starts_at, s.ends_at
        )
        for s in store.silences()
    ]
    result = alerting.evaluate(previous, observations, T0 + timedelta(seconds=at), silences=silences)
    store.save(result.states.values())
    return result


def test_the_migration_creates_the_tables_the_models_describe(database: db.Database) -> None:
    assert {"alerts", "alert_silences", "alert_deliveries"} <= set(database.table_names())
    with database.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), models.Base.metadata) == []
    indexes = {i["name"] for i in inspect(database.engine).get_indexes("alerts")}
    assert {"ix_alerts_cluster", "ix_alerts_status", "ix_alerts_rule"} <= indexes


def test_states_round_trip_through_the_store_as_utc(store: AlertStore) -> None:
    evaluate_stored(store, [down("alpha"), down("beta")], 0)
    result = evaluate_stored(store, [down("alpha"), down("beta")], 10)

    restored = alerting.restore(store.records())

    assert restored == result.states
    assert {s.status for s in restored.values()} == {alerting.AlertStatus.FIRING}
    record = store.records(cluster="alpha")[0]
    assert record.started_at == T0
    assert record.started_at.tzinfo is not None
    assert record.fired_at == T0 + timedelta(seconds=10)
    assert record.notified == "firing"
    assert record.labels == {"alertname": "ClusterUnreachable", "cluster": "alpha"}
    assert sorted(r.cluster for r in store.records(statuses=["firing"])) == ["alpha", "beta"]


def test_save_replaces_the_set_and_resolved_alerts_expire(store: AlertStore) -> None:
    evaluate_stored(store, [down("alpha")], 0)
    evaluate_stored(store, [down("alpha")], 10)
    resolved = evaluate_stored(store, [up("alpha")], 20)
    assert [n.kind for n in resolved.notifications] == [alerting.NotificationKind.RESOLVED]
    assert [r.status for r in store.records()] == ["resolved"]

    evaluate_stored(store, [up("alpha")], 20 + 24 * 3600 + 1)

    assert store.records() == []


def test_an_acknowledgement_survives_a_pass_that_loaded_before_it(store: AlertStore) -> None:
    evaluate_stored(store, [down("alpha")], 0)
    first = evaluate_stored(store, [down("alpha")], 10)
    fingerprint = next(iter(first.states))
    stale = alerting.restore(store.records())  # a pass loads ...

    acked = store.acknowledge(fingerprint, by="alice", at=T0 + timedelta(seconds=12))  # ... the CLI acks ...
    result = alerting.evaluate(stale, [down("alpha")], T0 + timedelta(seconds=15))
    store.save(result.states.values())  # ... and the pass saves

    assert acked.acked_by == "alice"
    assert store.get(fingerprint).acked_by == "alice"
    assert store.get(fingerprint).acked_at == T0 + timedelta(seconds=12)


def test_acknowledging_unknown_or_resolved_alerts_is_refused(store: AlertStore) -> None:
    with pytest.raises(errors.NotFound):
        store.acknowledge("0123456789abcdef", by="alice", at=T0)
    evaluate_stored(store, [down("alpha")], 0)
    evaluate_stored(store, [down("alpha")], 10)
    evaluate_stored(store, [up("alpha")], 20)
    with pytest.raises(errors.InvalidInput):
        store.acknowledge(store.records()[0].fingerprint, by="alice", at=T0)


def test_silences_are_stored_listed_expired_and_applied(store: AlertStore) -> None:
    plus5 = timezone(timedelta(hours=5))
    silence = store.add_silence(
        [alerting.Matcher.parse("cluster=~al.*").to_dict()],
        starts_at=T0.astimezone(plus5),
        ends_at=T0 + timedelta(hours=1),
        created_by="alice",
        comment="maintenance",
    )
    store.add_silence(
        [{"name": "cluster", "value": "zeta", "op": "="}],
        starts_at=T0 - timedelta(hours=2),
        ends_at=T0 - timedelta(hours=1),
    )

    assert silence.starts_at == T0
    assert silence.starts_at.tzinfo == UTC
    assert [s.id for s in store.silences(active_at=T0 + timedelta(minutes=1))] == [silence.id]
    assert len(store.silences()) == 2

    evaluate_stored(store, [down("alpha")], 0)
    result = evaluate_stored(store, [down("alpha")], 10)
    assert result.notifications == ()
    assert store.records()[0].silenced_by == silence.id

    store.expire_silence(silence.id, at=T0 + timedelta(seconds=15))
    result = evaluate_stored(store, [down("alpha")], 20)
    assert [n.kind for n in result.notifications] == [alerting.NotificationKind.FIRING]
    assert store.prune_silences(ended_before=T0) == 1
    with pytest.raises(errors.InvalidInput):
        store.add_silence([], starts_at=T0, ends_at=T0 + timedelta(hours=1))
    with pytest.raises(errors.InvalidInput):
        store.add_silence([{"name": "a", "value": "b"}], starts_at=T0, ends_at=T0)
    with pytest.raises(errors.NotFound):
        store.expire_silence("nope", at=T0)


def test_the_delivery_log_keeps_every_attempt_in_order_and_prunes(store: AlertStore) -> None:
    attempts = [
        DeliveryAttempt("fp1", "firing", "hook", 1, False, "HTTP 500: oops", T0),
        DeliveryAttempt("fp1", "firing", "hook", 2, True, None, T0 + timedelta(seconds=1)),
        DeliveryAttempt("fp2", "resolved", "mail", 1, True, None, T0 + timedelta(hours=2)),
    ]
    store.record_deliveries(attempts[:2])
    store.record_delivery(attempts[2])

    assert store.deliveries() == attempts
    assert store.deliveries(fingerprint="fp1") == attempts[:2]
    assert store.deliveries(limit=1) == attempts[2:]
    assert store.prune_deliveries(before=T0 + timedelta(hours=1)) == 2
    assert store.delivery_count() == 1
