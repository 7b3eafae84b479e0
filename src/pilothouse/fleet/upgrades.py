"""Control-plane upgrades of local clusters: plan them, start them, and run their steps.

``Upgrades.facts`` gathers what the pure planner (``fleet.upgrade_plan``)
reads: the cluster record, the binary catalog and cache, a fresh health probe
of every endpoint, the live inventory (kubelet versions, PodDisruptionBudgets,
workloads, requests), the deprecated APIs the API server saw requested, the
deprecated or removed API versions in last-applied configurations and Helm
releases (``kube.api_usage``, judged by ``fleet.api_lifecycle``) and the
certificates' expiry dates. ``Upgrades.start`` refuses a plan with
blockers and otherwise records a durable operation (``fleet.operations``)
whose journal is the plan's steps.

``ControlPlaneUpgrade`` is that operation's driver. Each step observes before
it acts, so a step interrupted by a crash and run again never restarts a
process that already runs the target:

- ``kube-apiserver-N``: unless it already runs the target's binary, pin it
  to the target version (``LocalRuntime.versions``, so a crash restart keeps
  the version) and restart it in rotation (``fleet.rolling``: out of HAProxy's
  rotation and drained first, back in once ``/readyz`` answers). Clients of
  the load balancer only ever reach ready servers.
- ``etcd-N``, ``kube-controller-manager-N``, ``kube-scheduler-N``: the same
  without the load balancer. A copy of the process that a crashed Pilothouse
  started but never recorded is found by its arguments and adopted.
- ``finalize``: record the target as the cluster's version and drop the pins.

An abort between steps puts every API server back into rotation; the
cluster keeps running its mixed versions, which the skew policy allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from dataclasses import replace
from datetime import UTC, datetime

import structlog

from pilothouse import errors
from pilothouse.binaries import catalog
from pilothouse.fleet import api_lifecycle, health, operations, rolling, upgrade_plan
from pilothouse.fleet.inventory import FleetInventory
from pilothouse.fleet.registry import ClusterRegistry, local_spec
from pilothouse.kube import api_usage, deprecations
from pilothouse.kube.credentials import ClusterCredentials
from pilothouse.providers.local import topology
from pilothouse.providers.local.provider import LocalRuntime, Persist
from pilothouse.store.clusters import ClusterRecord
from pilothouse.store.operations import OperationRecord, OperationStore
from pilothouse.vocabulary import Component, ProviderKind

log = structlog.get_logger(__name__)

KIND = "upgrade"
INVENTORY_SYNC_SECONDS = 30.0
API_USAGE_SCAN_SECONDS = 30.0
_COMPONENTS = {
    "etcd": Component.ETCD,
    "kube-apiserver": Component.KUBE_APISERVER,
    "kube-controller-manager": Component.KUBE_CONTROLLER_MANAGER,
    "kube-scheduler": Component.KUBE_SCHEDULER,
}


def _etcd_versions() -> dict[str, str]:
    return {v: catalog.pins_for(v).etcd for v in catalog.supported_versions()}


class Upgrades:
    """Plans and starts control-plane upgrades."""

    def __init__(self, registry: ClusterRegistry, inventory: FleetInventory, store: OperationStore) -> None:
        self.registry = registry
        self.inventory = inventory
        self.store = store

    async def facts(
        self, name: str, target: str, *, now: datetime | None = None
    ) -> upgrade_plan.UpgradeFacts:
        record = await asyncio.to_thread(self.registry.get, name)
        local = record.provider == ProviderKind.LOCAL
        spec = local_spec(record) if local else None
        probe = await health.probe_cluster(self.registry, record)
        facts = upgrade_plan.UpgradeFacts(
            cluster=name,
            provider=str(record.provider),
            current=record.kubernetes_version,
            target=catalog.normalise_version(target) if _looks_like_version(target) else target,
            now=now or datetime.now(UTC),
            supported=tuple(catalog.supported_versions()),
            installed=tuple(self.registry.binaries.installed_versions()),
            control_planes=spec.control_planes if spec else 1,
            etcd_members=spec.control_planes if spec else 1,
            etcd_version=_etcd_versions(),
            failing_endpoints=probe.failing,
            certificates=await asyncio.to_thread(self.registry.certificate_expiries, name) if local else None,
        )
        if not probe.up:
            return facts
        cache = await self.inventory.ensure(name)
        with contextlib.suppress(TimeoutError):
            await cache.wait_synced(INVENTORY_SYNC_SECONDS)
        snap = cache.snapshot()
        allocatable, requested = snap.allocatable, snap.requested
        creds = await asyncio.to_thread(self.registry.credentials, name)
        try:
            requested_apis = await deprecations.requested_deprecated_apis(creds)
        except errors.PilothouseError as exc:
            log.warning("upgrade.deprecated_apis_unreadable", cluster=name, error=exc.message)
            requested_apis = []
        stored_apis, gaps = await _stored_api_uses(creds, name, facts.target)
        return replace(
            facts,
            kubelet_versions=dict(snap.kubelet_versions),
            pdbs=[upgrade_plan.PdbFacts(p.namespace, p.name, p.disruptions_allowed) for p in snap.pdbs],
            workloads=[
                upgrade_plan.WorkloadFacts(str(w.kind), w.namespace, w.name, w.desired)
                for w in snap.workloads
            ],
            api_uses=[
                *(
                    api_lifecycle.requested_api_use(
                        a.group,
                        a.version,
                        a.resource,
                        a.removed_release,
                        record.kubernetes_version,
                        source="client requests (apiserver_requested_deprecated_apis)",
                    )
                    for a in requested_apis
                ),
                *stored_apis,
            ],
            api_scan_gaps=gaps,
            cpu_request_ratio=_ratio(requested.cpu_millicores, allocatable.cpu_millicores),
            memory_request_ratio=_ratio(requested.memory_bytes, allocatable.memory_bytes),
        )

    async def plan(self, name: str, target: str) -> upgrade_plan.UpgradePlan:
        return upgrade_plan.plan_upgrade(await self.facts(name, target))

    async def start(self, name: str, target: str, *, created_by: str = "") -> OperationRecord:
        """Record the upgrade as an operation; ``Conflict`` listing the blockers if any."""
        plan = await self.plan(name, target)
        if not plan.allowed:
            reasons = "; ".join(f.message for f in plan.blockers)
            hints = "; ".join(dict.fromkeys(f.hint for f in plan.blockers if f.hint))
            raise errors.Conflict(
                f"the upgrade of {name} to {plan.target} is blocked: {reasons}",
                hint=hints or f"see `pilothouse upgrade plan {name} --to {plan.target}`",
                cluster=name,
            )
        return await asyncio.to_thread(
            self.store.create,
            KIND,
            name,
            {"from": plan.current, "to": plan.target},
            steps=operations.planned([(s.name, s.title) for s in plan.steps]),
            created_by=created_by,
        )


def _looks_like_version(text: str) -> bool:
    try:
        upgrade_plan.Version.parse(text)
    except errors.InvalidInput:
        return False
    return True


async def _stored_api_uses(
    creds: ClusterCredentials, name: str, target: str
) -> tuple[list[upgrade_plan.ApiUse], tuple[str, ...]]:
    """Deprecated and removed API versions in last-applied configurations and Helm releases,
    and what could not be checked."""
    try:
        minor = api_lifecycle.Minor.parse(target)
    except ValueError:
        return [], ()  # the planner refuses a malformed target anyway
    try:
        scan = await api_usage.scan(
            creds,
            keep=functools.partial(api_lifecycle.needs_attention, target=minor),
            timeout=API_USAGE_SCAN_SECONDS,
        )
    except errors.PilothouseError as exc:
        log.warning("upgrade.api_usage_unreadable", cluster=name, error=exc.message)
        return [], (f"the scan failed: {exc.message}",)
    gaps: list[str] = []
    if not scan.complete:
        gaps.append(f"the scan stopped after {API_USAGE_SCAN_SECONDS:.0f}s")
    if scan.skipped:
        gaps.append(f"unreadable: {', '.join(scan.skipped[:5])}" + (" …" if len(scan.skipped) > 5 else ""))
    if not scan.complete or scan.skipped:
        log.warning(
            "upgrade.api_usage_partial", cluster=name, complete=scan.complete, skipped=scan.skipped[:20]
        )
    uses = [api_lifecycle.api_use(u.group, u.version, u.kind, u.source, minor) for u in scan.uses]
    uses += [
        api_lifecycle.api_use(
            *api_usage.split_api_version(api_version), kind, f"{count} more objects or Helm releases", minor
        )
        for (api_version, kind), count in scan.omitted.items()
    ]
    return [u for u in uses if u is not None], tuple(gaps)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole > 0 else None


class ControlPlaneUpgrade:
    """The driver of ``upgrade`` operations; see the module docstring."""

    def __init__(self, registry: ClusterRegistry, *, settings: rolling.RollingSettings | None = None) -> None:
        self.registry = registry
        self.settings = settings or rolling.RollingSettings()

    def _load(self, name: str) -> tuple[ClusterRecord, topology.LocalClusterSpec, LocalRuntime]:
        return load_local(self.registry, name)

    async def run_step(
        self, record: OperationRecord, step: operations.Step, report: operations.Report
    ) -> operations.StepOutcome:
        target = str(record.spec["to"])
        if step.name == "preflight":
            return await self._preflight(record.cluster, target)
        if step.name == "finalize":
            return await asyncio.to_thread(self._finalize, record.cluster, target)
        component, _, member = step.name.rpartition("-")
        if component not in _COMPONENTS or not member.isdigit():
            raise errors.InvalidInput(f"unknown upgrade step {step.name!r}", hint="abort this operation")
        return await self._upgrade_process(record.cluster, step.name, _COMPONENTS[component], target, report)

    async def _preflight(self, name: str, target: str) -> operations.StepOutcome:
        await asyncio.to_thread(self.registry.binaries.require, target)
        cluster = await asyncio.to_thread(self.registry.get, name)
        probe = await health.probe_cluster(self.registry, cluster)
        if probe.failing:
            raise errors.Conflict(
                f"cluster {name} is not healthy: {', '.join(probe.failing)} failing",
                hint="repair it, then resume the upgrade with a new `pilothouse upgrade apply`",
                cluster=name,
            )
        return operations.StepOutcome.CHECKED

    async def _upgrade_process(
        self, name: str, process: str, component: Component, target: str, report: operations.Report
    ) -> operations.StepOutcome:
        _record, spec, runtime = await asyncio.to_thread(self._load, name)
        expected = (await asyncio.to_thread(self.registry.binaries.require, target, (component,)))[component]
        persist = persist_runtime(self.registry, name)
        running = await asyncio.to_thread(
            functools.partial(self.registry.local.running_binary, spec, runtime, process, persist=persist)
        )
        if running == expected and runtime.versions.get(process, spec.kubernetes_version) == target:
            await rolling.ensure_in_rotation(runtime, process, self.settings)
            report(f"{process} already runs {target}")
            return operations.StepOutcome.ALREADY_DONE

        def pin(runtime: LocalRuntime) -> None:
            runtime.versions[process] = target

        await rolling.restart_in_rotation(
            self.registry,
            spec,
            runtime,
            process,
            persist=persist,
            report=report,
            settings=self.settings,
            prepare=pin,
        )
        log.info("upgrade.process_upgraded", process=process, version=target)
        return operations.StepOutcome.ACTED

    def _finalize(self, name: str, target: str) -> operations.StepOutcome:
        record, _spec, runtime = self._load(name)
        if record.kubernetes_version == target and not runtime.versions:
            return operations.StepOutcome.ALREADY_DONE
        runtime.versions = {p: v for p, v in runtime.versions.items() if v != target}
        self.registry.store.update(name, kubernetes_version=target, runtime=runtime.to_dict())
        return operations.StepOutcome.ACTED

    async def abort(self, record: OperationRecord) -> str:
        _cluster, spec, runtime = await asyncio.to_thread(self._load, record.cluster)
        await rolling.restore_rotation(runtime, spec.control_planes)
        pinned = sorted(p for p, v in runtime.versions.items() if v == record.spec.get("to"))
        return (
            f"every API server is back in rotation; already on {record.spec.get('to')}: "
            f"{', '.join(pinned) or 'none'}"
        )


def load_local(
    registry: ClusterRegistry, name: str
) -> tuple[ClusterRecord, topology.LocalClusterSpec, LocalRuntime]:
    """A local cluster's record, spec and runtime; ``Conflict`` for other clusters."""
    record = registry.get(name)
    if record.provider != ProviderKind.LOCAL or not record.runtime:
        raise errors.Conflict(
            f"cluster {name!r} is not a local cluster with processes Pilothouse runs",
            hint="abort this operation: `pilothouse operations abort`",
        )
    return record, local_spec(record), LocalRuntime.from_dict(record.runtime)


def persist_runtime(registry: ClusterRegistry, name: str) -> Persist:
    def save(runtime: LocalRuntime) -> None:
        registry.store.update(name, runtime=runtime.to_dict())

    return save
