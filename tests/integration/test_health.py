"""Health probes against real clusters: the shared one, an imported one, and an HA cluster we break.

Every endpoint is a real process: kube-apiserver, etcd, HAProxy. Failures are
real too: members SIGKILLed, and a listener that accepts connections and never
answers (a hung server) to show one cluster cannot slow the probes of another.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pilothouse.binaries.cache import BinaryCache
from pilothouse.fleet import health, requests, sla
from pilothouse.platform import Platform
from pilothouse.providers.local.provider import LocalRuntime
from pilothouse.providers.local.topology import PortPlan
from pilothouse.store.clusters import ClusterRecord
from pilothouse.store.health import HealthStore
from tests.conftest import SHARED_CLUSTER
from tests.integration.kube_helpers import eventually

IMPORTED = "shared-health-import"
HA = "health-ha"


def by_name(result: health.ClusterHealth) -> dict[str, health.EndpointHealth]:
    return {e.name: e for e in result.endpoints}


# ----- the shared cluster ----------------------------------------------------------------------


async def test_every_endpoint_of_the_shared_cluster_is_ok(
    platform: Platform, shared_cluster: ClusterRecord
) -> None:
    record = platform.clusters.get(SHARED_CLUSTER)
    runtime = LocalRuntime.from_dict(record.runtime)

    result = await health.probe_cluster(platform.clusters, record)

    assert result.cluster == SHARED_CLUSTER
    assert result.up is True
    assert result.failing == ()
    assert result.checked_at.tzinfo is not None
    endpoints = by_name(result)
    assert list(endpoints) == ["kube-apiserver-0", "etcd-0"]  # the client endpoint first
    assert endpoints["kube-apiserver-0"].url == f"https://127.0.0.1:{runtime.ports.apiserver}"
    assert endpoints["kube-apiserver-0"].kind is health.EndpointKind.APISERVER
    assert endpoints["etcd-0"].url == f"http://127.0.0.1:{runtime.ports.etcd_metrics[0]}"
    assert endpoints["etcd-0"].kind is health.EndpointKind.ETCD
    for endpoint in result.endpoints:
        assert endpoint.ok, endpoint
        assert endpoint.error is None
        assert 0.0 < endpoint.latency_ms < 2000.0


async def test_tls_is_verified_against_the_cluster_ca(
    platform: Platform, shared_cluster: ClusterRecord
) -> None:
    runtime = LocalRuntime.from_dict(platform.clusters.get(SHARED_CLUSTER).runtime)
    endpoints = health.plan_local_endpoints(runtime, 1)[:1]

    result = await health.probe_endpoints("shared", endpoints, verify=ssl.create_default_context())

    assert result.up is False
    assert result.endpoints[0].error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in result.endpoints[0].error


async def test_probe_results_become_samples_and_an_sla_report(
    platform: Platform, shared_cluster: ClusterRecord
) -> None:
    store = HealthStore(platform.db)
    record = platform.clusters.get(SHARED_CLUSTER)
    first = datetime.now(UTC)
    for _ in range(3):
        results = await health.probe_fleet(platform.clusters, records=[record])
        assert health.record_results(store, results) == 1
        await asyncio.sleep(0.2)

    latest = store.latest(SHARED_CLUSTER)
    assert latest is not None
    assert latest.up is True
    assert latest.latency_ms is not None
    assert latest.latency_ms > 0
    now = datetime.now(UTC)
    report = sla.compute_report(
        SHARED_CLUSTER, store.samples(SHARED_CLUSTER, first - timedelta(minutes=1)), now=now
    )
    assert report.window("1h").availability == 1.0
    assert report.window("1h").observed_seconds > 0.3
    assert report.budget.consumed_seconds == 0.0
    assert report.firing == ()


# ----- isolation -------------------------------------------------------------------------------


@pytest.fixture
def hung_listener() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


def hung_cluster(port: int, root: Path, ca: Path) -> ClusterRecord:
    (root / "pki").mkdir(parents=True)
    shutil.copy(ca, root / "pki" / "ca.crt")
    plan = PortPlan(
        apiserver=port,
        etcd_client=(port,),
        etcd_peer=(port,),
        etcd_metrics=(port,),
        controller_manager=(port,),
        scheduler=(port,),
        kwok=port,
    )
    now = datetime.now(UTC)
    return ClusterRecord(
        id="hung",
        name="hung",
        provider="local",
        desired_state="running",
        phase="Running",
        message="",
        kubernetes_version="",
        server_url=f"https://127.0.0.1:{port}",
        spec={"control_planes": 1, "nodes": 0},
        runtime=LocalRuntime(root=str(root), ports=plan).to_dict(),
        created_at=now,
        updated_at=now,
    )


async def test_a_hung_cluster_does_not_slow_the_others(
    platform: Platform, shared_cluster: ClusterRecord, hung_listener: int, tmp_path: Path
) -> None:
    shared = platform.clusters.get(SHARED_CLUSTER)
    ca = LocalRuntime.from_dict(shared.runtime).layout.pki / "ca.crt"
    hung = hung_cluster(hung_listener, tmp_path / "hung", ca)
    stopped = dataclasses.replace(shared, name="stopped-one", desired_state="stopped")
    loop = asyncio.get_running_loop()

    started = loop.time()
    results = await health.probe_fleet(platform.clusters, records=[hung, shared, stopped], timeout=1.0)
    elapsed = loop.time() - started

    assert [r.cluster for r in results] == ["hung", SHARED_CLUSTER]  # a stopped cluster is not probed
    assert elapsed < 2.0
    hung_result, shared_result = results
    assert shared_result.up is True
    assert shared_result.failing == ()
    assert hung_result.up is False
    assert hung_result.failing == ("kube-apiserver-0", "etcd-0")
    assert all("no answer within 1s" in (e.error or "") for e in hung_result.endpoints)


# ----- an imported cluster ---------------------------------------------------------------------


@pytest.fixture
async def imported(platform: Platform, shared_cluster: ClusterRecord) -> AsyncIterator[ClusterRecord]:
    request = requests.parse(
        requests.ImportCluster, name=IMPORTED, kubeconfig=platform.clusters.kubeconfig(SHARED_CLUSTER)
    )
    record = await platform.clusters.import_cluster(request)
    yield record
    if platform.clusters.store.find(IMPORTED) is not None:
        await platform.clusters.delete(IMPORTED)


async def test_an_imported_cluster_is_probed_with_its_stored_credentials(
    platform: Platform, imported: ClusterRecord
) -> None:
    result = await health.probe_cluster(platform.clusters, platform.clusters.get(IMPORTED))

    assert result.up is True
    assert [(e.name, e.kind, e.url, e.ok) for e in result.endpoints] == [
        ("kube-apiserver", health.EndpointKind.APISERVER, imported.server_url, True)
    ]
    assert result.endpoints[0].latency_ms > 0


# ----- an HA cluster, broken on purpose --------------------------------------------------------


@pytest.fixture
async def ha_cluster(platform: Platform, installed_binaries: BinaryCache) -> AsyncIterator[ClusterRecord]:
    record = await platform.clusters.create_local(
        requests.parse(requests.CreateLocalCluster, name=HA, nodes=2, control_planes=3)
    )
    try:
        yield record
    finally:
        if platform.clusters.store.find(HA) is not None:
            await platform.clusters.delete(HA)


@pytest.mark.slow
@pytest.mark.own_cluster
async def test_ha_probes_every_member_and_stays_up_until_all_api_servers_die(
    platform: Platform, ha_cluster: ClusterRecord
) -> None:
    record = platform.clusters.get(HA)
    runtime = LocalRuntime.from_dict(record.runtime)

    async def probe() -> health.ClusterHealth:
        return await health.probe_cluster(platform.clusters, record)

    whole = await eventually(probe, lambda r: r.up and r.failing == (), timeout=30)
    assert list(by_name(whole)) == [
        "haproxy",
        "kube-apiserver-0",
        "kube-apiserver-1",
        "kube-apiserver-2",
        "etcd-0",
        "etcd-1",
        "etcd-2",
    ]
    endpoints = by_name(whole)
    assert endpoints["haproxy"].url == f"https://127.0.0.1:{runtime.ports.load_balancer}"
    assert endpoints["haproxy"].kind is health.EndpointKind.LOADBALANCER
    assert [endpoints[f"kube-apiserver-{i}"].url for i in range(3)] == [
        f"https://127.0.0.{i + 1}:{runtime.ports.apiserver}" for i in range(3)
    ]
    assert all(e.latency_ms > 0 for e in whole.endpoints)

    platform.clusters.local.kill(runtime, "kube-apiserver-1")
    platform.clusters.local.kill(runtime, "etcd-2")

    degraded = await eventually(probe, lambda r: set(r.failing) == {"kube-apiserver-1", "etcd-2"}, timeout=30)
    assert degraded.up is True  # HAProxy serves from the two members left
    endpoints = by_name(degraded)
    assert endpoints["kube-apiserver-1"].error is not None
    assert "ConnectError" in endpoints["kube-apiserver-1"].error
    assert endpoints["etcd-2"].error is not None
    assert "ConnectError" in endpoints["etcd-2"].error
    # it stays that way: a second look a moment later shows the same picture
    await asyncio.sleep(2.0)
    again = await probe()
    assert (again.up, set(again.failing)) == (True, {"kube-apiserver-1", "etcd-2"})

    platform.clusters.local.kill(runtime, "kube-apiserver-0")
    platform.clusters.local.kill(runtime, "kube-apiserver-2")

    down = await eventually(probe, lambda r: not r.up, timeout=30)
    assert set(down.failing) == {
        "haproxy",
        "kube-apiserver-0",
        "kube-apiserver-1",
        "kube-apiserver-2",
        "etcd-2",
    }
    assert by_name(down)["etcd-0"].ok
    assert by_name(down)["etcd-1"].ok
