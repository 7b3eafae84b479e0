"""Fleet metrics on plain data: records, probes, SLA reports and inventory caches → samples.

The inventory snapshots come from a real ``ClusterInventory`` fed watch events by hand
(no cluster), the SLA reports from ``sla.compute_report`` over hand-made spans. The
exposition text is rendered by prometheus-client and parsed back with its parser, so
the tests check what Prometheus would read, label escaping included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pilothouse import errors
from pilothouse.fleet import health, metrics, sla
from pilothouse.fleet.inventory import ClusterInventory, InventorySnapshot
from pilothouse.kube import watching
from pilothouse.kube.summaries import Kind, NodeSummary, PodSummary, WorkloadKind, WorkloadSummary
from tests.factories import pod_summary

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass(frozen=True)
class Record:
    name: str
    provider: str = "local"
    phase: str = "Running"
    kubernetes_version: str = "1.31.0"


def node(name: str, *, ready: bool = True, unschedulable: bool = False) -> NodeSummary:
    return NodeSummary(
        name=name,
        ready=ready,
        unschedulable=unschedulable,
        kubelet_version="v1.31.0",
        cpu_millicores=4000,
        memory_bytes=8 * 1024**3,
        pods=110,
        instance_type="kwok.standard",
        conditions=(("Ready", "True" if ready else "False"),),
    )


def pod(name: str, phase: str, *, waiting: str = "", namespace: str = "default", cpu: int = 0) -> PodSummary:
    return pod_summary(name, phase=phase, waiting=waiting, namespace=namespace, cpu_request_millicores=cpu)


def workload(
    name: str, kind: WorkloadKind, desired: int, ready: int, *, namespace: str = "default"
) -> WorkloadSummary:
    return WorkloadSummary(
        namespace=namespace,
        name=name,
        kind=kind,
        desired=desired,
        ready=ready,
        available=ready,
        updated=desired,
        observed=True,
    )


def snapshot(
    cluster: str,
    *,
    nodes: Iterable[NodeSummary] = (),
    pods: Iterable[PodSummary] = (),
    deployments: Iterable[WorkloadSummary] = (),
    statefulsets: Iterable[WorkloadSummary] = (),
    unsynced: Iterable[Kind] = (),
    disconnected: Iterable[Kind] = (),
) -> InventorySnapshot:
    """A snapshot of a cache fed one list per kind (except ``unsynced`` kinds)."""
    inventory = ClusterInventory(cluster, clock=lambda: 100.0)
    contents: Mapping[Kind, Iterable[Any]] = {
        Kind.NODES: nodes,
        Kind.PODS: pods,
        Kind.DEPLOYMENTS: deployments,
        Kind.STATEFULSETS: statefulsets,
    }
    skip, cut = set(unsynced), set(disconnected)
    for kind, cache in inventory.caches().items():
        if kind in skip:
            continue
        cache.on_connected()
        cache.on_event(watching.Synced(objects=tuple(contents.get(kind, ())), resource_version="1"))
        if kind in cut:
            cache.on_disconnected(errors.PilothouseError("connection refused"))
    return inventory.snapshot()


def probe(cluster: str, *, up: bool = True, etcd_ok: bool = True) -> health.ClusterHealth:
    kind = health.EndpointKind
    return health.ClusterHealth(
        cluster=cluster,
        checked_at=NOW,
        endpoints=(
            health.EndpointHealth("haproxy", "https://127.0.0.1:1", kind.LOADBALANCER, up, 12.0),
            health.EndpointHealth("kube-apiserver-0", "https://127.0.0.2:2", kind.APISERVER, up, 250.0),
            health.EndpointHealth("etcd-0", "http://127.0.0.1:3", kind.ETCD, etcd_ok, 3.0),
        ),
        up=up,
    )


def report(cluster: str, *, down_minutes: int) -> sla.SLAReport:
    """One hour observed, the last ``down_minutes`` of it down."""
    start, turn = NOW - timedelta(hours=1), NOW - timedelta(minutes=down_minutes)
    spans = [sla.Span.held(start, turn, up=True)]
    if down_minutes:
        spans.append(sla.Span.held(turn, NOW, up=False))
    return sla.compute_report(cluster, spans, now=NOW, slo=0.999)


def samples(state: metrics.FleetState) -> Samples:
    """Render ``state`` as Prometheus text and parse it back: (name, labels) → value."""
    text = generate_latest(metrics.create_registry(lambda: state, process=False)).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, metric: str, /, **labels: str) -> float | None:
    """The sample of ``pilothouse_<metric>`` with exactly ``labels`` (None if absent)."""
    return found.get((f"pilothouse_{metric}", frozenset(labels.items())))


def series(found: Samples, metric: str) -> list[dict[str, str]]:
    return [dict(labels) for (name, labels) in found if name == f"pilothouse_{metric}"]


# ----- tests -----------------------------------------------------------------------------------


def test_an_empty_fleet_reports_the_build_and_zero_clusters() -> None:
    found = samples(metrics.FleetState(version="0.1.0"))
    assert value(found, "build_info", version="0.1.0") == 1
    assert value(found, "clusters", provider="local", phase="Running") == 0
    assert value(found, "clusters", provider="import", phase="Failed") == 0
    assert series(found, "cluster_up") == []
    assert series(found, "cluster_nodes") == []


def test_clusters_are_counted_by_provider_and_phase_and_described() -> None:
    state = metrics.FleetState(
        version="0.1.0",
        clusters=[
            Record("a"),
            Record("b", phase="Stopped"),
            Record("c"),
            Record("prod", provider="import", kubernetes_version="1.30.2"),
        ],
    )
    found = samples(state)
    assert value(found, "clusters", provider="local", phase="Running") == 2
    assert value(found, "clusters", provider="local", phase="Stopped") == 1
    assert value(found, "clusters", provider="import", phase="Running") == 1
    assert value(found, "cluster_info", cluster="prod", provider="import", version="1.30.2") == 1
    assert len(series(found, "cluster_info")) == 4


def test_probes_become_up_endpoint_and_latency_gauges() -> None:
    state = metrics.FleetState(
        version="0.1.0", health={"a": probe("a"), "b": probe("b", up=False, etcd_ok=False)}
    )
    found = samples(state)
    assert value(found, "cluster_up", cluster="a") == 1
    assert value(found, "cluster_up", cluster="b") == 0
    assert value(found, "cluster_endpoint_up", cluster="a", endpoint="etcd-0", kind="etcd") == 1
    assert value(found, "cluster_endpoint_up", cluster="b", endpoint="haproxy", kind="loadbalancer") == 0
    assert value(found, "cluster_api_latency_seconds", cluster="a", endpoint="kube-apiserver-0") == 0.25
    assert value(found, "cluster_api_latency_seconds", cluster="a", endpoint="haproxy") == 0.012
    # etcd's /health latency is not API latency
    assert value(found, "cluster_api_latency_seconds", cluster="a", endpoint="etcd-0") is None


def test_sla_reports_become_availability_budget_and_burn_rate() -> None:
    state = metrics.FleetState(
        version="0.1.0", reports={"ok": report("ok", down_minutes=0), "bad": report("bad", down_minutes=6)}
    )
    found = samples(state)
    assert value(found, "cluster_availability_ratio", cluster="ok", window="1h") == 1.0
    assert value(found, "cluster_availability_ratio", cluster="bad", window="1h") == pytest.approx(0.9)
    # 24h and 30d saw the same hour of observations
    assert value(found, "cluster_availability_ratio", cluster="bad", window="30d") == pytest.approx(0.9)
    # 6 min down out of a 43.2-min budget (0.1 % of 30 days)
    assert value(found, "cluster_error_budget_remaining_ratio", cluster="bad") == pytest.approx(1 - 6 / 43.2)
    assert value(found, "cluster_slo_burn_rate", cluster="bad", window="1h") == pytest.approx(100.0)
    assert value(found, "cluster_slo_burn_rate", cluster="bad", window="5m") == pytest.approx(1000.0)
    assert value(found, "cluster_slo_burn_rate", cluster="ok", window="6h") == 0.0


def test_a_window_without_observations_is_left_out_not_zero() -> None:
    empty = sla.compute_report("new", [], now=NOW)
    found = samples(metrics.FleetState(version="0.1.0", reports={"new": empty}))
    assert series(found, "cluster_availability_ratio") == []
    assert series(found, "cluster_slo_burn_rate") == []
    assert value(found, "cluster_error_budget_remaining_ratio", cluster="new") == 1.0


def test_inventory_becomes_node_pod_and_workload_gauges() -> None:
    snap = snapshot(
        "shared",
        nodes=[node("n0"), node("n1"), node("n2", ready=False), node("n3", unschedulable=True)],
        pods=[
            pod("web-1", "Running", cpu=1500),
            pod("web-2", "Running", cpu=250),
            pod("done-1", "Succeeded", cpu=4000),  # finished: holds nothing
            pod("crash-1", "Running", waiting="CrashLoopBackOff"),
            pod("new-1", "Pending", waiting="ContainerCreating"),
        ],
        deployments=[workload("web", WorkloadKind.DEPLOYMENT, 3, 2)],
        statefulsets=[workload("db", WorkloadKind.STATEFULSET, 1, 1, namespace="data")],
    )
    found = samples(metrics.FleetState(version="0.1.0", inventories={"shared": snap}))
    assert value(found, "cluster_nodes", cluster="shared", state="ready") == 3
    assert value(found, "cluster_nodes", cluster="shared", state="not_ready") == 1
    assert value(found, "cluster_nodes", cluster="shared", state="unschedulable") == 1
    assert value(found, "cluster_pods", cluster="shared", phase="Running") == 3
    assert value(found, "cluster_pods", cluster="shared", phase="Pending") == 1
    assert value(found, "cluster_pods", cluster="shared", phase="Failed") == 0  # always present
    assert value(found, "cluster_pods_waiting", cluster="shared", reason="CrashLoopBackOff") == 1
    assert value(found, "cluster_allocatable", cluster="shared", resource="cpu") == 16.0
    assert value(found, "cluster_allocatable", cluster="shared", resource="memory") == 32 * 1024**3
    assert value(found, "cluster_requested", cluster="shared", resource="cpu") == 1.75
    web = {"cluster": "shared", "namespace": "default", "kind": "Deployment", "name": "web"}
    assert value(found, "workload_replicas", **web, state="desired") == 3
    assert value(found, "workload_replicas", **web, state="ready") == 2
    assert value(found, "workload_replicas", **web, state="available") == 2
    assert value(found, "workload_available", **web) == 0
    db = {"cluster": "shared", "namespace": "data", "kind": "StatefulSet", "name": "db"}
    assert value(found, "workload_available", **db) == 1
    assert value(found, "inventory_watch_connected", cluster="shared", kind="pods") == 1
    assert len(series(found, "inventory_watch_connected")) == len(Kind)


def test_kinds_not_yet_listed_are_left_out_and_cut_watches_show() -> None:
    snap = snapshot(
        "away",
        nodes=[node("n0")],
        deployments=[workload("web", WorkloadKind.DEPLOYMENT, 1, 1)],
        unsynced=[Kind.PODS, Kind.DEPLOYMENTS],
        disconnected=[Kind.NODES],
    )
    found = samples(metrics.FleetState(version="0.1.0", inventories={"away": snap}))
    assert series(found, "cluster_pods") == []
    assert series(found, "cluster_requested") == []
    assert series(found, "workload_replicas") == []
    assert value(found, "cluster_nodes", cluster="away", state="ready") == 1  # last known
    assert value(found, "inventory_watch_connected", cluster="away", kind="nodes") == 0
    assert value(found, "inventory_watch_connected", cluster="away", kind="pods") == 0


@pytest.mark.parametrize(
    ("odd", "escaped"),
    [
        ('say "hi"', r"say \"hi\""),
        ("back\\slash", r"back\\slash"),
        ("two\nlines", r"two\nlines"),
        ("ünïcødé {x=1}, y", "ünïcødé {x=1}, y"),
    ],
)
def test_odd_label_values_are_escaped_and_read_back_unchanged(odd: str, escaped: str) -> None:
    snap = snapshot("c", pods=[pod("p", "Pending", waiting=odd)])
    state = metrics.FleetState(version="0.1.0", inventories={"c": snap}, clusters=[Record("c")])
    text = generate_latest(metrics.create_registry(lambda: state, process=False)).decode()
    assert f'pilothouse_cluster_pods_waiting{{cluster="c",reason="{escaped}"}} 1.0' in text
    assert value(samples(state), "cluster_pods_waiting", cluster="c", reason=odd) == 1


def test_the_collector_reads_the_state_at_every_scrape() -> None:
    states = iter([metrics.FleetState(version="1"), metrics.FleetState(version="2")])
    registry = metrics.create_registry(lambda: next(states), process=False)
    assert b'pilothouse_build_info{version="1"} 1.0' in generate_latest(registry)
    assert b'pilothouse_build_info{version="2"} 1.0' in generate_latest(registry)


def test_the_registry_includes_the_process_collector() -> None:
    registry = metrics.create_registry(lambda: metrics.FleetState(version="0.1.0"))
    text = generate_latest(registry).decode()
    assert "process_resident_memory_bytes" in text
    assert "process_cpu_seconds_total" in text
    assert "pilothouse_build_info" in text
