"""The running totals of ``fleet.inventory.PodCache`` always equal a recount of its pods.

Random sequences of watch events (lists, upserts of new and changed pods,
deletions, including of pods never seen) drive a real ``ClusterInventory``;
after every event the snapshot's counts, the requests total and the index of
waiting pods are compared with what a full scan of the cache gives.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse.fleet import capacity
from pilothouse.fleet.inventory import ClusterInventory
from pilothouse.kube import watching
from pilothouse.kube.summaries import PodSummary
from tests.factories import pod_summary

NAMES = [f"p{i}" for i in range(6)]

pods = st.builds(
    pod_summary,
    st.sampled_from(NAMES),
    phase=st.sampled_from(["Pending", "Running", "Succeeded", "Failed"]),
    waiting=st.sampled_from(["", "", "CrashLoopBackOff", "ImagePullBackOff"]),
    namespace=st.sampled_from(["a", "b"]),
    node=st.sampled_from(["", "n0", "n1"]),
    cpu_request_millicores=st.integers(0, 4000),
    memory_request_bytes=st.integers(0, 1 << 34),
)
events = st.one_of(
    st.builds(
        lambda objs: watching.Synced(objects=tuple(objs), resource_version="1"), st.lists(pods, max_size=8)
    ),
    st.builds(lambda p: watching.Upserted(obj=p), pods),
    st.builds(lambda p: watching.Deleted(obj=p), pods),
)


def recount(items: list[PodSummary]) -> tuple[object, ...]:
    held = [p for p in items if capacity.holds_allocatable(p)]
    return (
        len(items),
        sum(p.ready for p in items),
        dict(Counter(p.phase for p in items)),
        dict(Counter(p.waiting_reason for p in items if p.waiting_reason)),
        capacity.Resources(
            sum(p.cpu_request_millicores for p in held), sum(p.memory_request_bytes for p in held)
        ),
        sorted(p.key for p in items if p.waiting_reason == "CrashLoopBackOff"),
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(events, max_size=40))
def test_running_totals_match_a_recount_after_every_event(
    sequence: list[watching.WatchEvent[PodSummary]],
) -> None:
    inventory = ClusterInventory("alpha", clock=lambda: 0.0)
    for event in sequence:
        inventory.pods.on_event(event)
        snap = inventory.snapshot()
        running = (
            snap.pods_total,
            snap.pods_ready,
            dict(snap.pods_by_phase),
            dict(snap.pods_waiting),
            snap.requested,
            sorted(p.key for p in inventory.pods_waiting("CrashLoopBackOff")),
        )
        assert running == recount(inventory.pods_in())
