"""A pod made to crash-loop (Pilothouse's kwok stage): inventory, metrics and alerts follow."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import Container, PodSpec, PodTemplateSpec
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apps_v1 import Deployment

from pilothouse.fleet import alerting, metrics
from pilothouse.kube import client as kube_client
from pilothouse.platform import Platform
from pilothouse.store.clusters import ClusterRecord
from tests.conftest import SHARED_CLUSTER
from tests.integration.kube_helpers import eventually

NAME = "crasher"


def _crashing_deployment() -> Deployment:
    labels = {"app": NAME}
    return Deployment(
        metadata=ObjectMeta(name=NAME, namespace="default"),
        spec=DeploymentSpec(
            replicas=1,
            selector=LabelSelector(matchLabels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels, annotations={"pilothouse.dev/simulate": "crashloop"}),
                spec=PodSpec(containers=[Container(name="app", image="registry.example/crasher:1")]),
            ),
        ),
    )


async def test_crash_looping_pod_shows_in_inventory_metrics_and_alerts(
    platform: Platform, shared_cluster: ClusterRecord
) -> None:
    creds = platform.clusters.credentials(SHARED_CLUSTER)
    cache = await platform.inventory.ensure(SHARED_CLUSTER)
    await cache.wait_synced(30)
    async with kube_client.open_client(creds) as client:
        await client.create(_crashing_deployment())
        created = time.monotonic()
        try:

            async def waiting() -> int:
                return cache.snapshot().pods_waiting.get("CrashLoopBackOff", 0)

            assert await eventually(waiting, lambda n: n == 1, timeout=30) == 1
            seen_after = time.monotonic() - created
            assert seen_after < 30
            crashing = [p for p in cache.pods_in("default") if p.waiting_reason == "CrashLoopBackOff"]
            assert crashing[0].restarts == 5
            assert not crashing[0].ready

            snapshot = cache.snapshot()
            families = metrics.compute_families(
                metrics.FleetState(
                    version="test", clusters=[shared_cluster], inventories={SHARED_CLUSTER: snapshot}
                )
            )
            waiting_samples = [
                s
                for family in families
                if family.name == "pilothouse_cluster_pods_waiting"
                for s in family.samples
                if s.labels.get("reason") == "CrashLoopBackOff"
            ]
            assert [s.value for s in waiting_samples] == [1.0]

            rules = alerting.AlertRulesConfig(pod_crash_looping=alerting.PodRuleConfig(for_seconds=0))
            observation = alerting.ClusterObservation(
                cluster=SHARED_CLUSTER, inventory=snapshot, pods=cache.pods_in()
            )
            evaluation = alerting.evaluate({}, [observation], datetime.now(UTC), rules)
            firing = [
                s
                for s in evaluation.states.values()
                if s.rule is alerting.Rule.POD_CRASH_LOOPING and s.status is alerting.AlertStatus.FIRING
            ]
            assert len(firing) == 1
            assert firing[0].labels["pod"] == crashing[0].name
        finally:
            await client.delete(Deployment, NAME, namespace="default")
