"""Background work of a running Pilothouse: periodic, supervised, level-triggered.

Each job runs on its own schedule in its own task: converging local clusters
to their desired state, probing the fleet's health, compacting the health
history, keeping a watch-based inventory of every running cluster, rotating
the control-plane logs of local clusters, evaluating alert rules and notifying,
persisting the watched Kubernetes Events and pruning them, and driving
durable operations (upgrades, restores, DR drills) to their end, and taking
scheduled etcd backups (cron slots, then retention), and syncing Pilothouse's
roles into each local cluster's RBAC. Every pass is level-triggered
(it looks at the world from scratch), so a crash at any moment is repaired
by the next pass after a restart. A
failing pass is logged and retried with bounded backoff; it never stops the
other jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from pilothouse.fleet import changes
from pilothouse.fleet.registry import KUBECONFIG_SECRET
from pilothouse.platform import Platform
from pilothouse.vocabulary import ClusterPhase, DesiredState

log = structlog.get_logger(__name__)
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)
COMPACT_INTERVAL_SECONDS = 3600.0
LOG_ROTATION_INTERVAL_SECONDS = 60.0
CHANGES_INTERVAL_SECONDS = 0.5
#: How often unfinished durable operations (upgrades, …) are looked for and driven.
OPERATIONS_INTERVAL_SECONDS = 2.0
EVENT_PRUNE_INTERVAL_SECONDS = 300.0
#: How often cron schedules of etcd backups are checked (a slot is taken at most this late).
BACKUP_SCHEDULE_INTERVAL_SECONDS = 30.0
#: How often Pilothouse's roles are re-planned per cluster (a cluster is contacted when its plan
#: changed, or every ``identity.rbac_sync.RESYNC``): how soon a binding change reaches the cluster.
RBAC_SYNC_INTERVAL_SECONDS = 5.0


@dataclass(frozen=True)
class Job:
    name: str
    interval: float
    run: Callable[[], Awaitable[Any]]
    #: Runs in the leading replica only (``store.leadership``); the others skip their passes.
    singleton: bool = False


def jobs_of(platform: Platform) -> list[Job]:
    settings = platform.settings

    async def reconcile() -> None:
        acted = await platform.clusters.reconcile_local()
        if acted:
            log.info("reconcile.pass", acted=acted)

    async def probe_health() -> None:
        """Every replica probes (its API answers from ``latest``); the leader records samples."""
        await platform.health.probe_once(record=await leads(platform))

    async def compact() -> None:
        await asyncio.to_thread(platform.health.compact)

    async def watch_inventory() -> None:
        """Watch every running cluster; stop watching deleted and stopped ones."""
        wanted = {
            r.name
            for r in await asyncio.to_thread(platform.clusters.clusters)
            if r.desired_state == DesiredState.RUNNING
            and r.phase in (ClusterPhase.RUNNING, ClusterPhase.PROVISIONING)  # a restart keeps the cache
            and KUBECONFIG_SECRET in r.secret_names
        }
        for name in sorted(set(platform.inventory.names()) - wanted):
            await platform.inventory.remove(name)
        await platform.inventory.start(sorted(wanted - set(platform.inventory.names())))

    async def rotate_logs() -> None:
        await asyncio.to_thread(
            platform.clusters.rotate_logs,
            max_bytes=settings.component_log_max_bytes,
            keep=settings.component_log_keep,
        )

    async def publish_changes() -> None:
        records = await asyncio.to_thread(platform.clusters.clusters)
        snapshots = {name: platform.inventory.snapshot(name) for name in platform.inventory.names()}
        platform.changes.publish(changes.summarize(records, platform.health.latest, snapshots))

    async def prune_alerts() -> None:
        await asyncio.to_thread(platform.alerts.prune)

    async def prune_identity() -> None:
        await asyncio.to_thread(platform.identity.prune)

    return [
        Job("reconcile", settings.reconcile_interval_seconds, reconcile),
        Job("health", settings.health_interval_seconds, probe_health),
        Job("compact-health", COMPACT_INTERVAL_SECONDS, compact, singleton=True),
        Job("inventory", settings.reconcile_interval_seconds, watch_inventory),
        Job("rotate-logs", LOG_ROTATION_INTERVAL_SECONDS, rotate_logs),
        Job("changes", CHANGES_INTERVAL_SECONDS, publish_changes),
        Job("alerts", settings.alerts_interval_seconds, platform.alerts.evaluate_once, singleton=True),
        Job("prune-alerts", COMPACT_INTERVAL_SECONDS, prune_alerts, singleton=True),
        Job("prune-identity", COMPACT_INTERVAL_SECONDS, prune_identity, singleton=True),
        Job("persist-events", settings.events_flush_interval_seconds, platform.events.flush),
        Job("prune-events", EVENT_PRUNE_INTERVAL_SECONDS, platform.events.prune, singleton=True),
        Job("operations", OPERATIONS_INTERVAL_SECONDS, platform.operations.run_unfinished),
        Job("backups", BACKUP_SCHEDULE_INTERVAL_SECONDS, platform.backups.run_schedules, singleton=True),
        Job("rbac-sync", RBAC_SYNC_INTERVAL_SECONDS, platform.rbac_sync.sync_once, singleton=True),
    ]


async def run_periodically(job: Job, leads: Callable[[], Awaitable[bool]] | None = None) -> None:
    """Run ``job`` every ``interval`` seconds; a singleton job only while ``leads()`` says so."""
    failures = 0
    while True:
        try:
            if not job.singleton or leads is None or await leads():
                await job.run()
            failures = 0
            await asyncio.sleep(job.interval)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in one job must not stop it, or the others
            delay = BACKOFF[min(failures, len(BACKOFF) - 1)]
            failures += 1
            log.error(
                "job.failed", job=job.name, error_type=type(exc).__name__, error=str(exc), retry_in=delay
            )
            await asyncio.sleep(delay)


async def leads(platform: Platform) -> bool:
    """Whether this replica leads the ones sharing its store (``store.leadership``)."""
    return await asyncio.to_thread(platform.leadership.held)


async def run_background(platform: Platform) -> None:
    """Run every job until cancelled; singleton jobs only while this replica leads."""

    async def leading() -> bool:
        return await leads(platform)

    tasks = [
        asyncio.create_task(run_periodically(job, leading), name=f"job:{job.name}")
        for job in jobs_of(platform)
    ]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await platform.operations.stop()
        with contextlib.suppress(Exception):  # what is not flushed comes back with the next relist
            await platform.events.flush()
        await platform.inventory.stop()
