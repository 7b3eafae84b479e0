"""The health monitor end to end: probes → history → SLA, through the API and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pilothouse.api.app import create_app
from pilothouse.binaries.cache import BinaryCache
from pilothouse.fleet import health, requests
from pilothouse.platform import Platform
from pilothouse.providers.local.provider import LocalRuntime
from pilothouse.store.clusters import ClusterRecord
from tests.conftest import SHARED_CLUSTER
from tests.integration.api_server import serving

PILOTHOUSE = str(Path(sys.executable).with_name("pilothouse"))


@pytest.fixture(scope="module")
def api(platform: Platform) -> Iterator[tuple[str, dict[str, str]]]:
    token, _ = platform.tokens.issue("monitoring-viewer", ("viewer",))
    with serving(create_app(platform, reconcile=False)) as url:
        yield url, {"Authorization": f"Bearer {token}"}


async def test_probes_are_recorded_and_reported(platform: Platform, shared_cluster: ClusterRecord) -> None:
    first = await platform.health.probe_once()
    second = await platform.health.probe_once()
    shared = next(r for r in second if r.cluster == SHARED_CLUSTER)
    assert shared.up
    assert {e.name for e in shared.endpoints} >= {"kube-apiserver-0", "etcd-0"}
    assert first[0].checked_at < second[0].checked_at
    report = platform.health.report(SHARED_CLUSTER)
    assert report.window("1h").availability == 1.0
    assert report.window("1h").observed_seconds > 0
    assert report.budget.consumed_seconds == 0


def test_api_serves_health_and_sla(api: tuple[str, dict[str, str]], shared_cluster: ClusterRecord) -> None:
    url, headers = api
    probed = httpx.get(f"{url}/api/v1/clusters/{SHARED_CLUSTER}/health?fresh=true", headers=headers)
    assert probed.status_code == 200, probed.text
    body = probed.json()
    assert body["up"] is True
    assert all(e["ok"] for e in body["endpoints"])
    assert all(e["latency_ms"] > 0 for e in body["endpoints"])
    sla = httpx.get(f"{url}/api/v1/clusters/{SHARED_CLUSTER}/sla", headers=headers)
    assert sla.status_code == 200, sla.text
    assert [w["window"] for w in sla.json()["windows"]] == ["1h", "24h", "30d"]
    assert sla.json()["slo"] == pytest.approx(0.999)
    fleet = httpx.get(f"{url}/api/v1/fleet/health", headers=headers)
    assert SHARED_CLUSTER in {c["cluster"] for c in fleet.json()}
    assert httpx.get(f"{url}/api/v1/clusters/nosuch/sla", headers=headers).status_code == 404


def test_cli_fleet_status_and_sla_report(
    pilothouse_env: dict[str, str], shared_cluster: ClusterRecord
) -> None:
    env = {**os.environ, **pilothouse_env}
    status = subprocess.run(
        [PILOTHOUSE, "fleet", "status", "--json"], env=env, capture_output=True, text=True, check=True
    )
    rows = {row["cluster"]: row for row in json.loads(status.stdout)}
    assert rows[SHARED_CLUSTER]["up"] is True
    assert rows[SHARED_CLUSTER]["endpoints_ok"] == rows[SHARED_CLUSTER]["endpoints"]
    report = subprocess.run(
        [PILOTHOUSE, "sla", "report", SHARED_CLUSTER, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    (parsed,) = json.loads(report.stdout)
    assert parsed["cluster"] == SHARED_CLUSTER
    assert parsed["windows"][0]["observed_seconds"] > 0


@pytest.mark.own_cluster
async def test_an_outage_shows_in_availability_and_error_budget(
    platform: Platform, installed_binaries: BinaryCache
) -> None:
    name = "outage"
    record = await platform.clusters.create_local(
        requests.parse(requests.CreateLocalCluster, name=name, nodes=1)
    )
    try:
        runtime = LocalRuntime.from_dict(record.runtime)
        ours = [r for r in platform.clusters.clusters() if r.name == name]
        up_before = await platform.health.probe(name)
        assert up_before.up
        health.record_results(platform.health.store, [up_before])
        platform.clusters.local.kill(runtime, "kube-apiserver-0")
        down = await health.probe_fleet(platform.clusters, records=ours)
        assert not down[0].up
        assert "kube-apiserver-0" in down[0].failing
        health.record_results(platform.health.store, down)
        await platform.clusters.start(name)
        back = await health.probe_fleet(platform.clusters, records=ours)
        assert back[0].up
        health.record_results(platform.health.store, back)

        report = platform.health.report(name)
        hour = report.window("1h")
        assert hour.availability is not None
        assert hour.availability < 1.0
        assert hour.down_seconds > 0
        assert report.budget.consumed_seconds == pytest.approx(hour.down_seconds, rel=0.01)
        assert report.budget.remaining_fraction < 1.0
    finally:
        await platform.clusters.delete(name)
