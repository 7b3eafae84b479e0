"""The inventory through the API, the CLI and the background jobs, on the real shared cluster."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from pilothouse.api.app import create_app
from pilothouse.platform import Platform
from pilothouse.reconcile.loop import jobs_of
from pilothouse.store.clusters import ClusterRecord
from tests.conftest import SHARED_CLUSTER, SHARED_NODES
from tests.integration.api_server import serving

PILOTHOUSE = str(Path(sys.executable).with_name("pilothouse"))


def test_api_inventory_of_the_shared_cluster(platform: Platform, shared_cluster: ClusterRecord) -> None:
    token, _ = platform.tokens.issue("inventory-viewer", ("viewer",))
    with serving(create_app(platform, reconcile=False)) as url:
        response = httpx.get(
            f"{url}/api/v1/clusters/{SHARED_CLUSTER}/inventory", headers={"Authorization": f"Bearer {token}"}
        )
        missing = httpx.get(
            f"{url}/api/v1/clusters/nosuch/inventory", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["synced"] is True
    assert body["nodes_total"] == SHARED_NODES
    assert body["nodes_ready"] == SHARED_NODES
    assert body["kubelet_versions"] == {f"v{platform.settings.kubernetes_version}": SHARED_NODES}
    assert body["namespaces"] >= 4
    assert set(body["watches"]) >= {"nodes", "pods", "deployments", "events"}
    assert missing.status_code == 404


def test_cli_inventory(pilothouse_env: dict[str, str], shared_cluster: ClusterRecord) -> None:
    shown = subprocess.run(
        [PILOTHOUSE, "cluster", "inventory", SHARED_CLUSTER, "--json"],
        env={**os.environ, **pilothouse_env},
        capture_output=True,
        text=True,
        check=True,
    )
    body = json.loads(shown.stdout)
    assert body["nodes_ready"] == SHARED_NODES
    assert body["connected"] is True


async def test_the_inventory_job_watches_running_clusters_only(
    platform: Platform, shared_cluster: ClusterRecord
) -> None:
    (job,) = [j for j in jobs_of(platform) if j.name == "inventory"]
    await job.run()
    try:
        assert SHARED_CLUSTER in platform.inventory.names()
        snapshot = await platform.inventory.wait_synced(SHARED_CLUSTER, timeout=30)
        assert snapshot.nodes_ready == SHARED_NODES
        # a second pass changes nothing
        await job.run()
        await asyncio.sleep(0)
        assert platform.inventory.names().count(SHARED_CLUSTER) == 1
    finally:
        await platform.inventory.stop()
    assert platform.inventory.names() == []
