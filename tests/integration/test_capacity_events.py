"""Capacity, cost and event search on the real shared cluster, through real HTTP and the CLI.

A Deployment of three pods, each requesting 500m CPU and 256Mi (limits 1 CPU and
512Mi), runs in a namespace labelled ``team: billing``; the capacity report shows
exactly three times those requests for the namespace and the team, and a cost
from the price table. Events are searched where they are persisted: the API
flushes the watch caches into the store before it searches, and the CLI (a
process of its own, watching nothing) reads what the ``persist-events`` job
wrote. Both find the deployment's ScalingReplicaSet event by reason and by
object name, and a Warning Event posted through the Kubernetes API by its text.
A flush whose save fails hands its events back for the next one.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import (
    Container,
    EventSource,
    ObjectReference,
    PodSpec,
    PodTemplateSpec,
    ResourceRequirements,
)
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Event, Namespace, Pod
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from pilothouse.api import capacity as capacity_api
from pilothouse.api import events as events_api
from pilothouse.api.app import create_app
from pilothouse.cli import capacity as capacity_cli
from pilothouse.cli import events as events_cli
from pilothouse.fleet.event_log import EventLog
from pilothouse.fleet.events import EventQuery, FoundEvent
from pilothouse.kube import client as kube_client
from pilothouse.platform import Platform
from pilothouse.reconcile.loop import Job, jobs_of
from pilothouse.store import db
from pilothouse.store.clusters import ClusterRecord
from pilothouse.store.events import EventPruning, EventStore
from tests.conftest import SHARED_CLUSTER, SHARED_NODES
from tests.integration.api_server import serving
from tests.integration.kube_helpers import eventually

T = TypeVar("T")
NAMESPACE = "capacity-e2e"
TEAM = "billing"
DEPLOYMENT = "ledger"
REPLICAS = 3
CPU_REQUEST, MEMORY_REQUEST = 500, 256 * 1024**2
CPU_LIMIT, MEMORY_LIMIT = 1000, 512 * 1024**2
NODE_CPU = 32_000  # every simulated node of the shared cluster (see test_inventory.py)
AUDIT_REASON = "LedgerAudit"
AUDIT_MESSAGE = "Ledger audit: 3 entries ÜBER budget"


def _deployment() -> Deployment:
    labels: dict[str, Any] = {"app": DEPLOYMENT}
    container = Container(
        name="app",
        image="registry.example/ledger:1.0",
        resources=ResourceRequirements(
            requests={"cpu": "500m", "memory": "256Mi"}, limits={"cpu": "1", "memory": "512Mi"}
        ),
    )
    return Deployment(
        metadata=ObjectMeta(name=DEPLOYMENT, namespace=NAMESPACE),
        spec=DeploymentSpec(
            replicas=REPLICAS,
            selector=LabelSelector(matchLabels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels), spec=PodSpec(containers=[container])
            ),
        ),
    )


def _posted_event(name: str, reason: str, message: str, *, count: int) -> Event:
    """A Warning Event about the Deployment, as a controller would post it (core/v1)."""
    now = datetime.now(UTC).replace(microsecond=0)
    return Event(
        metadata=ObjectMeta(name=name, namespace=NAMESPACE),
        involvedObject=ObjectReference(
            apiVersion="apps/v1", kind="Deployment", name=DEPLOYMENT, namespace=NAMESPACE
        ),
        reason=reason,
        type="Warning",
        message=message,
        count=count,
        firstTimestamp=now - timedelta(minutes=1),
        lastTimestamp=now,
        source=EventSource(component="ledger-auditor"),
    )


@pytest.fixture(scope="module")
async def workload(platform: Platform, shared_cluster: ClusterRecord) -> AsyncIterator[None]:
    """The namespace, the Deployment (Running) and a posted audit Event; deleted afterwards."""
    async with kube_client.open_client(platform.clusters.credentials(SHARED_CLUSTER)) as client:
        await client.create(Namespace(metadata=ObjectMeta(name=NAMESPACE, labels={"team": TEAM})))
        try:
            await client.create(_deployment())
            await client.create(_posted_event(f"{DEPLOYMENT}.audit", AUDIT_REASON, AUDIT_MESSAGE, count=2))

            async def running() -> list[str]:
                return [
                    str(p.metadata.name)
                    async for p in client.list(Pod, namespace=NAMESPACE)
                    if p.status is not None and p.status.phase == "Running" and p.spec and p.spec.nodeName
                ]

            await eventually(running, lambda pods: len(pods) == REPLICAS, timeout=60)
            yield
        finally:
            await client.delete(Namespace, NAMESPACE)


@pytest.fixture(scope="module")
def token(platform: Platform) -> str:
    issued, _ = platform.tokens.issue("capacity-events-viewer", ("viewer",))
    return issued


def _poll(read: Callable[[], T], accept: Callable[[T], bool], *, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    value = read()
    while not accept(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")
        time.sleep(0.2)
        value = read()
    return value


def _group(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((g for g in body["groups"] if g["name"] == name), None)


def _has_our_pods(body: dict[str, Any], name: str) -> bool:
    group = _group(body, name)
    return group is not None and group["pods"] == REPLICAS


def _exact_requests(group: dict[str, Any]) -> None:
    assert group["requested"] == {
        "cpu_millicores": REPLICAS * CPU_REQUEST,
        "memory_bytes": REPLICAS * MEMORY_REQUEST,
    }
    assert group["limits"] == {
        "cpu_millicores": REPLICAS * CPU_LIMIT,
        "memory_bytes": REPLICAS * MEMORY_LIMIT,
    }


def test_capacity_and_events_over_http(platform: Platform, workload: None, token: str) -> None:
    app = create_app(platform, reconcile=False)
    app.include_router(capacity_api.router)
    app.include_router(events_api.router)
    headers = {"Authorization": f"Bearer {token}"}
    with serving(app) as url, httpx.Client(base_url=url, headers=headers, timeout=60) as http:

        def get(path: str, **params: Any) -> dict[str, Any]:
            response = http.get(path, params=params)
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

        by_namespace = _poll(
            lambda: get(f"/api/v1/clusters/{SHARED_CLUSTER}/capacity"), lambda b: _has_our_pods(b, NAMESPACE)
        )
        assert by_namespace["synced"] is True
        assert by_namespace["nodes"] == SHARED_NODES
        assert by_namespace["allocatable"]["cpu_millicores"] == SHARED_NODES * NODE_CPU
        group = _group(by_namespace, NAMESPACE)
        assert group is not None
        _exact_requests(group)
        assert group["namespaces"] == [NAMESPACE]
        assert group["cpu_share"] == round(REPLICAS * CPU_REQUEST / (SHARED_NODES * NODE_CPU), 4)
        assert group["cost_per_hour"] > 0
        assert by_namespace["cost_per_hour"] > by_namespace["idle_cost_per_hour"] > 0
        assert by_namespace["conditions"][0]["type"] == "CapacityHigh"
        assert by_namespace["conditions"][0]["status"] == "False"

        by_team = get(f"/api/v1/clusters/{SHARED_CLUSTER}/capacity", by="team", threshold=0.001)
        team = _group(by_team, TEAM)
        assert team is not None
        _exact_requests(team)
        assert team["namespaces"] == [NAMESPACE]
        assert by_team["conditions"][0]["status"] == "True"  # 1.5 of 640 cores is over 0.1 %

        fleet = get("/api/v1/capacity")
        assert [c["cluster"] for c in fleet["clusters"]] == [SHARED_CLUSTER]
        assert fleet["cost_per_hour"] == fleet["clusters"][0]["cost_per_hour"]

        def search(**params: Any) -> list[dict[str, Any]]:
            response = http.get("/api/v1/events", params=params)
            assert response.status_code == 200, response.text
            found: list[dict[str, Any]] = response.json()
            return found

        by_reason = _poll(
            lambda: search(
                cluster=SHARED_CLUSTER, namespace=NAMESPACE, reason="ScalingReplicaSet", since="10m"
            ),
            lambda found: any(e["involved_name"] == DEPLOYMENT for e in found),
        )
        assert all(e["reason"] == "ScalingReplicaSet" and e["namespace"] == NAMESPACE for e in by_reason)
        by_name = search(kind="Deployment", name=DEPLOYMENT, type="Normal", limit=5)
        assert {e["reason"] for e in by_name} == {"ScalingReplicaSet"}
        assert all(e["cluster"] == SHARED_CLUSTER and e["involved_kind"] == "Deployment" for e in by_name)
        assert f"{DEPLOYMENT}-" in by_name[0]["message"]
        stamps = [datetime.fromisoformat(e["last_timestamp"]) for e in search(namespace=NAMESPACE, limit=100)]
        assert stamps == sorted(stamps, reverse=True)
        assert search(namespace=NAMESPACE, reason="ScalingReplicaSet", type="Warning") == []
        (audit,) = _poll(lambda: search(text="über BUDGET", type="warning"), lambda found: len(found) == 1)
        assert (audit["cluster"], audit["namespace"], audit["name"]) == (
            SHARED_CLUSTER,
            NAMESPACE,
            f"{DEPLOYMENT}.audit",
        )
        assert (audit["reason"], audit["type"], audit["message"]) == (AUDIT_REASON, "Warning", AUDIT_MESSAGE)
        assert (audit["involved_kind"], audit["involved_name"], audit["count"]) == (
            "Deployment",
            DEPLOYMENT,
            2,
        )
        assert audit["source"] == "ledger-auditor"

        assert http.get("/api/v1/clusters/nosuch/capacity").status_code == 404
        assert http.get("/api/v1/events", params={"cluster": "nosuch"}).status_code == 404
        bad_since = http.get("/api/v1/events", params={"since": "yesterday"})
        assert bad_since.status_code == 400, bad_since.text
        assert bad_since.json()["code"] == "invalid_input"
        assert httpx.get(f"{url}/api/v1/capacity").status_code == 401


def test_capacity_report_cli(workload: None, tmp_path: Path) -> None:
    per_resource = tmp_path / "per-resource.yaml"
    per_resource.write_text("currency: EUR\ncpu_hour: 1\ngib_hour: 0\n")
    per_node = tmp_path / "per-node.yaml"
    per_node.write_text("instance_types:\n  kwok.standard: 1.25\n")
    runner = CliRunner()

    result = runner.invoke(
        capacity_cli.app,
        ["report", SHARED_CLUSTER, "--prices", str(per_resource), "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    (cluster,) = json.loads(result.stdout)["clusters"]
    group = _group(cluster, NAMESPACE)
    assert group is not None
    _exact_requests(group)
    assert cluster["currency"] == "EUR"
    assert cluster["cost_per_hour"] == SHARED_NODES * NODE_CPU / 1000  # one per core-hour
    assert group["cost_per_hour"] == 1.5  # 1.5 cores requested

    result = runner.invoke(
        capacity_cli.app, ["report", SHARED_CLUSTER, "--by", "team", "--prices", str(per_node), "--json"]
    )
    assert result.exit_code == 0, result.output
    (cluster,) = json.loads(result.stdout)["clusters"]
    assert cluster["cost_per_hour"] == SHARED_NODES * 1.25
    team = _group(cluster, TEAM)
    assert team is not None
    _exact_requests(team)
    assert team["cost_per_hour"] > 0

    table = runner.invoke(capacity_cli.app, ["report", SHARED_CLUSTER])
    assert table.exit_code == 0, table.output
    assert "by namespace" in table.stdout
    assert "fleet: " in table.stdout  # cells may wrap at the runner's width; the footer does not

    bad = tmp_path / "bad.yaml"
    bad.write_text("cpu_hour: -1\n")
    refused = runner.invoke(capacity_cli.app, ["report", SHARED_CLUSTER, "--prices", str(bad)])
    assert refused.exit_code == 1
    assert "cpu_hour" in refused.stderr


def _job(platform: Platform, name: str) -> Job:
    return next(job for job in jobs_of(platform) if job.name == name)


def _ours(found: list[FoundEvent]) -> set[str]:
    return {f.event.reason for f in found if f.event.involved_name == DEPLOYMENT}


@pytest.fixture(scope="module")
async def persisted(platform: Platform, workload: None) -> None:
    """The deployment's events in the store, written by the background jobs of ``pilothouse up``."""
    await capacity_api.synced_inventory(platform, SHARED_CLUSTER)
    in_namespace = EventQuery(cluster=SHARED_CLUSTER, namespace=NAMESPACE, limit=None)

    async def flushed() -> list[FoundEvent]:
        await _job(platform, "persist-events").run()
        return platform.events.search(in_namespace)

    await eventually(flushed, lambda found: {"ScalingReplicaSet", AUDIT_REASON} <= _ours(found))
    pruning = await _job(platform, "prune-events").run()
    assert pruning == EventPruning(expired=0, over_limit=0)  # all fresh, far below the count


def test_events_search_cli(persisted: None) -> None:
    """The CLI opens a platform of its own and watches nothing: it finds what was persisted."""
    runner = CliRunner()
    by_reason = runner.invoke(
        events_cli.app,
        [
            "search",
            "--cluster",
            SHARED_CLUSTER,
            "--namespace",
            NAMESPACE,
            "--reason",
            "ScalingReplicaSet",
            "--json",
        ],
        catch_exceptions=False,
    )
    assert by_reason.exit_code == 0, by_reason.output
    found = json.loads(by_reason.stdout)
    assert any(e["involved_name"] == DEPLOYMENT for e in found)

    by_name = runner.invoke(
        events_cli.app, ["search", "--kind", "Deployment", "--name", DEPLOYMENT, "--since", "30m", "--json"]
    )
    assert by_name.exit_code == 0, by_name.output
    about_deployment = json.loads(by_name.stdout)
    assert {"ScalingReplicaSet", AUDIT_REASON} <= {e["reason"] for e in about_deployment}
    assert all(
        (e["involved_kind"], e["involved_name"]) == ("Deployment", DEPLOYMENT) for e in about_deployment
    )

    table = runner.invoke(events_cli.app, ["search", "--namespace", NAMESPACE, "--type", "Normal"])
    assert table.exit_code == 0, table.output
    assert re.search(r"^[1-9]\d* events$", table.stdout, re.MULTILINE), table.stdout

    by_text = runner.invoke(
        events_cli.app, ["search", "--text", "über budget", "--type", "warning", "--json"]
    )
    assert by_text.exit_code == 0, by_text.output
    (audit,) = json.loads(by_text.stdout)
    assert (audit["reason"], audit["message"], audit["count"]) == (AUDIT_REASON, AUDIT_MESSAGE, 2)

    unknown = runner.invoke(events_cli.app, ["search", "--cluster", "nosuch"])
    assert unknown.exit_code == 1


async def test_a_failed_flush_hands_its_events_back(
    platform: Platform, workload: None, tmp_path: Path
) -> None:
    inventory = await capacity_api.synced_inventory(platform, SHARED_CLUSTER)
    key = (NAMESPACE, f"{DEPLOYMENT}.recount")
    async with kube_client.open_client(platform.clusters.credentials(SHARED_CLUSTER)) as client:
        await client.create(_posted_event(key[1], "LedgerRecount", "recounting the ledger", count=1))

    async def watched() -> bool:
        return key in inventory.events.items

    await eventually(watched, bool)
    unmigrated = db.Database(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables: every save fails
    try:
        failing = EventLog(
            platform.inventory, EventStore(unmigrated), retention=timedelta(days=1), max_per_cluster=10
        )
        with pytest.raises(OperationalError):
            await failing.flush()
    finally:
        unmigrated.dispose()

    recount = EventQuery(cluster=SHARED_CLUSTER, reason="LedgerRecount")
    assert platform.events.search(recount) == []
    assert await platform.events.flush() >= 1  # what the failed flush drained, handed back
    (found,) = platform.events.search(recount)
    assert (found.event.namespace, found.event.name) == key
