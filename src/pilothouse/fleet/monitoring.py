"""The fleet's health monitor: periodic probes, their history, and SLA reports.

Ties ``health`` (probing), ``store.health`` (samples with retention and
downsampling) and ``sla`` (pure arithmetic) together. The latest probe of
each cluster is kept in memory for the API; the history lives in the store so
availability survives restarts and is shared by every Pilothouse replica.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from pilothouse.fleet import health, sla
from pilothouse.fleet.registry import ClusterRegistry
from pilothouse.store.health import Compaction, HealthStore


class HealthMonitor:
    def __init__(self, registry: ClusterRegistry, store: HealthStore, *, slo: float, timeout: float) -> None:
        self.registry = registry
        self.store = store
        self.slo = slo
        self.timeout = timeout
        self.latest: dict[str, health.ClusterHealth] = {}

    async def probe_once(self, *, record: bool = True) -> list[health.ClusterHealth]:
        """Probe every cluster that should run and remember the results; record the samples
        unless ``record`` is false (a replica that does not lead: one sample per probe)."""
        results = await health.probe_fleet(self.registry, timeout=self.timeout)
        if record:
            await asyncio.to_thread(health.record_results, self.store, results)
        self.latest = {r.cluster: r for r in results}
        return results

    async def probe(self, name: str) -> health.ClusterHealth:
        """Probe one cluster now (without recording a sample)."""
        record = self.registry.get(name)
        result = await health.probe_cluster(self.registry, record, timeout=self.timeout)
        self.latest[name] = result
        return result

    def report(self, name: str, *, now: datetime | None = None) -> sla.SLAReport:
        moment = now or datetime.now(UTC)
        self.registry.get(name)  # NotFound for an unknown cluster
        spans = self.store.samples(name, moment - sla.BUDGET_PERIOD, until=moment)
        return sla.compute_report(name, spans, now=moment, slo=self.slo)

    def compact(self, *, now: datetime | None = None) -> Compaction:
        return self.store.compact(now or datetime.now(UTC))
