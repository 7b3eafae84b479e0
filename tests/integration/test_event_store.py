"""Kubernetes Events in the store, on real SQLite and a real PostgreSQL (``store_url``).

Events go in as plain ``EventSummary`` values through ``EventStore.save``.
Searches are checked against the pure ``fleet.events.search_events`` over the
same events (the reference semantics), for fixed and generated data and
queries: case folding beyond ASCII, LIKE wildcards taken literally, ties in
code-point order. Upserts never go back to an older version; pruning bounds
the table by age and by count per cluster; deleting a cluster deletes its
events. The migration creates the table the model describes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect

from pilothouse import errors
from pilothouse.fleet import events
from pilothouse.fleet.events import EventQuery
from pilothouse.kube.summaries import EventSummary
from pilothouse.store import clusters, db, models, secrets
from pilothouse.store.events import EventPruning, EventStore

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CLUSTERS = ("alpha", "beta")


@pytest.fixture
def database(store_url: str) -> Iterator[db.Database]:
    database = db.Database(store_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def cluster_store(database: db.Database) -> clusters.ClusterStore:
    store = clusters.ClusterStore(database, secrets.SecretBox(Fernet.generate_key()))
    for name in CLUSTERS:
        store.add(name=name, provider="local", desired_state="running", phase="Running")
    return store


@pytest.fixture
def store(database: db.Database, cluster_store: clusters.ClusterStore) -> EventStore:
    return EventStore(database)


def event(
    name: str,
    *,
    minutes: float | None = 0,
    namespace: str = "web",
    kind: str = "Deployment",
    obj: str = "frontend",
    reason: str = "ScalingReplicaSet",
    type_: str = "Normal",
    message: str = "Scaled up replica set frontend-abc to 3",
    count: int = 1,
) -> EventSummary:
    return EventSummary(
        namespace=namespace,
        name=name,
        involved_kind=kind,
        involved_name=obj,
        reason=reason,
        type=type_,
        message=message,
        count=count,
        last_timestamp=None if minutes is None else T0 + timedelta(minutes=minutes),
        source="deployment-controller",
    )


def load(store: EventStore, rings: Mapping[str, Sequence[EventSummary]]) -> None:
    """Make the stored events exactly ``rings``."""
    for cluster in CLUSTERS:
        store.delete_cluster(cluster)
    for cluster, ring in rings.items():
        store.save(cluster, ring, now=T0)


def as_found(store: EventStore, query: EventQuery) -> list[events.FoundEvent]:
    return [events.FoundEvent(e.cluster, e) for e in store.search(query)]


def reference(rings: Mapping[str, Sequence[EventSummary]], query: EventQuery) -> list[events.FoundEvent]:
    """``fleet.events.search_events`` over ``rings`` deduplicated as the store keys them."""
    unique = {cluster: list({e.key: e for e in ring}.values()) for cluster, ring in rings.items()}
    return events.search_events(unique, query)


def rows(found: list[events.FoundEvent]) -> list[tuple[str, str, str, int, datetime | None]]:
    return [
        (f.cluster, f.event.namespace, f.event.name, f.event.count, f.event.last_timestamp) for f in found
    ]


# ----- schema -----------------------------------------------------------------------------------


def test_the_migration_creates_the_table_the_model_describes(database: db.Database) -> None:
    assert "kube_events" in database.table_names()
    with database.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), models.Base.metadata) == []
    indexes = {i["name"]: i["column_names"] for i in inspect(database.engine).get_indexes("kube_events")}
    assert indexes["ix_kube_events_cluster_last"] == ["cluster_id", "last_timestamp"]
    assert indexes["ix_kube_events_last_timestamp"] == ["last_timestamp"]
    assert {"ix_kube_events_object", "ix_kube_events_reason"} <= indexes.keys()


# ----- upserts ----------------------------------------------------------------------------------


def test_an_event_is_one_row_that_only_moves_forward(store: EventStore) -> None:
    assert store.save("alpha", [event("e1", minutes=0, count=1)], now=T0) == 1
    store.save("alpha", [event("e1", minutes=5, count=4, message="Scaled up again")], now=T0)
    store.save("alpha", [event("e1", minutes=2, count=2)], now=T0)  # an older version: ignored
    store.save("alpha", [event("e1", minutes=5, count=3)], now=T0)  # same time, lower count: ignored
    (found,) = store.search(EventQuery())
    assert (found.count, found.last_timestamp, found.message) == (
        4,
        T0 + timedelta(minutes=5),
        "Scaled up again",
    )

    store.save("alpha", [event("e1", minutes=5, count=5)], now=T0)  # same time, higher count
    store.save("beta", [event("e1", minutes=1)], now=T0)  # another cluster: another event
    assert [(e.cluster, e.count) for e in store.search(EventQuery())] == [("alpha", 5), ("beta", 1)]
    assert store.count() == 2
    assert store.count("alpha") == 1


def test_a_batch_keeps_the_last_of_repeated_events(store: EventStore) -> None:
    saved = store.save("alpha", [event("e1", count=1), event("e1", count=2), event("e2")], now=T0)
    assert saved == 2
    assert sorted((e.name, e.count) for e in store.search(EventQuery())) == [("e1", 2), ("e2", 1)]


def test_nul_characters_are_dropped_rather_than_failing_the_batch(store: EventStore) -> None:
    assert store.save("alpha", [event("e1", message="bad\x00byte", obj="web\x00"), event("e2")], now=T0) == 2
    (found,) = store.search(EventQuery(text="badbyte"))
    assert (found.message, found.involved_name) == ("badbyte", "web")
    assert store.search(EventQuery(text="bad\x00")) == []
    assert store.search(EventQuery(name="web\x00")) == []


def test_events_of_an_unknown_cluster_are_refused(store: EventStore) -> None:
    with pytest.raises(errors.NotFound, match="nosuch"):
        store.save("nosuch", [event("e1")], now=T0)
    assert store.save("nosuch", [], now=T0) == 0


# ----- search -----------------------------------------------------------------------------------

RINGS: dict[str, list[EventSummary]] = {
    "alpha": [
        event("e1", minutes=0),
        event("e2", minutes=5, reason="BackOff", type_="Warning", kind="Pod", obj="frontend-abc-1", message="Back-off restarting failed container"),
        event("e3", minutes=10, namespace="db", kind="StatefulSet", obj="pg", reason="SuccessfulCreate", message="create Pod pg-0"),
        event("e4", minutes=None, reason="Started", kind="Pod", obj="frontend-abc-2", message="Started container app"),
        event("e6", minutes=3, reason="FailedMount", type_="Warning", kind="Pod", obj="straße", message="Volume STRASSE is 100%_full"),
        event("E7", minutes=3, namespace="Web", kind="pod", obj="frontend", message="Ünïcode ÉVÉNEMENT"),
    ],
    "beta": [
        event("e1", minutes=7, message="Scaled down replica set frontend-abc to 1"),
        event("e5", minutes=2, reason="FailedScheduling", type_="Warning", kind="Pod", obj="big", message="0/3 nodes are available: Insufficient cpu"),
        event("_e", minutes=3, namespace="web"),
        event("B", minutes=3, namespace="web"),
    ],
}  # fmt: skip

QUERIES = [
    EventQuery(),
    EventQuery(limit=None),
    EventQuery(limit=0),
    EventQuery(limit=3),
    EventQuery(cluster="beta"),
    EventQuery(cluster="nosuch"),
    EventQuery(namespace="db"),
    EventQuery(namespace="web"),  # not "Web": namespaces are exact
    EventQuery(kind="deployment"),
    EventQuery(kind="POD"),
    EventQuery(name="frontend"),
    EventQuery(name="Frontend"),
    EventQuery(name="straße"),
    EventQuery(reason="scalingreplicaset", cluster="alpha"),
    EventQuery(type="WARNING"),
    EventQuery(text="INSUFFICIENT"),
    EventQuery(text="strasse"),
    EventQuery(text="straße"),  # casefolds to "strasse" too
    EventQuery(text="événement"),  # beyond ASCII: SQLite's LIKE alone would not fold É
    EventQuery(text="100%_"),
    EventQuery(text="%"),  # a literal percent sign, not a wildcard
    EventQuery(text="_"),
    EventQuery(text="0_3"),  # no such text: "_" is not a wildcard
    EventQuery(text=""),
    EventQuery(since=T0 + timedelta(minutes=5)),  # inclusive
    EventQuery(until=T0 + timedelta(minutes=3)),
    EventQuery(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=7), type="warning"),
]


@pytest.mark.parametrize("query", QUERIES, ids=repr)
def test_search_answers_as_the_reference_does(store: EventStore, query: EventQuery) -> None:
    load(store, RINGS)
    assert rows(as_found(store, query)) == rows(reference(RINGS, query))


def test_equal_stamps_are_ordered_by_cluster_namespace_and_name_in_code_points(store: EventStore) -> None:
    # A locale collation (en_US) would put "_e" and "a" before "B"; code points put "B" first.
    load(
        store,
        {"alpha": [event("a"), event("B"), event("_e"), event("x", namespace="Zz")], "beta": [event("A")]},
    )
    found = [f"{e.cluster}/{e.namespace}/{e.name}" for e in store.search(EventQuery())]
    assert found == ["alpha/Zz/x", "alpha/web/B", "alpha/web/_e", "alpha/web/a", "beta/web/A"]


generated_event = st.builds(
    event,
    name=st.text("aB_é", min_size=1, max_size=2),
    minutes=st.none() | st.integers(-3, 3),  # few distinct stamps: many ties
    namespace=st.sampled_from(["web", "db", "Web"]),
    kind=st.sampled_from(["Pod", "Deployment", "POD"]),
    obj=st.sampled_from(["frontend", "pg", "straße"]),
    reason=st.sampled_from(["ScalingReplicaSet", "BackOff", "backoff"]),
    type_=st.sampled_from(["Normal", "Warning"]),
    message=st.sampled_from(["Scaled up", "Back-off restarting", "", "STRASSE 50%", "Ünïcode"]),
    count=st.integers(1, 3),
)
generated_query = st.builds(
    EventQuery,
    cluster=st.none() | st.sampled_from(CLUSTERS),
    namespace=st.none() | st.sampled_from(["web", "Web"]),
    kind=st.none() | st.sampled_from(["pod", "Deployment"]),
    name=st.none() | st.sampled_from(["frontend", "straße"]),
    reason=st.none() | st.sampled_from(["BACKOFF", "ScalingReplicaSet"]),
    type=st.none() | st.sampled_from(["normal", "Warning"]),
    since=st.none() | st.integers(-3, 0).map(lambda m: T0 + timedelta(minutes=m)),
    until=st.none() | st.integers(0, 3).map(lambda m: T0 + timedelta(minutes=m)),
    text=st.none() | st.sampled_from(["up", "BACK", "straße", "%", "ü", ""]),
    limit=st.none() | st.integers(0, 10),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rings=st.fixed_dictionaries({c: st.lists(generated_event, max_size=12) for c in CLUSTERS}),
    query=generated_query,
)
def test_generated_searches_answer_as_the_reference_does(
    store: EventStore, rings: dict[str, list[EventSummary]], query: EventQuery
) -> None:
    load(store, rings)
    assert rows(as_found(store, query)) == rows(reference(rings, query))
    if query.limit is not None:
        assert (
            as_found(store, query) == as_found(store, dataclasses.replace(query, limit=None))[: query.limit]
        )


# ----- retention --------------------------------------------------------------------------------


def test_prune_drops_events_older_than_the_retention(store: EventStore) -> None:
    store.save(
        "alpha", [event("old", minutes=-61), event("edge", minutes=-60), event("new", minutes=0)], now=T0
    )
    store.save("alpha", [event("undated-old", minutes=None)], now=T0 - timedelta(hours=2))
    store.save("beta", [event("undated-new", minutes=None), event("old", minutes=-90)], now=T0)

    pruned = store.prune(older_than=T0 - timedelta(hours=1), max_per_cluster=100)

    assert pruned == EventPruning(expired=3, over_limit=0)
    assert sorted((e.cluster, e.name) for e in store.search(EventQuery(limit=None))) == [
        ("alpha", "edge"),
        ("alpha", "new"),
        ("beta", "undated-new"),  # no timestamp: aged by when it was saved
    ]


def test_prune_keeps_the_newest_events_of_each_cluster(store: EventStore) -> None:
    alpha = [event(f"e{i}", minutes=i) for i in range(6)] + [
        event("tie", minutes=4),
        event("undated", minutes=None),
    ]
    beta = [event("b1", minutes=-30), event("b2", minutes=-20)]
    store.save("alpha", alpha, now=T0)
    store.save("beta", beta, now=T0)
    newest = store.search(EventQuery(cluster="alpha", limit=3))

    pruned = store.prune(older_than=T0 - timedelta(days=7), max_per_cluster=3)

    assert pruned == EventPruning(expired=0, over_limit=5)
    assert store.search(EventQuery(cluster="alpha", limit=None)) == newest
    assert [e.name for e in newest] == ["e5", "e4", "tie"]
    assert store.count("beta") == 2  # under the limit: untouched
    assert store.prune(older_than=T0 - timedelta(days=7), max_per_cluster=3) == EventPruning(0, 0)
    with pytest.raises(ValueError, match="max_per_cluster"):
        store.prune(older_than=T0, max_per_cluster=-1)


def test_deleting_a_cluster_deletes_its_events(
    store: EventStore, cluster_store: clusters.ClusterStore
) -> None:
    load(store, RINGS)
    cluster_store.remove("alpha")
    assert store.count("alpha") == 0
    assert store.count() == store.count("beta") == len(RINGS["beta"])

    cluster_store.add(name="alpha", provider="local", desired_state="running", phase="Running")
    assert store.search(EventQuery(cluster="alpha")) == []  # a re-created cluster starts afresh

    assert store.delete_cluster("beta") == len(RINGS["beta"])
    assert store.count() == 0
    assert store.delete_cluster("nosuch") == 0
