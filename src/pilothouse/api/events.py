"""REST route of the fleet's Kubernetes Events (``/api/v1/events``), searched in the store.

The events are persisted by ``fleet.event_log`` from the watch caches and kept
for ``event_retention_days`` (at most ``event_max_per_cluster`` per cluster),
so the history outlives restarts and covers stopped clusters too. Before it
searches, the route makes sure every running cluster is watched (watching
starts on first use) and flushes the latest changes, so an answer includes
the newest events. ``fleet.events`` defines the matching and the order.
``EventOut`` is shared with ``pilothouse events search --json``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from pilothouse.api.auth import get_platform, guarded
from pilothouse.api.capacity import running_clusters, synced_inventories
from pilothouse.fleet import events
from pilothouse.identity.policy import Permission
from pilothouse.platform import Platform

router = APIRouter(tags=["events"])
PlatformDep = Annotated[Platform, Depends(get_platform)]


class EventOut(BaseModel):
    cluster: str
    namespace: str
    name: str
    involved_kind: str
    involved_name: str
    reason: str
    type: str
    message: str
    count: int
    last_timestamp: datetime | None
    source: str

    @classmethod
    def of(cls, found: events.FoundEvent) -> EventOut:
        e = found.event
        return cls(
            cluster=found.cluster,
            namespace=e.namespace,
            name=e.name,
            involved_kind=e.involved_kind,
            involved_name=e.involved_name,
            reason=e.reason,
            type=e.type,
            message=e.message,
            count=e.count,
            last_timestamp=e.last_timestamp,
            source=e.source,
        )


def search(platform: Platform, query: events.EventQuery) -> list[EventOut]:
    """The stored events matching ``query`` (blocking: the store is read)."""
    return [EventOut.of(found) for found in platform.events.search(query)]


@router.get("/api/v1/events", response_model=list[EventOut], **guarded(Permission.CLUSTERS_READ))
async def search_events(
    platform: PlatformDep,
    cluster: Annotated[str | None, Query(description="Only this cluster (default: every cluster).")] = None,
    namespace: str | None = None,
    kind: Annotated[str | None, Query(description="Kind of the involved object, e.g. Deployment.")] = None,
    name: Annotated[str | None, Query(description="Name of the involved object.")] = None,
    reason: str | None = None,
    type_: Annotated[str | None, Query(alias="type", description="Normal or Warning.")] = None,
    since: Annotated[str | None, Query(description="A duration back from now (10m, 2h) or ISO 8601.")] = None,
    until: Annotated[str | None, Query(description="A duration back from now or ISO 8601.")] = None,
    text: Annotated[str | None, Query(description="Case-insensitive text in the message.")] = None,
    limit: Annotated[int, Query(ge=0, le=events.MAX_LIMIT)] = events.DEFAULT_LIMIT,
) -> list[EventOut]:
    """Events of the fleet, newest first."""
    now = platform.now()
    query = events.EventQuery.from_text(
        since=since,
        until=until,
        now=now,
        cluster=cluster,
        namespace=namespace,
        kind=kind,
        name=name,
        reason=reason,
        type=type_,
        text=text,
        limit=limit,
    )
    if cluster is not None:
        platform.clusters.get(cluster)  # NotFound (404) for an unknown cluster
    watched = [running for running in running_clusters(platform) if cluster in (None, running)]
    await synced_inventories(platform, watched)  # a stopped cluster's history is in the store
    await platform.events.flush(now=now)
    return await asyncio.to_thread(search, platform, query)
