"""Server-sent events of fleet changes (``GET /api/v1/fleet/stream``), for dashboards.

Each event is ``event: cluster`` with a JSON ``data`` line; a comment line
every 15 s keeps idle connections (and proxies) alive. The first events are
the current state of every cluster, so a client needs no separate fetch.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from pilothouse.api.auth import get_platform, guarded
from pilothouse.identity.policy import Permission
from pilothouse.platform import Platform

router = APIRouter(tags=["fleet"])
PlatformDep = Annotated[Platform, Depends(get_platform)]
KEEPALIVE_SECONDS = 15.0


@router.get(
    "/api/v1/fleet/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
    **guarded(Permission.CLUSTERS_READ),
)
async def fleet_stream(platform: PlatformDep) -> StreamingResponse:
    """Changes of every cluster's phase, health, nodes, pods and workloads, as they happen."""

    async def events() -> AsyncIterator[str]:
        async with platform.changes.subscribe() as queue:
            while True:
                try:
                    change = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: cluster\ndata: {json.dumps(change.to_dict(), separators=(',', ':'))}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
