"""Live fleet changes for dashboards: a compact state per cluster, diffed and broadcast.

``summarize`` (pure) reduces what Pilothouse knows of each cluster — its record,
latest health probe and inventory snapshot — to a small ``ClusterState``;
``diff`` (pure) names what changed between two summaries; ``ChangeFeed``
broadcasts changes to subscribers (the API's server-sent-events stream). Each
subscriber has a bounded queue: a slow client loses its oldest changes, never
slows the feed or the other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pilothouse.fleet.health import ClusterHealth
from pilothouse.fleet.inventory import InventorySnapshot
from pilothouse.store.clusters import ClusterRecord

QUEUE_SIZE = 1000


@dataclass(frozen=True)
class ClusterState:
    cluster: str
    phase: str
    up: bool | None = None
    nodes_ready: int | None = None
    nodes_total: int | None = None
    pods_by_phase: tuple[tuple[str, int], ...] = ()
    workloads: tuple[tuple[str, int, int], ...] = ()  # ("Deployment/ns/name", ready, desired)


@dataclass(frozen=True)
class Change:
    """One cluster's state changed (``state`` None: the cluster is gone)."""

    cluster: str
    fields: tuple[str, ...]
    state: ClusterState | None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"cluster": self.cluster, "changed": list(self.fields)}
        if self.state is not None:
            state = asdict(self.state)
            state["pods_by_phase"] = dict(self.state.pods_by_phase)
            state["workloads"] = [
                {"workload": name, "ready": ready, "desired": desired}
                for name, ready, desired in self.state.workloads
            ]
            body["state"] = state
        else:
            body["deleted"] = True
        return body


def summarize(
    records: list[ClusterRecord],
    health: Mapping[str, ClusterHealth],
    snapshots: Mapping[str, InventorySnapshot],
) -> dict[str, ClusterState]:
    states = {}
    for record in records:
        probe = health.get(record.name)
        snap = snapshots.get(record.name)
        states[record.name] = ClusterState(
            cluster=record.name,
            phase=record.phase,
            up=probe.up if probe is not None else None,
            nodes_ready=snap.nodes_ready if snap is not None and snap.synced else None,
            nodes_total=snap.nodes_total if snap is not None and snap.synced else None,
            pods_by_phase=tuple(sorted(snap.pods_by_phase.items()))
            if snap is not None and snap.synced
            else (),
            workloads=tuple(
                sorted((f"{w.kind}/{w.namespace}/{w.name}", w.ready, w.desired) for w in snap.workloads)
            )
            if snap is not None and snap.synced
            else (),
        )
    return states


def diff(old: Mapping[str, ClusterState], new: Mapping[str, ClusterState]) -> list[Change]:
    changes = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if after is None:
            changes.append(Change(name, ("deleted",), None))
        elif before is None:
            changes.append(Change(name, ("added",), after))
        elif before != after:
            fields = tuple(
                key
                for key, value in asdict(after).items()
                if asdict(before)[key] != value and key != "cluster"
            )
            changes.append(Change(name, fields, after))
    return changes


@dataclass
class ChangeFeed:
    """Fan-out of changes to any number of subscribers."""

    current: dict[str, ClusterState] = field(default_factory=dict)
    _subscribers: set[asyncio.Queue[Change]] = field(default_factory=set)

    def publish(self, new: Mapping[str, ClusterState]) -> list[Change]:
        changes = diff(self.current, new)
        self.current = dict(new)
        for queue in self._subscribers:
            for change in changes:
                if queue.full():
                    with contextlib.suppress(asyncio.QueueEmpty):
                        queue.get_nowait()  # drop the oldest for this slow subscriber
                queue.put_nowait(change)
        return changes

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Change]]:
        """A queue that first holds the current state of every cluster, then every change."""
        queue: asyncio.Queue[Change] = asyncio.Queue(maxsize=QUEUE_SIZE)
        for name, state in sorted(self.current.items()):
            queue.put_nowait(Change(name, ("snapshot",), state))
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
