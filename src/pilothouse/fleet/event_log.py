"""The fleet's Event log: Kubernetes Events persisted from the watch caches, searched, pruned.

The live inventory (``fleet.inventory``) keeps each watched cluster's recent
Events in an ``EventRing``, which remembers which events changed. ``flush``
drains those changes on the event loop and upserts them into
``store.events.EventStore`` in a worker thread; the ``persist-events`` job of
``reconcile/loop.py`` runs it every ``events_flush_interval_seconds``, and the
API flushes before it searches, so an answer includes the newest events. A
failed save hands its events back to their ring, so the next flush retries
them; the events of a cluster deleted meanwhile are dropped. Events a restart
left unflushed come back when the watches relist (Kubernetes keeps Events an
hour by default).

``search`` reads the store only: the CLI, which watches nothing, finds what
``pilothouse up`` persisted. ``prune`` (the ``prune-events`` job) bounds the
store by age and by count per cluster. Matching and order are those of
``fleet.events``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import structlog

from pilothouse import errors
from pilothouse.fleet import events
from pilothouse.fleet.inventory import EventRing, FleetInventory
from pilothouse.kube.summaries import EventSummary
from pilothouse.store.events import EventPruning, EventStore

log = structlog.get_logger(__name__)


class EventLog:
    """Persists the Events of every cluster ``inventory`` watches into ``store``; see the module
    docstring. Events older than ``retention`` and beyond the newest ``max_per_cluster`` of a
    cluster are pruned."""

    def __init__(
        self, inventory: FleetInventory, store: EventStore, *, retention: timedelta, max_per_cluster: int
    ) -> None:
        if retention <= timedelta(0) or max_per_cluster < 1:
            raise ValueError("the event log needs a positive retention and max_per_cluster")
        self.inventory = inventory
        self.store = store
        self.retention = retention
        self.max_per_cluster = max_per_cluster
        self._flushing = asyncio.Lock()  # one flush at a time, so an older save never lands last

    async def flush(self, *, now: datetime | None = None) -> int:
        """Save the events that changed in every watched cluster since the last flush; return
        how many were saved. A failed save raises after handing every unsaved event back."""
        async with self._flushing:
            moment = now or datetime.now(UTC)
            pending: list[tuple[str, EventRing, list[EventSummary]]] = []
            for name in self.inventory.names():  # drained on the loop, where the watches write
                ring = self.inventory.inventory(name).events
                pending.append((name, ring, ring.drain_changed()))
            saved = clusters = 0
            for index, (cluster, _ring, changed) in enumerate(pending):
                if not changed:
                    continue
                try:
                    saved += await asyncio.to_thread(self.store.save, cluster, changed, now=moment)
                    clusters += 1
                except errors.NotFound:
                    log.info("events.cluster_gone", cluster=cluster, dropped=len(changed))
                except BaseException:  # the store failed, or the flush was cancelled
                    for _, unsaved_ring, unsaved in pending[index:]:
                        unsaved_ring.mark_changed(unsaved)
                    raise
            if saved:
                log.debug("events.flushed", events=saved, clusters=clusters)
            return saved

    def search(self, query: events.EventQuery) -> list[events.FoundEvent]:
        """The stored events matching ``query``, newest first (blocking: the store is read)."""
        return [events.FoundEvent(found.cluster, found) for found in self.store.search(query)]

    async def prune(self, *, now: datetime | None = None) -> EventPruning:
        """Drop events older than the retention and beyond each cluster's count."""
        moment = now or datetime.now(UTC)
        return await asyncio.to_thread(
            self.store.prune, older_than=moment - self.retention, max_per_cluster=self.max_per_cluster
        )
