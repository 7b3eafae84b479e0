"""Searching cached Kubernetes Events (``fleet.events``), from plain summaries."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse import errors
from pilothouse.fleet import events
from pilothouse.fleet.events import EventQuery
from pilothouse.kube.summaries import EventSummary

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def event(
    name: str,
    *,
    minutes: int | None = 0,
    namespace: str = "web",
    kind: str = "Deployment",
    obj: str = "frontend",
    reason: str = "ScalingReplicaSet",
    type_: str = "Normal",
    message: str = "Scaled up replica set frontend-abc to 3",
) -> EventSummary:
    return EventSummary(
        namespace=namespace,
        name=name,
        involved_kind=kind,
        involved_name=obj,
        reason=reason,
        type=type_,
        message=message,
        count=1,
        last_timestamp=None if minutes is None else T0 + timedelta(minutes=minutes),
        source="deployment-controller",
    )


RINGS: dict[str, list[EventSummary]] = {
    "alpha": [
        event("e1", minutes=0),
        event("e2", minutes=5, reason="BackOff", type_="Warning", kind="Pod", obj="frontend-abc-1", message="Back-off restarting failed container"),
        event("e3", minutes=10, namespace="db", kind="StatefulSet", obj="pg", reason="SuccessfulCreate", message="create Pod pg-0"),
        event("e4", minutes=None, reason="Started", kind="Pod", obj="frontend-abc-2", message="Started container app"),
    ],
    "beta": [
        event("e1", minutes=7, message="Scaled down replica set frontend-abc to 1"),
        event("e5", minutes=2, reason="FailedScheduling", type_="Warning", kind="Pod", obj="big", message="0/3 nodes are available: Insufficient cpu"),
    ],
}  # fmt: skip


def names(found: list[events.FoundEvent]) -> list[str]:
    return [f"{f.cluster}/{f.event.name}" for f in found]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (EventQuery(), ["alpha/e3", "beta/e1", "alpha/e2", "beta/e5", "alpha/e1", "alpha/e4"]),
        (EventQuery(cluster="beta"), ["beta/e1", "beta/e5"]),
        (EventQuery(cluster="nosuch"), []),
        (EventQuery(namespace="db"), ["alpha/e3"]),
        (EventQuery(kind="deployment"), ["beta/e1", "alpha/e1"]),  # kind: case-insensitive
        (EventQuery(name="frontend"), ["beta/e1", "alpha/e1"]),
        (EventQuery(name="Frontend"), []),  # names are exact
        (EventQuery(reason="ScalingReplicaSet"), ["beta/e1", "alpha/e1"]),
        (EventQuery(reason="scalingreplicaset", cluster="alpha"), ["alpha/e1"]),
        (EventQuery(type="Warning"), ["alpha/e2", "beta/e5"]),
        (EventQuery(type="warning", namespace="web", cluster="alpha"), ["alpha/e2"]),
        (EventQuery(text="INSUFFICIENT"), ["beta/e5"]),
        (EventQuery(text="replica set frontend"), ["beta/e1", "alpha/e1"]),
        (EventQuery(since=T0 + timedelta(minutes=5)), ["alpha/e3", "beta/e1", "alpha/e2"]),  # inclusive
        (EventQuery(until=T0 + timedelta(minutes=2)), ["beta/e5", "alpha/e1"]),
        (EventQuery(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=7)), ["beta/e1", "alpha/e2", "beta/e5"]),
        (EventQuery(limit=2), ["alpha/e3", "beta/e1"]),
        (EventQuery(limit=0), []),
        (EventQuery(limit=None), ["alpha/e3", "beta/e1", "alpha/e2", "beta/e5", "alpha/e1", "alpha/e4"]),
    ],
)  # fmt: skip
def test_search(query: EventQuery, expected: list[str]) -> None:
    assert names(events.search_events(RINGS, query)) == expected


def test_equal_stamps_are_ordered_by_cluster_namespace_and_name() -> None:
    rings = {
        "b": [event("z"), event("a", namespace="zz")],
        "a": [event("y"), event("x", namespace="aa")],
    }
    assert names(events.search_events(rings, EventQuery())) == ["a/x", "a/y", "b/z", "b/a"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", T0 - timedelta(seconds=30)),
        ("10m", T0 - timedelta(minutes=10)),
        (" 2h ", T0 - timedelta(hours=2)),
        ("1d", T0 - timedelta(days=1)),
        ("0s", T0),
        ("2026-11-25T11:00:00+00:00", T0 - timedelta(hours=1)),
        ("2026-11-25T11:00:00Z", T0 - timedelta(hours=1)),
        ("2026-11-25T11:00:00", T0 - timedelta(hours=1)),  # no zone: UTC
        ("2026-11-25T13:00:00+02:00", T0 - timedelta(hours=1)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert events.parse_time(text, now=T0) == expected


@pytest.mark.parametrize("text", ["", "10", "10x", "-5m", "1.5h", "yesterday"])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(errors.InvalidInput, match="not a time"):
        events.parse_time(text, now=T0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": -1},
        {"limit": events.MAX_LIMIT + 1},
        {"since": datetime(2026, 1, 1)},  # naive: refused
        {"since": T0, "until": T0 - timedelta(seconds=1)},
    ],
)
def test_bad_queries_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(errors.InvalidInput):
        EventQuery(**kwargs)  # type: ignore[arg-type]


event_strategy = st.builds(
    event,
    name=st.text("abc", min_size=1, max_size=3),
    minutes=st.none() | st.integers(-100, 100),
    namespace=st.sampled_from(["web", "db"]),
    kind=st.sampled_from(["Pod", "Deployment"]),
    obj=st.sampled_from(["frontend", "pg"]),
    reason=st.sampled_from(["ScalingReplicaSet", "BackOff"]),
    type_=st.sampled_from(["Normal", "Warning"]),
    message=st.sampled_from(["Scaled up", "Back-off restarting", ""]),
)
query_strategy = st.builds(
    EventQuery,
    cluster=st.none() | st.sampled_from(["a", "b"]),
    namespace=st.none() | st.sampled_from(["web", "db"]),
    kind=st.none() | st.sampled_from(["pod", "Deployment"]),
    reason=st.none() | st.sampled_from(["backoff", "ScalingReplicaSet"]),
    type=st.none() | st.sampled_from(["Normal", "WARNING"]),
    since=st.none() | st.integers(-100, 0).map(lambda m: T0 + timedelta(minutes=m)),
    until=st.none() | st.integers(1, 100).map(lambda m: T0 + timedelta(minutes=m)),
    text=st.none() | st.sampled_from(["up", "BACK"]),
    limit=st.none() | st.integers(0, 10),
)


@settings(max_examples=300, deadline=None)
@given(
    rings=st.fixed_dictionaries({"a": st.lists(event_strategy, max_size=15), "b": st.lists(event_strategy, max_size=15)}),
    query=query_strategy,
)  # fmt: skip
def test_search_is_the_newest_matches(rings: dict[str, list[EventSummary]], query: EventQuery) -> None:
    found = events.search_events(rings, query)
    matching = [(c, e) for c, ring in rings.items() for e in ring if query.matches(c, e)]
    assert all(query.matches(f.cluster, f.event) for f in found)
    assert len(found) == (len(matching) if query.limit is None else min(query.limit, len(matching)))
    stamps = [f.event.last_timestamp for f in found]
    dated = [s for s in stamps if s is not None]
    assert dated == sorted(dated, reverse=True)
    assert stamps == [*dated, *[None] * (len(stamps) - len(dated))]  # undated last
    if query.limit is not None:  # the limit cuts the full answer, it does not change it
        assert found == events.search_events(rings, dataclasses.replace(query, limit=None))[: query.limit]
