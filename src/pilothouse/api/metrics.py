"""``GET /metrics``: the fleet in Prometheus exposition format, for a Prometheus server to scrape.

prometheus-client does the heavy lifting (exposition format, escaping, the
process collector); ``fleet/metrics.py`` decides what is exposed. Every scrape
reads the fleet afresh on the server's event loop (the loop that runs the
inventory watches) and renders it through a registry of its own, so nothing is
kept between scrapes.

Like every route it needs a bearer token with ``clusters:read`` (a ``viewer``
token will do). In the Prometheus scrape configuration::

    authorization:
      type: Bearer
      credentials_file: /etc/prometheus/pilothouse.token
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pilothouse import __version__
from pilothouse.api.auth import get_platform, guarded
from pilothouse.fleet import metrics
from pilothouse.identity.policy import Permission
from pilothouse.platform import Platform

router = APIRouter(tags=["metrics"])
PlatformDep = Annotated[Platform, Depends(get_platform)]


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text exposition"}},
    **guarded(Permission.CLUSTERS_READ),
)
async def prometheus_metrics(platform: PlatformDep) -> Response:
    """Cluster health, API latency, nodes, pods, workloads, SLA and Pilothouse's own process metrics."""
    state = await metrics.read_fleet_state(
        registry=platform.clusters,
        monitor=platform.health,
        inventory=platform.inventory,
        version=__version__,
        now=platform.now(),
    )
    registry = metrics.create_registry(lambda: state)
    return Response(content=generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
