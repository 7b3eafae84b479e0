"""CapacityHigh and CertificateExpiringSoon over a real cluster, through the alert service.

The alert service reads the shared cluster's real inventory (pod requests
against node allocatable, kept as running totals) and its real PKI directory.
Its alerts go to a store of their own, so the shared platform's alerts are
untouched; thresholds are user settings, chosen here so one pod crosses them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube.models.core_v1 import Container, PodSpec, ResourceRequirements
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Pod

from pilothouse.fleet import alerting
from pilothouse.fleet.alerts import Alerts
from pilothouse.kube import client as kube_client
from pilothouse.platform import Platform
from pilothouse.store import db
from pilothouse.store.alerts import AlertStore
from pilothouse.store.clusters import ClusterRecord
from tests.conftest import SHARED_CLUSTER
from tests.integration.kube_helpers import eventually

NAMESPACE = "capacity-alert"
REQUEST_MILLICORES = 2000


@pytest.fixture
def alert_store(tmp_path: Path) -> Iterator[AlertStore]:
    database = db.Database(f"sqlite:///{tmp_path / 'alerts.db'}")
    database.migrate()
    yield AlertStore(database)
    database.dispose()


def _alerts(platform: Platform, store: AlertStore, rules: alerting.AlertRulesConfig) -> Alerts:
    return Alerts(platform.clusters, platform.health, platform.inventory, store, rules=rules, channels=())


def _of(evaluation: alerting.Evaluation, rule: alerting.Rule) -> list[alerting.AlertState]:
    return [s for s in evaluation.states.values() if s.rule is rule and s.cluster == SHARED_CLUSTER]


async def test_capacity_high_follows_real_requests(
    platform: Platform, shared_cluster: ClusterRecord, alert_store: AlertStore
) -> None:
    cache = await platform.inventory.ensure(SHARED_CLUSTER)
    before = await cache.wait_synced(30)
    allocatable = before.allocatable.cpu_millicores
    assert allocatable > 0
    # Crossed by our one pod, not by what other tests left behind.
    threshold = (before.requested.cpu_millicores + REQUEST_MILLICORES / 2) / allocatable
    rules = alerting.AlertRulesConfig.from_overrides(
        {"capacity_high": {"for_seconds": 0, "threshold": threshold}}
    )
    alerts = _alerts(platform, alert_store, rules)
    assert _of(await alerts.evaluate_once(), alerting.Rule.CAPACITY_HIGH) == []

    pod = Pod(
        metadata=ObjectMeta(name="hungry", namespace=NAMESPACE),
        spec=PodSpec(
            containers=[
                Container(
                    name="app",
                    image="registry.example/hungry:1",
                    resources=ResourceRequirements(requests={"cpu": f"{REQUEST_MILLICORES}m"}),
                )
            ]
        ),
    )
    async with kube_client.open_client(platform.clusters.credentials(SHARED_CLUSTER)) as client:
        await client.create(Namespace(metadata=ObjectMeta(name=NAMESPACE)))
        try:
            await client.create(pod)

            async def requested() -> int:
                return cache.snapshot().requested.cpu_millicores

            # Counted once the scheduler binds it.
            grown = await eventually(
                requested, lambda cpu: cpu >= before.requested.cpu_millicores + REQUEST_MILLICORES, timeout=30
            )
            fired = _of(await alerts.evaluate_once(), alerting.Rule.CAPACITY_HIGH)
            assert [a.status for a in fired] == [alerting.AlertStatus.FIRING]
            assert "cpu requests are" in fired[0].summary
            assert grown == before.requested.cpu_millicores + REQUEST_MILLICORES

            await client.delete(Pod, "hungry", namespace=NAMESPACE, grace_period=0)
            await eventually(requested, lambda cpu: cpu == before.requested.cpu_millicores, timeout=30)
            resolved = _of(await alerts.evaluate_once(), alerting.Rule.CAPACITY_HIGH)
            assert [a.status for a in resolved] == [alerting.AlertStatus.RESOLVED]
        finally:
            await client.delete(Namespace, NAMESPACE)


async def test_certificate_expiring_soon_reads_the_real_pki(
    platform: Platform, shared_cluster: ClusterRecord, alert_store: AlertStore
) -> None:
    expiries = platform.clusters.certificate_expiries(SHARED_CLUSTER)
    assert expiries, "a local cluster has certificates"
    # Leaf certificates are issued for a year, CAs for ten: warn a little over a year ahead.
    rules = alerting.AlertRulesConfig.from_overrides(
        {"certificate_expiring_soon": {"warning_days": 366, "critical_days": 0}}
    )
    alerts = _alerts(platform, alert_store, rules)

    firing = _of(await alerts.evaluate_once(), alerting.Rule.CERTIFICATE_EXPIRING_SOON)

    alerted = {a.labels["certificate"] for a in firing}
    cas = {path for path in expiries if Path(path).stem.endswith("ca")}
    assert cas, sorted(expiries)
    assert alerted == set(expiries) - cas
    assert all(a.status is alerting.AlertStatus.FIRING for a in firing)
    assert all(a.severity is alerting.Severity.WARNING for a in firing)
    assert all("expires in 36" in a.summary for a in firing)  # 364-365 days left
