"""The live inventory against real clusters: it syncs, follows changes within seconds,
restarts a crashed watch, and survives an API server outage without missing a change
while other clusters keep updating."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import psutil
import pytest
import structlog
from lightkube import AsyncClient
from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import Container, PodSpec, PodTemplateSpec
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace, Node, Pod
from lightkube.types import PatchType

from pilothouse import errors
from pilothouse.binaries.cache import BinaryCache
from pilothouse.fleet import requests
from pilothouse.fleet.inventory import ClusterInventory, FleetInventory, InventorySnapshot
from pilothouse.kube import client as kube_client
from pilothouse.kube import summaries, watching
from pilothouse.kube.summaries import Kind, NamespaceSummary, PodSummary, WorkloadKind
from pilothouse.platform import Platform
from pilothouse.providers.local.provider import LocalRuntime
from pilothouse.store.clusters import ClusterRecord
from tests.conftest import SHARED_CLUSTER, SHARED_NODES
from tests.integration.kube_helpers import eventually

T = TypeVar("T")
NAMESPACE = "inventory-e2e"


async def _until(read: Callable[[], T], accept: Callable[[T], bool], *, timeout: float = 30.0) -> T:
    """Poll a synchronous cache read until it satisfies ``accept`` (fails with the last value)."""

    async def probe() -> T:
        return read()

    return await eventually(probe, accept, timeout=timeout, interval=0.1)


def _deployment(name: str, replicas: int, namespace: str = NAMESPACE) -> Deployment:
    labels: dict[str, Any] = {"app": name}
    return Deployment(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=DeploymentSpec(
            replicas=replicas,
            selector=LabelSelector(matchLabels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels),
                spec=PodSpec(containers=[Container(name="app", image="registry.example/app:1.0")]),
            ),
        ),
    )


def _running(inventory: ClusterInventory, namespace: str, prefix: str) -> list[PodSummary]:
    return [
        p
        for p in inventory.pods_in(namespace)
        if p.name.startswith(f"{prefix}-") and p.phase == "Running" and not p.terminating
    ]


def _available(snapshot: InventorySnapshot, namespace: str, name: str, replicas: int) -> bool:
    workload = snapshot.workload(WorkloadKind.DEPLOYMENT, namespace, name)
    return (
        workload is not None
        and workload.desired == replicas
        and workload.ready == replicas
        and workload.fully_available
    )


@pytest.fixture(scope="module")
async def fleet(platform: Platform, shared_cluster: ClusterRecord) -> AsyncIterator[FleetInventory]:
    async with FleetInventory(platform.clusters.credentials) as fleet:
        started = time.monotonic()
        await fleet.ensure(SHARED_CLUSTER)
        await fleet.wait_synced(SHARED_CLUSTER, timeout=30)
        print(f"\ninventory of {SHARED_NODES} nodes synced in {time.monotonic() - started:.2f}s")
        yield fleet


@pytest.fixture
async def shared_client(platform: Platform, shared_cluster: ClusterRecord) -> AsyncIterator[AsyncClient]:
    async with kube_client.open_client(platform.clusters.credentials(SHARED_CLUSTER)) as client:
        yield client


async def test_inventory_syncs_every_node_of_the_shared_cluster(
    fleet: FleetInventory, shared_client: AsyncClient, platform: Platform
) -> None:
    snapshot = fleet.snapshot(SHARED_CLUSTER)
    assert snapshot.synced
    assert snapshot.connected, snapshot.watches
    assert set(snapshot.watches) == set(Kind)
    assert (snapshot.nodes_total, snapshot.nodes_ready) == (SHARED_NODES, SHARED_NODES)
    assert dict(snapshot.kubelet_versions) == {f"v{platform.settings.kubernetes_version}": SHARED_NODES}
    assert all(n.cpu_millicores == 32_000 and n.memory_bytes == 256 * 1024**3 for n in snapshot.nodes)
    assert {n.instance_type for n in snapshot.nodes} == {"kwok.standard"}
    names = {ns.metadata.name async for ns in shared_client.list(Namespace)}
    assert {"default", "kube-system"} <= names
    assert snapshot.namespaces == len(names)
    assert fleet.names() == [SHARED_CLUSTER]


async def test_deployment_scale_events_and_delete_are_followed_within_seconds(
    fleet: FleetInventory, shared_client: AsyncClient
) -> None:
    inventory = fleet.inventory(SHARED_CLUSTER)
    await shared_client.create(Namespace(metadata=ObjectMeta(name=NAMESPACE)))
    try:
        ns = await _until(lambda: inventory.namespaces.items.get(("", NAMESPACE)), lambda n: n is not None)
        assert isinstance(ns, NamespaceSummary)
        assert ns.phase == "Active"

        started = time.monotonic()
        await shared_client.create(_deployment("web", 3))
        await _until(lambda: fleet.snapshot(SHARED_CLUSTER), lambda s: _available(s, NAMESPACE, "web", 3))
        pods = await _until(lambda: _running(inventory, NAMESPACE, "web"), lambda ps: len(ps) == 3)
        print(
            f"\ndeployment 3/3 with 3 Running pods in the cache {time.monotonic() - started:.2f}s after create"
        )
        assert all(p.node.startswith("kwok-node-") and p.owner_kind == "ReplicaSet" for p in pods)
        assert fleet.snapshot(SHARED_CLUSTER).pods_by_phase.get("Running", 0) >= 3

        started = time.monotonic()
        await shared_client.patch(
            Deployment, "web", {"spec": {"replicas": 5}}, namespace=NAMESPACE, patch_type=PatchType.MERGE
        )
        await _until(lambda: fleet.snapshot(SHARED_CLUSTER), lambda s: _available(s, NAMESPACE, "web", 5))
        await _until(lambda: _running(inventory, NAMESPACE, "web"), lambda ps: len(ps) == 5)
        print(f"scaled to 5/5 in the cache {time.monotonic() - started:.2f}s after the patch")
        api_pods = {p.metadata.name async for p in shared_client.list(Pod, namespace=NAMESPACE)}
        assert {p.name for p in inventory.pods_in(NAMESPACE)} == api_pods, "the cache matches the API"

        scaling = await _until(
            lambda: inventory.events_about(namespace=NAMESPACE, kind="Deployment", name="web"),
            lambda events: {e.reason for e in events} >= {"ScalingReplicaSet"} and len(events) >= 2,
        )
        assert all(e.type == "Normal" and e.message for e in scaling)
        assert fleet.snapshot(SHARED_CLUSTER).last_event_at is not None

        started = time.monotonic()
        await shared_client.delete(Deployment, "web", namespace=NAMESPACE)
        await _until(
            lambda: fleet.snapshot(SHARED_CLUSTER),
            lambda s: s.workload(WorkloadKind.DEPLOYMENT, NAMESPACE, "web") is None,
        )
        await _until(lambda: inventory.pods_in(NAMESPACE), lambda ps: ps == [], timeout=60)
        print(f"deployment and its pods gone from the cache {time.monotonic() - started:.2f}s after delete")
        assert [p async for p in shared_client.list(Pod, namespace=NAMESPACE)] == []
    finally:
        await shared_client.delete(Namespace, NAMESPACE)


async def test_cordon_and_uncordon_are_followed(fleet: FleetInventory, shared_client: AsyncClient) -> None:
    node = f"kwok-node-{SHARED_NODES - 1:03d}"
    assert not fleet.snapshot(SHARED_CLUSTER).node(node).unschedulable
    await shared_client.patch(Node, node, {"spec": {"unschedulable": True}}, patch_type=PatchType.MERGE)
    try:
        await _until(lambda: fleet.snapshot(SHARED_CLUSTER), lambda s: s.node(node).unschedulable, timeout=10)
        assert fleet.snapshot(SHARED_CLUSTER).nodes_unschedulable == 1
    finally:
        await shared_client.patch(Node, node, {"spec": {"unschedulable": None}}, patch_type=PatchType.MERGE)
    await _until(lambda: fleet.snapshot(SHARED_CLUSTER), lambda s: not s.node(node).unschedulable, timeout=10)


async def test_a_crashing_watch_is_logged_and_restarted_without_touching_the_others(
    platform: Platform, shared_cluster: ClusterRecord
) -> None:
    crashes: list[str] = []

    def flaky(obj: Any) -> NamespaceSummary:
        if len(crashes) < 2:  # the first two lists die on a "bug" in the summarizer
            crashes.append(obj.metadata.name)
            raise RuntimeError("summarizer bug")
        return summaries.summarize_namespace(obj)

    specs: list[summaries.KindSpec[Any]] = [
        summaries.NODES,
        dataclasses.replace(summaries.NAMESPACES, summarize=flaky),
    ]
    with structlog.testing.capture_logs() as logs:
        async with FleetInventory(
            platform.clusters.credentials, specs=specs, restart_backoff=(0.1, 0.2)
        ) as fleet:
            await fleet.ensure(SHARED_CLUSTER)
            snapshot = await fleet.wait_synced(SHARED_CLUSTER, timeout=30)
    assert len(crashes) == 2
    assert snapshot.connected
    assert snapshot.nodes_total == SHARED_NODES
    assert snapshot.namespaces >= 4
    crashed = [e for e in logs if e["event"] == "inventory.watch_crashed"]
    assert [(e["kind"], e["restarts"], e["log_level"]) for e in crashed] == [
        ("namespaces", 1, "error"),
        ("namespaces", 2, "error"),
    ]
    assert "RuntimeError: summarizer bug" in crashed[0]["error"]
    assert all(e.get("cluster") == SHARED_CLUSTER for e in crashed)


async def test_unknown_clusters_are_refused_and_skipped(
    platform: Platform, shared_cluster: ClusterRecord
) -> None:
    async with FleetInventory(platform.clusters.credentials, specs=[summaries.NODES]) as fleet:
        with pytest.raises(errors.NotFound):
            await fleet.ensure("no-such-cluster")
        await fleet.start(["no-such-cluster", SHARED_CLUSTER])
        assert fleet.names() == [SHARED_CLUSTER]
        with pytest.raises(errors.NotFound):
            fleet.snapshot("no-such-cluster")
        await fleet.remove(SHARED_CLUSTER)
        await fleet.remove(SHARED_CLUSTER)  # idempotent
        assert fleet.names() == []


@pytest.mark.slow
@pytest.mark.own_cluster
async def test_watches_survive_an_api_server_outage_and_resync_while_others_keep_updating(
    platform: Platform, installed_binaries: BinaryCache, shared_cluster: ClusterRecord
) -> None:
    name = "inventory-outage"
    await platform.clusters.create_local(requests.parse(requests.CreateLocalCluster, name=name, nodes=2))
    loop = asyncio.get_running_loop()
    try:
        # Retries: three quick ones, then one every 20-30 s, so the cluster can come back and change
        # before the inventory looks again.
        settings = watching.WatchSettings(backoff=(0.2, 0.2, 0.2, 25))
        async with FleetInventory(platform.clusters.credentials, settings=settings) as fleet:
            await fleet.start([name, SHARED_CLUSTER])
            await fleet.wait_synced(name, timeout=30)
            await fleet.wait_synced(SHARED_CLUSTER, timeout=30)
            outage = fleet.inventory(name)
            shared = fleet.inventory(SHARED_CLUSTER)
            creds = platform.clusters.credentials(name)
            async with kube_client.open_client(creds) as client:
                await client.create(_deployment("doomed", 0, namespace="default"))
            await _until(lambda: fleet.snapshot(name), lambda s: _available(s, "default", "doomed", 0))

            runtime = LocalRuntime.from_dict(platform.clusters.get(name).runtime)
            platform.clusters.local.kill(runtime, "kube-apiserver-0")
            killed = loop.time()
            down = await _until(lambda: fleet.snapshot(name), lambda s: not s.connected, timeout=15)
            print(f"\nwatch disconnected {loop.time() - killed:.2f}s after the API server was killed")
            assert down.synced, "the cache keeps its last known state while disconnected"
            assert down.nodes_total == 2
            assert any("127.0.0.1" in (w.error or "") for w in down.watches.values())

            # Another cluster keeps updating while this one is down.
            await _until(
                lambda: fleet.snapshot(name), lambda s: s.disconnected_kinds == tuple(Kind), timeout=15
            )
            async with kube_client.open_client(platform.clusters.credentials(SHARED_CLUSTER)) as other:
                await other.create(Namespace(metadata=ObjectMeta(name="while-other-down")))
                try:
                    changed = loop.time()
                    await _until(
                        lambda: shared.namespaces.items.get(("", "while-other-down")),
                        lambda n: n is not None,
                        timeout=5,
                    )
                    print(f"the healthy cluster's change was cached in {loop.time() - changed:.2f}s")
                    assert fleet.snapshot(SHARED_CLUSTER).connected
                finally:
                    await other.delete(Namespace, "while-other-down")
            assert not fleet.snapshot(name).connected

            # Bring it back and change things while the inventory is still away (its next retry is
            # 20-30 s off): a deletion and a creation it can never see as watch events.
            await asyncio.sleep(2)  # the three quick retries fail; the long one is scheduled
            started = loop.time()
            await platform.clusters.start(name)
            print(f"API server back after {loop.time() - started:.2f}s")
            async with kube_client.open_client(creds) as client:
                await client.delete(Deployment, "doomed", namespace="default")
                await client.create(_deployment("fresh", 2, namespace="default"))
            restarted = loop.time()
            assert not fleet.snapshot(name).connected, "the changes were made while the inventory was away"
            back = await _until(lambda: fleet.snapshot(name), lambda s: s.connected, timeout=40)
            print(f"watches reconnected {loop.time() - restarted:.2f}s after the changes")
            assert back.synced
            await _until(lambda: fleet.snapshot(name), lambda s: _available(s, "default", "fresh", 2))
            assert fleet.snapshot(name).workload(WorkloadKind.DEPLOYMENT, "default", "doomed") is None
            await _until(lambda: _running(outage, "default", "fresh"), lambda ps: len(ps) == 2)
            async with kube_client.open_client(creds) as client:
                api_pods = {p.metadata.name async for p in client.list(Pod, namespace="default")}
            assert {p.name for p in outage.pods_in("default")} == api_pods

        # A hung API server (stopped, its sockets open) is noticed by the inactivity timeout.
        # The server closes each stream after 2 s, so a healthy quiet stream is never silent for 3 s.
        settings = watching.WatchSettings(backoff=(0.2, 0.5, 1), inactivity_timeout=3, server_timeout=(2, 2))
        async with FleetInventory(
            platform.clusters.credentials, specs=[summaries.NODES, summaries.NAMESPACES], settings=settings
        ) as fleet:
            await fleet.wait_synced((await fleet.ensure(name)).name, timeout=30)
            await asyncio.sleep(5)
            assert fleet.snapshot(name).connected, "healthy quiet streams stay connected"
            apiserver = psutil.Process(
                LocalRuntime.from_dict(platform.clusters.get(name).runtime).processes["kube-apiserver-0"].pid
            )
            apiserver.suspend()
            try:
                stopped = loop.time()
                hung = await _until(lambda: fleet.snapshot(name), lambda s: not s.connected, timeout=10)
                print(f"hung API server noticed after {loop.time() - stopped:.2f}s")
                errors_seen = {w.error for w in hung.watches.values() if w.error}
                assert any("silent for 3s" in e or "did not answer in time" in e for e in errors_seen), (
                    errors_seen
                )
            finally:
                apiserver.resume()
            await _until(lambda: fleet.snapshot(name), lambda s: s.connected, timeout=15)
    finally:
        await platform.clusters.delete(name)
