"""Fleet change detection and fan-out, on plain data."""

from __future__ import annotations

import asyncio

from pilothouse.fleet import changes
from pilothouse.fleet.changes import ChangeFeed, ClusterState


def state(name: str, **fields: object) -> ClusterState:
    return ClusterState(cluster=name, phase=str(fields.pop("phase", "Running")), **fields)  # type: ignore[arg-type]


def test_diff_names_added_changed_and_deleted_clusters() -> None:
    old = {"a": state("a", up=True), "b": state("b", up=True)}
    new = {"a": state("a", up=False), "c": state("c")}
    found = {c.cluster: c for c in changes.diff(old, new)}
    assert found["a"].fields == ("up",)
    assert found["b"].state is None
    assert found["b"].to_dict()["deleted"] is True
    assert found["c"].fields == ("added",)
    assert changes.diff(new, new) == []


def test_to_dict_is_json_friendly() -> None:
    change = changes.Change(
        "a",
        ("workloads",),
        state("a", pods_by_phase=(("Running", 3),), workloads=(("Deployment/d/w", 1, 2),)),
    )
    body = change.to_dict()
    assert body["state"]["pods_by_phase"] == {"Running": 3}
    assert body["state"]["workloads"] == [{"workload": "Deployment/d/w", "ready": 1, "desired": 2}]


async def test_subscribers_get_the_current_state_then_changes() -> None:
    feed = ChangeFeed()
    feed.publish({"a": state("a", up=True)})
    async with feed.subscribe() as queue:
        assert feed.subscribers == 1
        first = queue.get_nowait()
        assert first.fields == ("snapshot",)
        feed.publish({"a": state("a", up=False)})
        assert queue.get_nowait().fields == ("up",)
    assert feed.subscribers == 0


async def test_a_slow_subscriber_loses_its_oldest_changes_only() -> None:
    feed = ChangeFeed()
    async with feed.subscribe() as slow, feed.subscribe() as fast:
        for i in range(changes.QUEUE_SIZE + 10):
            feed.publish({"a": state("a", nodes_ready=i)})
            fast.get_nowait()
        assert slow.qsize() == changes.QUEUE_SIZE
        assert slow.get_nowait().state.nodes_ready == 10
        assert fast.empty()
    await asyncio.sleep(0)
