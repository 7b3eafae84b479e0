"""Watch recovery decisions (backoff, relist vs resume, reading failures) and how the
inventory's caches apply watch events. Pure: plain values, no cluster, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from lightkube import ApiError
from lightkube.models.meta_v1 import Status, StatusDetails

from pilothouse import errors
from pilothouse.fleet.inventory import ClusterInventory, EventRing, KindCache
from pilothouse.kube import watching
from pilothouse.kube.summaries import (
    EventSummary,
    Kind,
    NodeSummary,
    PodSummary,
    WorkloadKind,
    WorkloadSummary,
)
from pilothouse.kube.watching import Recovery
from tests.factories import pod_summary

# ----- backoff ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, 0.5), (1, 1), (2, 2), (3, 4), (4, 8), (5, 15), (6, 15), (100, 15), (-1, 0.5)],
)
def test_backoff_follows_the_schedule_and_repeats_its_last_step(attempt: int, expected: float) -> None:
    assert watching.backoff_delay(attempt, jitter=0.2, rand=lambda: 0.5) == pytest.approx(expected)


@pytest.mark.parametrize("rand", [0.0, 0.25, 0.999999])
@pytest.mark.parametrize("attempt", range(8))
def test_jitter_stays_within_bounds(attempt: int, rand: float) -> None:
    base = watching.DEFAULT_BACKOFF[min(attempt, len(watching.DEFAULT_BACKOFF) - 1)]
    delay = watching.backoff_delay(attempt, jitter=0.2, rand=lambda: rand)
    assert base * 0.8 <= delay <= base * 1.2
    assert delay <= max(watching.DEFAULT_BACKOFF) * 1.2


def test_jitter_spreads_retries() -> None:
    values = iter([0.0, 1.0])
    low = watching.backoff_delay(3, jitter=0.25, rand=lambda: next(values))
    high = watching.backoff_delay(3, jitter=0.25, rand=lambda: next(values))
    assert (low, high) == (3.0, 5.0)


@pytest.mark.parametrize(
    ("retry_after", "expected"), [(None, 1.0), (0, 1.0), (0.2, 1.0), (7, 7.0), (3600, 60.0)]
)
def test_retry_after_is_respected_but_capped(retry_after: float | None, expected: float) -> None:
    delay = watching.backoff_delay(1, jitter=0, retry_after=retry_after, max_retry_after=60)
    assert delay == expected


def test_custom_schedule_and_empty_schedule() -> None:
    assert watching.backoff_delay(9, (1, 2, 3), jitter=0) == 3
    with pytest.raises(ValueError, match="empty"):
        watching.backoff_delay(0, ())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"backoff": ()},
        {"backoff": (1, -1)},
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"server_timeout": (0, 10)},
        {"server_timeout": (10, 5)},
        {"server_timeout": (100, 200)},  # ends after the default inactivity timeout
        {"inactivity_timeout": 0},
        {"chunk_size": 0},
    ],
)
def test_watch_settings_reject_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"backoff|jitter|server_timeout|inactivity_timeout"):
        watching.WatchSettings(**kwargs)  # type: ignore[arg-type]


# ----- relist or resume ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status_code", "resource_version", "expected"),
    [
        (410, "1234", Recovery.RELIST),  # too old: events were lost
        (None, "1234", Recovery.RESUME),  # connection refused, reset, silent stream
        (500, "1234", Recovery.RESUME),
        (503, "1234", Recovery.RESUME),
        (429, "1234", Recovery.RESUME),
        (504, "1234", Recovery.RESUME),  # "too large resource version": the cache is catching up
        (None, None, Recovery.RELIST),  # never listed
        (500, None, Recovery.RELIST),
        (410, None, Recovery.RELIST),
    ],
)
def test_decide_recovery(status_code: int | None, resource_version: str | None, expected: Recovery) -> None:
    assert watching.decide_recovery(status_code, resource_version=resource_version) is expected


_REQUEST = httpx2.Request("GET", "https://127.0.0.1:6443/api/v1/pods?watch=true")


def _response(status: int, **headers: str) -> httpx2.Response:
    return httpx2.Response(status, headers=headers, request=_REQUEST)


def test_status_code_of_an_error_event() -> None:
    expired = ApiError(status=Status(code=410, reason="Expired", message="too old resource version: 5 (9)"))
    assert watching.status_code_of(expired) == 410
    assert watching.decide_recovery(watching.status_code_of(expired), resource_version="5") is Recovery.RELIST


def test_status_code_of_http_answers_and_transport_failures() -> None:
    answered = httpx2.HTTPStatusError("gone", request=_REQUEST, response=_response(410))
    assert watching.status_code_of(answered) == 410
    assert watching.status_code_of(httpx2.ConnectError("refused")) is None
    assert watching.status_code_of(httpx2.RemoteProtocolError("incomplete chunked read")) is None
    assert watching.status_code_of(ApiError(status=Status())) is None


def test_retry_after_from_header_or_status_details() -> None:
    throttled = httpx2.HTTPStatusError(
        "slow down", request=_REQUEST, response=_response(429, **{"Retry-After": "3"})
    )
    assert watching.retry_after_of(throttled) == 3.0
    garbled = httpx2.HTTPStatusError(
        "x", request=_REQUEST, response=_response(429, **{"Retry-After": "soon"})
    )
    assert watching.retry_after_of(garbled) is None
    from_status = ApiError(status=Status(code=429, details=StatusDetails(retryAfterSeconds=7)))
    assert watching.retry_after_of(from_status) == 7.0
    assert watching.retry_after_of(httpx2.ConnectError("refused")) is None


# ----- caches applying watch events ---------------------------------------------------------------


def _node(name: str, *, ready: bool = True, unschedulable: bool = False) -> NodeSummary:
    return NodeSummary(
        name=name,
        ready=ready,
        unschedulable=unschedulable,
        kubelet_version="v1.36.3",
        cpu_millicores=32000,
        memory_bytes=256 * 1024**3,
        pods=110,
        instance_type="kwok.standard",
        conditions=(("Ready", "True" if ready else "False"),),
    )


def _pod(name: str, *, phase: str = "Running", waiting: str = "", namespace: str = "shop") -> PodSummary:
    return pod_summary(
        name,
        phase=phase,
        waiting=waiting,
        namespace=namespace,
        node="n1",
        owner_name="web-1",
        cpu_request_millicores=100,
        memory_request_bytes=1024,
    )


def _event(name: str, minute: int, *, count: int = 1) -> EventSummary:
    return EventSummary(
        namespace="shop",
        name=name,
        involved_kind="Deployment",
        involved_name="web",
        reason="ScalingReplicaSet",
        type="Normal",
        message="scaled",
        count=count,
        last_timestamp=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minute),
        source="deployment-controller",
    )


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_synced_replaces_the_whole_set_so_changes_missed_while_away_are_applied() -> None:
    clock = _Clock()
    cache: KindCache[PodSummary] = KindCache(Kind.PODS, clock=clock)
    cache.on_event(watching.Synced((_pod("a"), _pod("b")), "10"))
    cache.on_event(watching.Upserted(_pod("c")))
    clock.now = 200.0
    # while disconnected, "a" was deleted and "b" changed: the relist carries that
    cache.on_event(watching.Synced((_pod("b", phase="Failed"), _pod("c")), "50"))
    assert sorted(cache.items) == [("shop", "b"), ("shop", "c")]
    assert cache.items["shop", "b"].phase == "Failed"
    state = cache.state()
    assert (state.synced, state.objects, state.last_sync_at, state.last_event_at) == (True, 2, 200.0, 200.0)


def test_upserts_deletes_and_bookmarks() -> None:
    clock = _Clock()
    cache: KindCache[NodeSummary] = KindCache(Kind.NODES, clock=clock)
    assert not cache.state().synced
    cache.on_event(watching.Synced((_node("n1"),), "1"))
    cache.on_event(watching.Upserted(_node("n1", unschedulable=True)))
    cache.on_event(watching.Upserted(_node("n2")))
    cache.on_event(watching.Deleted(_node("n2")))
    cache.on_event(watching.Deleted(_node("never-seen")))  # harmless
    assert list(cache.items.values()) == [_node("n1", unschedulable=True)]
    clock.now = 160.0
    cache.on_event(watching.Bookmark("99"))
    assert cache.state().last_event_at == 160.0
    assert cache.state().age(170.0) == 10.0
    assert cache.state().last_sync_at == 100.0


def test_connection_state_follows_the_watch() -> None:
    cache: KindCache[NodeSummary] = KindCache(Kind.NODES)
    cache.on_connected()
    assert cache.state().connected
    cache.on_disconnected(errors.ClusterUnreachable("cannot connect to https://127.0.0.1:1"))
    state = cache.state()
    assert not state.connected
    assert state.error == "cannot connect to https://127.0.0.1:1"
    cache.on_connected()
    assert (cache.state().connected, cache.state().error) == (True, None)


def test_event_ring_is_bounded_deduplicated_and_keeps_history() -> None:
    ring = EventRing(capacity=3)
    ring.on_event(watching.Synced((_event("e2", 2), _event("e1", 1)), "1"))
    ring.on_event(watching.Upserted(_event("e3", 3)))
    ring.on_event(watching.Upserted(_event("e1", 4, count=2)))  # repeated: moves to the newest end
    assert list(ring.items) == [("shop", "e2"), ("shop", "e3"), ("shop", "e1")]
    ring.on_event(watching.Upserted(_event("e4", 5)))
    assert list(ring.items) == [("shop", "e3"), ("shop", "e1"), ("shop", "e4")]
    ring.on_event(watching.Deleted(_event("e3", 3)))  # expired in Kubernetes: kept here
    assert ("shop", "e3") in ring.items
    ring.on_event(watching.Synced((_event("e5", 6),), "9"))  # a relist merges
    assert list(ring.items) == [("shop", "e1"), ("shop", "e4"), ("shop", "e5")]
    assert ring.items["shop", "e1"].count == 2
    with pytest.raises(ValueError, match="capacity"):
        EventRing(capacity=0)


def _workload(name: str, *, desired: int, ready: int) -> WorkloadSummary:
    return WorkloadSummary(
        namespace="shop",
        name=name,
        kind=WorkloadKind.DEPLOYMENT,
        desired=desired,
        ready=ready,
        available=ready,
        updated=desired,
        observed=True,
    )


def test_snapshot_counts_and_is_immutable() -> None:
    inventory = ClusterInventory("c1", kinds=[Kind.NODES, Kind.PODS, Kind.DEPLOYMENTS, Kind.EVENTS])
    inventory.nodes.on_event(
        watching.Synced((_node("n2", ready=False), _node("n1", unschedulable=True), _node("n3")), "1")
    )
    inventory.pods.on_event(
        watching.Synced(
            (
                _pod("a"),
                _pod("b"),
                _pod("c", phase="Pending"),
                _pod("d", waiting="CrashLoopBackOff"),
                _pod("e", namespace="other"),
            ),
            "1",
        )
    )
    inventory.deployments.on_event(
        watching.Synced((_workload("web", desired=3, ready=3), _workload("api", desired=2, ready=1)), "1")
    )
    inventory.events.on_event(watching.Synced((_event("e1", 1), _event("e2", 7)), "1"))
    snapshot = inventory.snapshot()

    assert [n.name for n in snapshot.nodes] == ["n1", "n2", "n3"]
    assert (snapshot.nodes_total, snapshot.nodes_ready, snapshot.nodes_unschedulable) == (3, 2, 1)
    assert dict(snapshot.kubelet_versions) == {"v1.36.3": 3}
    assert dict(snapshot.pods_by_phase) == {"Pending": 1, "Running": 4}
    assert (snapshot.pods_total, snapshot.pods_ready) == (5, 3)
    assert dict(snapshot.pods_waiting) == {"CrashLoopBackOff": 1}
    assert [w.name for w in snapshot.workloads] == ["api", "web"]
    assert snapshot.workloads_available == 1
    assert snapshot.workload(WorkloadKind.DEPLOYMENT, "shop", "web") == _workload("web", desired=3, ready=3)
    assert snapshot.workload(WorkloadKind.STATEFULSET, "shop", "web") is None
    assert snapshot.last_event_at == datetime(2026, 1, 1, 0, 7, tzinfo=UTC)
    assert set(snapshot.watches) == {Kind.NODES, Kind.PODS, Kind.DEPLOYMENTS, Kind.EVENTS}
    assert snapshot.synced
    assert not snapshot.connected  # nothing said connected yet
    assert [p.name for p in inventory.pods_in("other")] == ["e"]
    assert [e.name for e in inventory.events_about(kind="Deployment", name="web")] == ["e1", "e2"]

    with pytest.raises(TypeError):
        snapshot.pods_by_phase["Running"] = 0  # type: ignore[index]
    with pytest.raises(AttributeError):
        snapshot.nodes_total = 0  # type: ignore[misc]
    inventory.pods.on_event(watching.Deleted(_pod("a")))
    assert snapshot.pods_total == 5, "a snapshot does not follow later changes"


async def test_wait_synced_waits_for_every_watched_kind() -> None:
    inventory = ClusterInventory("c1", kinds=[Kind.NODES, Kind.PODS])
    inventory.nodes.on_event(watching.Synced((_node("n1"),), "1"))
    with pytest.raises(TimeoutError):
        await inventory.wait_synced(0.05)
    inventory.namespaces.on_event(watching.Synced((), "1"))  # not watched: irrelevant
    inventory.pods.on_event(watching.Synced((), "1"))
    snapshot = await inventory.wait_synced(0.05)
    assert snapshot.synced
    assert snapshot.nodes_total == 1


def test_mark_disconnected_reaches_every_watched_kind() -> None:
    inventory = ClusterInventory("c1", kinds=[Kind.NODES, Kind.PODS])
    for cache in inventory.caches().values():
        cache.on_connected()
    inventory.mark_disconnected(errors.KubeconfigInvalid("bad CA"))
    snapshot = inventory.snapshot()
    assert snapshot.disconnected_kinds == (Kind.NODES, Kind.PODS)
    assert snapshot.watches[Kind.PODS].error == "bad CA"
    assert inventory.namespaces.connected, "kinds not watched are left alone"
