"""A real HA local cluster: 3 etcd members, 3 API servers behind HAProxy.

Needs a cluster of its own (it kills members), so it is ``own_cluster`` and ``slow``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Node

from pilothouse import errors
from pilothouse.binaries.cache import BinaryCache
from pilothouse.fleet import requests
from pilothouse.kube import client as kube_client
from pilothouse.kube import nodes as kube_nodes
from pilothouse.kube.credentials import ClusterCredentials
from pilothouse.platform import Platform
from pilothouse.providers.local.provider import LocalRuntime
from pilothouse.store.clusters import ClusterRecord

pytestmark = [pytest.mark.slow, pytest.mark.own_cluster]
HA = "ha"


@pytest.fixture(scope="module")
async def ha_cluster(platform: Platform, installed_binaries: BinaryCache) -> AsyncIterator[ClusterRecord]:
    record = await platform.clusters.create_local(
        requests.parse(requests.CreateLocalCluster, name=HA, nodes=10, control_planes=3)
    )
    yield record
    if platform.clusters.store.find(HA) is not None:
        await platform.clusters.delete(HA)


async def test_ha_topology(platform: Platform, ha_cluster: ClusterRecord) -> None:
    runtime = LocalRuntime.from_dict(ha_cluster.runtime)
    names = set(runtime.processes)
    assert {f"etcd-{i}" for i in range(3)} <= names
    assert {f"kube-apiserver-{i}" for i in range(3)} <= names
    assert "haproxy" in names
    assert ha_cluster.server_url == f"https://127.0.0.1:{runtime.ports.load_balancer}"
    apiserver_hosts = {h for h, p in runtime.ports.all_ports() if p == runtime.ports.apiserver}
    assert apiserver_hosts == {"127.0.0.1", "127.0.0.2", "127.0.0.3"}
    creds = platform.clusters.credentials(HA)
    async with kube_client.open_client(creds) as client:
        ready, total = await kube_nodes.count_ready(client)
        assert (ready, total) == (10, 10)


async def _request_once(creds: ClusterCredentials, index: int) -> str | None:
    """One read and one write through the load balancer, on a fresh connection."""
    try:
        async with kube_client.open_client(creds, timeout=5.0) as client:
            await client.get(Node, "kwok-node-000")
            await client.apply(
                ConfigMap(
                    metadata=ObjectMeta(name=f"probe-{index % 5}", namespace="default"),
                    data={"i": str(index)},
                )
            )
        return None
    except Exception as exc:  # the failure itself is the measurement
        return f"{type(exc).__name__}: {exc}"


async def test_api_keeps_serving_with_one_apiserver_and_one_etcd_member_killed(
    platform: Platform, ha_cluster: ClusterRecord
) -> None:
    creds = platform.clusters.credentials(HA)
    runtime = LocalRuntime.from_dict(platform.clusters.get(HA).runtime)
    assert await _request_once(creds, -1) is None

    platform.clusters.local.kill(runtime, "kube-apiserver-0")
    platform.clusters.local.kill(runtime, "etcd-0")
    killed_at = asyncio.get_running_loop().time()

    # HAProxy health checks (1 s interval, 2 failures) take a killed backend out within ~3 s.
    # Requests on fresh connections after that window must all succeed.
    await asyncio.sleep(3.0)
    results = [await _request_once(creds, i) for i in range(40)]
    elapsed = asyncio.get_running_loop().time() - killed_at
    failures = [r for r in results if r is not None]
    assert failures == [], f"{len(failures)} of {len(results)} requests failed after the kill"
    assert elapsed > 3.0

    # The dead API server really is dead: its own port refuses connections.
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", runtime.ports.apiserver)) != 0
    async with kube_client.open_client(creds) as client:
        stored = await client.get(ConfigMap, "probe-4", namespace="default")
        assert stored.data == {"i": "39"}

    # The reconciler brings the killed members back, and the cluster is whole again.
    assert await platform.clusters.reconcile_local() == [HA]
    assert all(platform.clusters.view(HA).processes.values())


async def test_deleting_the_ha_cluster_leaves_no_process_or_port(
    platform: Platform, ha_cluster: ClusterRecord
) -> None:
    runtime = LocalRuntime.from_dict(platform.clusters.get(HA).runtime)
    pids = [r.pid for r in runtime.processes.values()]
    pairs = runtime.ports.all_ports()

    await platform.clusters.delete(HA)

    import psutil

    alive = [
        pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert alive == []
    listening = [(h, p) for h, p in pairs if socket.socket().connect_ex((h, p)) == 0]
    assert listening == []
    assert not (platform.settings.clusters_dir / HA).exists()
    with pytest.raises(errors.NotFound):
        platform.clusters.get(HA)
