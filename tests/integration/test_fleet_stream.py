"""The server-sent-events stream of fleet changes, with every background job running."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import Container, PodSpec, PodTemplateSpec
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apps_v1 import Deployment

from pilothouse.api.app import create_app
from pilothouse.kube import client as kube_client
from pilothouse.kube.credentials import ClusterCredentials
from pilothouse.platform import Platform
from pilothouse.settings import Settings
from pilothouse.store.clusters import ClusterRecord
from tests.conftest import SHARED_CLUSTER
from tests.integration.api_server import serving


def _events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield json.loads(line.removeprefix("data: "))


def _deployment(name: str, replicas: int) -> Deployment:
    labels = {"app": name}
    return Deployment(
        metadata=ObjectMeta(name=name, namespace="default"),
        spec=DeploymentSpec(
            replicas=replicas,
            selector=LabelSelector(matchLabels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels),
                spec=PodSpec(containers=[Container(name="c", image="registry.example/c:1")]),
            ),
        ),
    )


def test_stream_starts_with_the_fleet_and_follows_a_scale_up(
    settings: Settings, platform: Platform, shared_cluster: ClusterRecord
) -> None:
    server_platform = Platform.open(settings)  # its own caches and feed, like a separate `pilothouse up`
    token, _ = platform.tokens.issue("stream-viewer", ("viewer",))
    creds = platform.clusters.credentials(SHARED_CLUSTER)
    name = "streamed"
    try:
        with (
            serving(create_app(server_platform, reconcile=True)) as url,
            httpx.stream(
                "GET", f"{url}/api/v1/fleet/stream", headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = _events(response)
            deadline = time.monotonic() + 30
            first = next(events)
            while not (first.get("cluster") == SHARED_CLUSTER and first["state"]["nodes_ready"]):
                assert time.monotonic() < deadline, "the shared cluster's synced state never came"
                first = next(events)
            assert first["state"]["nodes_total"] == 20

            asyncio.run(_create(creds, _deployment(name, 4)))
            created_at = time.monotonic()
            for event in events:
                workloads = event.get("state", {}).get("workloads", [])
                mine = [w for w in workloads if w["workload"] == f"Deployment/default/{name}"]
                if mine and mine[0]["ready"] == 4:
                    break
                assert time.monotonic() - created_at < 30, "the scale-up never reached the stream"
            latency = time.monotonic() - created_at
            assert latency < 30
    finally:
        asyncio.run(_delete(creds, name))
        server_platform.close()


async def _create(creds: ClusterCredentials, deployment: Deployment) -> None:
    async with kube_client.open_client(creds) as client:
        await client.create(deployment)


async def _delete(creds: ClusterCredentials, name: str) -> None:
    async with kube_client.open_client(creds) as client:
        await client.delete(Deployment, name, namespace="default")
