"""Fleet metrics for Prometheus: the state Pilothouse already holds, as metric families.

prometheus-client does the heavy lifting: the metric families, the exposition
format (escaping of label values included) and the process collector that
reports Pilothouse's own CPU, memory and open files. This module only decides
what to expose and reads it; nothing here keeps a metric between scrapes.

Two parts, split by whether they do I/O:

- ``compute_families(state)`` is pure: a ``FleetState`` (plain data: cluster
  records, the latest probe per cluster, SLA reports, inventory snapshots) in,
  a list of ``prometheus_client`` metric families out. Unit tests feed it by hand.
- ``read_fleet_state(...)`` gathers a ``FleetState`` from the services at scrape
  time: cluster records and SLA reports from the store (in a worker thread, so
  the event loop keeps running), the latest probes from ``HealthMonitor.latest``
  and a snapshot of every watched cluster's inventory. Snapshots are taken on the
  event loop that runs the watches, because a snapshot iterates the live caches.

``FleetCollector`` is a custom collector over any ``() -> FleetState`` callable;
``create_registry`` puts it, with the process collector, in a registry of its own
(never prometheus-client's global one). ``api/metrics.py`` serves ``/metrics``.

Every metric is a gauge named ``pilothouse_…``. A metric that needs data that is
not there (a cluster never probed, a watch that has not listed yet, an SLA window
with no observed time) is left out rather than reported as 0, so PromQL's
``absent()`` tells "unknown" from "zero".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from pilothouse import errors
from pilothouse.fleet import health, sla
from pilothouse.fleet.inventory import FleetInventory, InventorySnapshot
from pilothouse.fleet.monitoring import HealthMonitor
from pilothouse.fleet.registry import ClusterRegistry
from pilothouse.kube.summaries import Kind, WorkloadKind
from pilothouse.vocabulary import ClusterPhase, ProviderKind

PREFIX = "pilothouse_"
#: Pod phases always reported (0 when none), so a phase that empties does not vanish.
POD_PHASES: tuple[str, ...] = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
#: Endpoint kinds whose probe latency is API latency (etcd's ``/health`` is not).
API_ENDPOINT_KINDS = frozenset({health.EndpointKind.APISERVER, health.EndpointKind.LOADBALANCER})
_WORKLOAD_WATCHES: Mapping[WorkloadKind, Kind] = {
    WorkloadKind.DEPLOYMENT: Kind.DEPLOYMENTS,
    WorkloadKind.STATEFULSET: Kind.STATEFULSETS,
    WorkloadKind.DAEMONSET: Kind.DAEMONSETS,
}


class ClusterLike(Protocol):
    """What the metrics read from a cluster record; ``store.clusters.ClusterRecord`` is one."""

    @property
    def name(self) -> str: ...

    @property
    def provider(self) -> str: ...

    @property
    def phase(self) -> str: ...

    @property
    def kubernetes_version(self) -> str: ...


@dataclass(frozen=True)
class FleetState:
    """Everything one scrape reports, read at one moment."""

    version: str
    clusters: Sequence[ClusterLike] = ()
    health: Mapping[str, health.ClusterHealth] = field(default_factory=dict)
    reports: Mapping[str, sla.SLAReport] = field(default_factory=dict)
    inventories: Mapping[str, InventorySnapshot] = field(default_factory=dict)


# ----- pure: state → metric families ----------------------------------------------------------


def _gauge(name: str, documentation: str, labels: Sequence[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, labels=list(labels))


def _fleet_families(state: FleetState) -> list[Metric]:
    build = _gauge("build_info", "Pilothouse build; the value is always 1.", ["version"])
    build.add_metric([state.version], 1)
    info = _gauge(
        "cluster_info",
        "A managed cluster, its provider and Kubernetes version; always 1.",
        ["cluster", "provider", "version"],
    )
    counts = {(str(p), str(ph)): 0 for p in ProviderKind for ph in ClusterPhase}
    for record in state.clusters:
        info.add_metric([record.name, record.provider, record.kubernetes_version], 1)
        counts[(record.provider, record.phase)] = counts.get((record.provider, record.phase), 0) + 1
    clusters = _gauge("clusters", "Managed clusters by provider and phase.", ["provider", "phase"])
    for (provider, phase), count in sorted(counts.items()):
        clusters.add_metric([provider, phase], count)
    return [build, info, clusters]


def _health_families(probes: Iterable[health.ClusterHealth]) -> list[Metric]:
    up = _gauge(
        "cluster_up", "1 if the cluster's client endpoint answered /readyz at the last probe.", ["cluster"]
    )
    endpoint_up = _gauge(
        "cluster_endpoint_up",
        "1 if the endpoint passed every check (/livez and /readyz; etcd /health) at the last probe.",
        ["cluster", "endpoint", "kind"],
    )
    latency = _gauge(
        "cluster_api_latency_seconds",
        "Time the last probe of an API server or load balancer endpoint took, failed or not.",
        ["cluster", "endpoint"],
    )
    for probe in sorted(probes, key=lambda p: p.cluster):
        up.add_metric([probe.cluster], 1 if probe.up else 0)
        for endpoint in probe.endpoints:
            endpoint_up.add_metric(
                [probe.cluster, endpoint.name, str(endpoint.kind)], 1 if endpoint.ok else 0
            )
            if endpoint.kind in API_ENDPOINT_KINDS:
                latency.add_metric([probe.cluster, endpoint.name], endpoint.latency_ms / 1000.0)
    return [up, endpoint_up, latency]


def _sla_families(reports: Iterable[sla.SLAReport]) -> list[Metric]:
    availability = _gauge(
        "cluster_availability_ratio",
        "Up time over observed time in the window (left out when nothing was observed).",
        ["cluster", "window"],
    )
    budget = _gauge(
        "cluster_error_budget_remaining_ratio",
        "Share of the 30-day error budget left; negative once overspent.",
        ["cluster"],
    )
    burn = _gauge(
        "cluster_slo_burn_rate",
        "Error rate in the window divided by (1 - SLO); 1 spends the budget exactly over 30 days.",
        ["cluster", "window"],
    )
    for report in sorted(reports, key=lambda r: r.cluster):
        for window in report.windows:
            if window.availability is not None:
                availability.add_metric([report.cluster, window.name], window.availability)
        budget.add_metric([report.cluster], report.budget.remaining_fraction)
        for rate in report.burn_rates:
            if rate.rate is not None:
                burn.add_metric([report.cluster, rate.window], rate.rate)
    return [availability, budget, burn]


def _synced(snapshot: InventorySnapshot, kind: Kind) -> bool:
    watch = snapshot.watches.get(kind)
    return watch is not None and watch.synced


def _inventory_families(snapshots: Iterable[InventorySnapshot]) -> list[Metric]:
    connected = _gauge(
        "inventory_watch_connected",
        "1 if the inventory's watch of the kind is connected.",
        ["cluster", "kind"],
    )
    nodes = _gauge(
        "cluster_nodes",
        "Nodes by state; unschedulable (cordoned) nodes are also counted as ready or not_ready.",
        ["cluster", "state"],
    )
    pods = _gauge("cluster_pods", "Pods by phase.", ["cluster", "phase"])
    waiting = _gauge(
        "cluster_pods_waiting",
        "Pods with a container waiting, by reason (CrashLoopBackOff, ...).",
        ["cluster", "reason"],
    )
    replicas = _gauge(
        "workload_replicas",
        "Replicas of a Deployment, StatefulSet or DaemonSet: desired, ready or available.",
        ["cluster", "namespace", "kind", "name", "state"],
    )
    available = _gauge(
        "workload_available",
        "1 if the workload's controller saw its latest spec and every desired replica is ready and available.",
        ["cluster", "namespace", "kind", "name"],
    )
    allocatable = _gauge(
        "cluster_allocatable",
        "Allocatable summed over every node (cpu in cores, memory in bytes).",
        ["cluster", "resource"],
    )
    requested = _gauge(
        "cluster_requested",
        "Requests of the pods bound to a node and not finished (cpu in cores, memory in bytes).",
        ["cluster", "resource"],
    )
    for snap in sorted(snapshots, key=lambda s: s.cluster):
        cluster = snap.cluster
        for kind, watch in sorted(snap.watches.items()):
            connected.add_metric([cluster, str(kind)], 1 if watch.connected else 0)
        if _synced(snap, Kind.NODES):
            nodes.add_metric([cluster, "ready"], snap.nodes_ready)
            nodes.add_metric([cluster, "not_ready"], snap.nodes_total - snap.nodes_ready)
            nodes.add_metric([cluster, "unschedulable"], snap.nodes_unschedulable)
        if _synced(snap, Kind.PODS):
            phases = {phase: 0 for phase in POD_PHASES} | dict(snap.pods_by_phase)
            for phase, count in sorted(phases.items()):
                pods.add_metric([cluster, phase], count)
            for reason, count in sorted(snap.pods_waiting.items()):
                waiting.add_metric([cluster, reason], count)
        if _synced(snap, Kind.NODES):
            allocatable.add_metric([cluster, "cpu"], snap.allocatable.cpu_millicores / 1000)
            allocatable.add_metric([cluster, "memory"], snap.allocatable.memory_bytes)
        if _synced(snap, Kind.PODS):
            requested.add_metric([cluster, "cpu"], snap.requested.cpu_millicores / 1000)
            requested.add_metric([cluster, "memory"], snap.requested.memory_bytes)
        for workload in snap.workloads:
            if not _synced(snap, _WORKLOAD_WATCHES[workload.kind]):
                continue
            labels = [cluster, workload.namespace, str(workload.kind), workload.name]
            for state, value in (
                ("desired", workload.desired),
                ("ready", workload.ready),
                ("available", workload.available),
            ):
                replicas.add_metric([*labels, state], value)
            available.add_metric(labels, 1 if workload.fully_available else 0)
    return [connected, nodes, pods, waiting, replicas, available, allocatable, requested]


def compute_families(state: FleetState) -> list[Metric]:
    """Every fleet metric family for ``state``; pure. Families without samples are kept (HELP/TYPE only)."""
    return [
        *_fleet_families(state),
        *_health_families(state.health.values()),
        *_sla_families(state.reports.values()),
        *_inventory_families(state.inventories.values()),
    ]


# ----- the collector and its registry ---------------------------------------------------------


class FleetCollector(Collector):
    """A custom collector: calls ``read`` at every scrape and reports what it returns."""

    def __init__(self, read: Callable[[], FleetState]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        return compute_families(self._read())

    def describe(self) -> Iterable[Metric]:
        # Registering must not read the fleet; names are not checked for clashes (there are none).
        return []


def create_registry(read: Callable[[], FleetState], *, process: bool = True) -> CollectorRegistry:
    """A registry of its own with a ``FleetCollector`` and, unless ``process=False``,
    the process and garbage-collector collectors (``process_*``, ``python_gc_*``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(read))
    if process:
        ProcessCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


# ----- I/O: reading the state from the services -----------------------------------------------


def _reports(monitor: HealthMonitor, names: Iterable[str], now: datetime) -> dict[str, sla.SLAReport]:
    reports: dict[str, sla.SLAReport] = {}
    for name in names:
        try:
            reports[name] = monitor.report(name, now=now)
        except errors.NotFound:
            continue  # deleted since the list was read
    return reports


async def read_fleet_state(
    *,
    registry: ClusterRegistry,
    monitor: HealthMonitor,
    inventory: FleetInventory,
    version: str,
    now: datetime | None = None,
) -> FleetState:
    """The fleet as it is now. Call it on the event loop that runs ``inventory``'s watches.

    SLA reports cover every cluster that is not being deleted (a stopped cluster's
    availability history still matters); inventories cover the watched clusters.
    """
    moment = now or datetime.now(UTC)
    inventories = {name: inventory.snapshot(name) for name in inventory.names()}
    latest = dict(monitor.latest)
    records = await asyncio.to_thread(registry.clusters)
    names = [r.name for r in records if r.phase != ClusterPhase.DELETING]
    reports = await asyncio.to_thread(_reports, monitor, names, moment)
    return FleetState(
        version=version, clusters=records, health=latest, reports=reports, inventories=inventories
    )
