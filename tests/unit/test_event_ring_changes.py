"""What ``EventRing`` remembers as changed for ``fleet.event_log`` to persist."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pilothouse.fleet.inventory import EventRing
from pilothouse.kube import watching
from pilothouse.kube.summaries import EventSummary

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _event(name: str, minute: int, *, count: int = 1) -> EventSummary:
    return EventSummary(
        namespace="shop",
        name=name,
        involved_kind="Pod",
        involved_name="web-0",
        reason="BackOff",
        type="Warning",
        message="Back-off restarting failed container",
        count=count,
        last_timestamp=T0 + timedelta(minutes=minute),
        source="kubelet",
    )


def _names(events: list[EventSummary]) -> list[tuple[str, int]]:
    return sorted((e.name, e.count) for e in events)


def test_upserts_are_drained_once_as_they_are_now() -> None:
    ring = EventRing(capacity=10)
    ring.on_event(watching.Synced((_event("e1", 1), _event("e2", 2)), "1"))
    ring.on_event(watching.Upserted(_event("e1", 3, count=2)))
    assert _names(ring.drain_changed()) == [("e1", 2), ("e2", 1)]
    assert ring.drain_changed() == []

    ring.on_event(watching.Upserted(_event("e2", 4, count=5)))
    ring.on_event(watching.Deleted(_event("e1", 3, count=2)))  # expired in Kubernetes: no change here
    assert _names(ring.drain_changed()) == [("e2", 5)]


def test_a_relist_marks_only_what_changed() -> None:
    ring = EventRing(capacity=10)
    ring.on_event(watching.Synced((_event("e1", 1), _event("e2", 2)), "1"))
    ring.drain_changed()
    ring.on_event(watching.Synced((_event("e1", 1), _event("e2", 5, count=3), _event("e3", 6)), "9"))
    assert _names(ring.drain_changed()) == [("e2", 3), ("e3", 1)]


def test_changes_stay_bounded_by_the_ring() -> None:
    ring = EventRing(capacity=2)
    for minute in range(5):  # nobody drains: only what is still in the ring is remembered
        ring.on_event(watching.Upserted(_event(f"e{minute}", minute)))
    assert _names(ring.drain_changed()) == [("e3", 1), ("e4", 1)]


def test_events_handed_back_are_drained_again_as_they_are_by_then() -> None:
    ring = EventRing(capacity=2)
    ring.on_event(watching.Upserted(_event("e1", 1)))
    ring.on_event(watching.Upserted(_event("e2", 2)))
    failed = ring.drain_changed()  # say their save failed
    ring.on_event(watching.Upserted(_event("e2", 3, count=2)))
    ring.on_event(watching.Upserted(_event("e3", 4)))  # pushes e1 out of the ring
    ring.mark_changed(failed)
    assert _names(ring.drain_changed()) == [("e2", 2), ("e3", 1)]
