"""Node rollouts: surge-replace a cluster's nodes with nodes of a new kubelet version.

``Rollouts`` (the service the CLI calls) gathers the facts the pure planner
(``fleet.rollout_plan``) reads, straight from the API server: nodes, pods,
PodDisruptionBudgets, Deployments and StatefulSets (``kube.drain``, over
lightkube). It refuses a plan with blockers, and otherwise records a durable
operation (``fleet.operations``) whose spec holds the batches (which old
nodes, which new node names) and whose journal is ``preflight``,
``prefer-new`` (taint the old nodes PreferNoSchedule, so moved pods land on
new nodes and move once), ``batch-1`` … ``batch-N``, ``verify``.

``NodeRollout`` is that operation's driver. A batch step observes the
cluster before every action, so a batch interrupted by ``kill -9`` and run
again carries on where the cluster stands and repeats nothing that took
effect:

1. health gate: every workload that was healthy when the rollout was
   planned must be available, and none of its pods crash-looping (waiting
   up to ``health_timeout``);
2. create the batch's missing surge nodes and wait until they are Ready;
3. cordon its old nodes that are not cordoned yet (marked
   ``pilothouse.dev/cordoned-by=<operation>``);
4. drain them: each round reads the pods still on them and the budgets
   afresh, evicts through the Eviction API what ``plan_evictions`` allows
   (concurrently; a pod already terminating is never evicted again), and
   backs off while the API server answers 429; evicted pods are recreated by
   their controllers and placed on schedulable nodes by the scheduler;
5. wait until the controllers of the pods it evicted (ReplicaSets,
   StatefulSets) have all their pods Ready again: the replacements are up;
6. delete the drained old nodes that still exist, create the batch's
   remaining new nodes and wait until they are Ready;
7. health gate again.

A drain blocked by budgets for ``pdb_timeout`` seconds, or replacements or a
health gate not Ready for ``health_timeout``, raises
``operations.StepBlocked``: the operation PAUSES with the reason, nothing is
forced. A pause or abort requested while a batch runs takes effect at its
next round. Abort uncordons the nodes this rollout cordoned and removes its
taint; the nodes it created stay (they are Ready and carry pods). A cluster
that stops answering in the middle of a step is retried for
``unreachable_grace`` seconds, then the rollout pauses.

Progress goes to the runner's report (the operation's bar) and, at finer
grain, to the sink ``Rollouts.run`` installs for the task (old nodes
replaced, pods moved off the current batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from pilothouse import errors
from pilothouse.binaries import catalog
from pilothouse.fleet import operations, rollout_plan
from pilothouse.fleet.operations import OperationRunner, StepBlocked, StepOutcome
from pilothouse.fleet.registry import ClusterRegistry
from pilothouse.fleet.rollout_plan import Batch, RolloutFacts, RolloutPlan
from pilothouse.fleet.upgrade_plan import Version
from pilothouse.kube import drain
from pilothouse.kube import nodes as kube_nodes
from pilothouse.progress import ProgressEvent, ProgressSink, discard
from pilothouse.store.operations import OperationRecord, OperationStore
from pilothouse.vocabulary import OUTDATED_TAINT, ClusterPhase, OperationRequest, ProviderKind

log = structlog.get_logger(__name__)

KIND = "rollout"
DEFAULT_PDB_TIMEOUT = 300.0
DEFAULT_HEALTH_TIMEOUT = 120.0
MAX_TIMEOUT = 24 * 3600.0

_progress: ContextVar[ProgressSink] = ContextVar("pilothouse_rollout_progress", default=discard)


@dataclass(frozen=True)
class RolloutSpec:
    """What a rollout operation records at creation (its ``spec``)."""

    to: str
    max_surge: int
    max_unavailable: int
    desired: int
    batches: tuple[Batch, ...]
    exempt: tuple[str, ...]
    pdb_timeout: float
    health_timeout: float

    @property
    def kubelet_version(self) -> str:
        return rollout_plan.kubelet_version(Version.parse(self.to))

    @property
    def old_nodes(self) -> tuple[str, ...]:
        return tuple(n for b in self.batches for n in b.old)

    @property
    def new_nodes(self) -> tuple[str, ...]:
        return tuple(n for b in self.batches for n in b.new)

    def to_dict(self) -> dict[str, Any]:
        return {
            "to": self.to,
            "max_surge": self.max_surge,
            "max_unavailable": self.max_unavailable,
            "desired": self.desired,
            "batches": [b.to_dict() for b in self.batches],
            "exempt": list(self.exempt),
            "pdb_timeout_seconds": self.pdb_timeout,
            "health_timeout_seconds": self.health_timeout,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutSpec:
        return cls(
            to=str(data["to"]),
            max_surge=int(data["max_surge"]),
            max_unavailable=int(data["max_unavailable"]),
            desired=int(data["desired"]),
            batches=tuple(Batch.from_dict(b) for b in data["batches"]),
            exempt=tuple(str(w) for w in data.get("exempt", ())),
            pdb_timeout=float(data.get("pdb_timeout_seconds", DEFAULT_PDB_TIMEOUT)),
            health_timeout=float(data.get("health_timeout_seconds", DEFAULT_HEALTH_TIMEOUT)),
        )


def _check_timeout(value: float, what: str) -> float:
    if not 0 < value <= MAX_TIMEOUT:
        raise errors.InvalidInput(
            f"{what} must be more than 0 and at most 24h (got {value:g} s)", hint=f"e.g. --{what} 5m"
        )
    return value


class Rollouts:
    """Plans, starts and drives node rollouts."""

    def __init__(self, registry: ClusterRegistry, store: OperationStore, runner: OperationRunner) -> None:
        self.registry = registry
        self.store = store
        self.runner = runner

    async def facts(
        self,
        name: str,
        *,
        to: str | None = None,
        max_surge: int | str = 1,
        max_unavailable: int | str = 0,
        replace_all: bool = False,
    ) -> RolloutFacts:
        record = await asyncio.to_thread(self.registry.get, name)
        facts = RolloutFacts(
            cluster=name,
            provider=str(record.provider),
            phase=str(record.phase),
            control_plane=record.kubernetes_version,
            supported=tuple(catalog.supported_versions()),
            desired=int(record.spec.get("nodes", 0)),
            nodes=(),
            target=to,
            max_surge=max_surge,
            max_unavailable=max_unavailable,
            replace_all=replace_all,
            name_for=kube_nodes.simulated_node_name,
        )
        if record.provider != ProviderKind.LOCAL or record.phase != ClusterPhase.RUNNING:
            return facts  # the planner refuses; nothing to read
        creds = await asyncio.to_thread(self.registry.credentials, name)
        try:
            async with drain.open_drain(creds, timeout=10.0) as kube:
                nodes, pods, budgets, workloads = await asyncio.gather(
                    kube.nodes(), kube.pods(), kube.budgets(), kube.workloads()
                )
        except errors.ClusterUnreachable as exc:
            raise errors.ClusterUnreachable(
                f"cannot plan a node rollout of {name}: {exc.message}",
                hint=exc.hint or f"check the cluster: pilothouse fleet status; pilothouse logs {name}",
                cluster=name,
            ) from None
        return replace(facts, nodes=nodes, pods=pods, budgets=budgets, workloads=workloads)

    async def plan(
        self,
        name: str,
        *,
        to: str | None = None,
        max_surge: int | str = 1,
        max_unavailable: int | str = 0,
        replace_all: bool = False,
    ) -> RolloutPlan:
        facts = await self.facts(
            name, to=to, max_surge=max_surge, max_unavailable=max_unavailable, replace_all=replace_all
        )
        return rollout_plan.plan_rollout(facts)

    async def start(
        self,
        name: str,
        *,
        to: str | None = None,
        max_surge: int | str = 1,
        max_unavailable: int | str = 0,
        replace_all: bool = False,
        pdb_timeout: float = DEFAULT_PDB_TIMEOUT,
        health_timeout: float = DEFAULT_HEALTH_TIMEOUT,
        created_by: str = "",
    ) -> OperationRecord:
        """Record the rollout as an operation; refuses (changing nothing) when the plan is blocked."""
        _check_timeout(pdb_timeout, "pdb-timeout")
        _check_timeout(health_timeout, "health-timeout")
        plan = await self.plan(
            name, to=to, max_surge=max_surge, max_unavailable=max_unavailable, replace_all=replace_all
        )
        if not plan.allowed:
            reasons = "; ".join(f.message for f in plan.blockers)
            hints = "; ".join(dict.fromkeys(f.hint for f in plan.blockers if f.hint))
            bad_input = any(f.code.startswith("version-") for f in plan.blockers)
            error = errors.InvalidInput if bad_input else errors.Conflict
            raise error(f"the node rollout of {name} is refused: {reasons}", hint=hints, cluster=name)
        spec = RolloutSpec(
            to=plan.target,
            max_surge=plan.limits.max_surge,
            max_unavailable=plan.limits.max_unavailable,
            desired=plan.desired,
            batches=plan.batches,
            exempt=plan.exempt,
            pdb_timeout=pdb_timeout,
            health_timeout=health_timeout,
        )
        record = await asyncio.to_thread(
            self.store.create,
            KIND,
            name,
            spec.to_dict(),
            steps=operations.planned([(s.name, s.title) for s in plan.steps]),
            created_by=created_by,
        )
        log.info(
            "rollout.started", operation=record.id, cluster=name, to=plan.target, batches=len(plan.batches)
        )
        return record

    async def run(self, operation_id: str, *, progress: ProgressSink = discard) -> OperationRecord:
        """Drive a rollout here (``OperationRunner.run``), with node and pod progress bars."""
        with progress_to(progress):
            return await self.runner.run(operation_id, progress=progress)


@dataclass(frozen=True)
class RolloutSettings:
    """How the driver polls and how long it waits for what is not an operator's choice."""

    poll_interval: float = 0.25
    node_ready_timeout: float = 120.0
    #: Requests in flight at once: evictions, and node creates, cordons, taints and deletes.
    concurrency: int = 32
    #: A cluster that stops answering in the middle of a step is retried this long, then it pauses.
    unreachable_grace: float = 30.0


@dataclass
class _Batch:
    """One run of one batch step: what it needs at hand."""

    record: OperationRecord
    spec: RolloutSpec
    index: int
    kube: drain.DrainClient
    report: operations.Report
    acted: bool = False
    #: Controllers of the pods this run evicted: their replacements must be Ready before the batch ends.
    owners: set[rollout_plan.Owner] = field(default_factory=set)

    @property
    def batch(self) -> Batch:
        return self.spec.batches[self.index]


class NodeRollout:
    """The driver of ``rollout`` operations; see the module docstring."""

    def __init__(
        self,
        registry: ClusterRegistry,
        store: OperationStore,
        *,
        settings: RolloutSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.store = store
        self.settings = settings or RolloutSettings()
        self.clock = clock

    async def run_step(
        self, record: OperationRecord, step: operations.Step, report: operations.Report
    ) -> StepOutcome:
        spec = RolloutSpec.from_dict(record.spec)
        unreachable = rollout_plan.Stall(self.settings.unreachable_grace)
        attempt = 0
        while True:
            try:
                return await self._run_step(record, spec, step, report)
            except errors.ClusterUnreachable as exc:
                if unreachable.observe(False, self.clock()):
                    raise StepBlocked(
                        f"the cluster does not answer: {exc.message}",
                        hint=f"repair it, then `pilothouse operations resume {record.id}`",
                    ) from None
                report(f"the cluster does not answer ({exc.message}); retrying")
                await self._check_requests(record, "waiting for the cluster to answer")
                await asyncio.sleep(rollout_plan.retry_delay(attempt))
                attempt += 1

    async def _run_step(
        self, record: OperationRecord, spec: RolloutSpec, step: operations.Step, report: operations.Report
    ) -> StepOutcome:
        creds = await asyncio.to_thread(self.registry.credentials, record.cluster)
        async with drain.open_drain(creds) as kube:
            if step.name == "preflight":
                return await self._preflight(record, spec, kube)
            if step.name == "prefer-new":
                return await self._prefer_new(record, spec, kube)
            if step.name == "verify":
                return await self._verify(record, spec, kube, report)
            index = rollout_plan.batch_index(step.name)
            if index is None or index >= len(spec.batches):
                raise errors.InvalidInput(f"unknown rollout step {step.name!r}", hint="abort this operation")
            return await self._batch(_Batch(record, spec, index, kube, report))

    # ----- steps --------------------------------------------------------------------------------

    async def _preflight(
        self, record: OperationRecord, spec: RolloutSpec, kube: drain.DrainClient
    ) -> StepOutcome:
        cluster = await asyncio.to_thread(self.registry.get, record.cluster)
        control_plane = Version.parse(cluster.kubernetes_version)
        if Version.parse(spec.to) > control_plane:
            raise errors.Conflict(
                f"the control plane of {record.cluster} runs {control_plane}, older than the rollout's "
                f"target {spec.to}",
                hint="start a new rollout to the control plane's version",
            )
        await kube.nodes()
        return StepOutcome.CHECKED

    async def _prefer_new(
        self, record: OperationRecord, spec: RolloutSpec, kube: drain.DrainClient
    ) -> StepOutcome:
        """Taint every old node PreferNoSchedule, so pods moved by the batches land on new nodes."""
        tainted = await self._each(spec.old_nodes, lambda n: kube.taint(n, OUTDATED_TAINT, record.id))
        return StepOutcome.ACTED if tainted else StepOutcome.ALREADY_DONE

    async def _batch(self, run: _Batch) -> StepOutcome:
        batch = run.batch
        self._report_nodes(run.spec, await run.kube.nodes())
        await self._gate(run.record, run.spec, run.kube, run.report, "before the batch")
        await self._ensure_new_nodes(run, batch.surge)
        present = {n.name for n in await run.kube.nodes()}
        existing = [n for n in batch.old if n in present]
        cordoned = await self._each(existing, lambda n: run.kube.cordon(n, by=run.record.id))
        if cordoned:
            run.acted = True
            run.report(f"cordoned {', '.join(cordoned)}")
        if existing:
            await self._drain(run, existing)
        await self._wait_replacements(run)
        deleted = await self._each(existing, run.kube.delete_node)
        if deleted:
            run.acted = True
            log.info("rollout.nodes_deleted", nodes=deleted)
        self._report_nodes(run.spec, await run.kube.nodes())
        await self._ensure_new_nodes(run, batch.replace)
        await self._gate(run.record, run.spec, run.kube, run.report, "after the batch")
        return StepOutcome.ACTED if run.acted else StepOutcome.ALREADY_DONE

    async def _each(self, names: Sequence[str], act: Callable[[str], Awaitable[bool]]) -> list[str]:
        """Run ``act`` on every name, a bounded number at a time; the names it changed something for."""
        gate = asyncio.Semaphore(self.settings.concurrency)

        async def one(name: str) -> bool:
            async with gate:
                return await act(name)

        changed = await asyncio.gather(*(one(n) for n in names))
        return [n for n, did in zip(names, changed, strict=True) if did]

    async def _verify(
        self, record: OperationRecord, spec: RolloutSpec, kube: drain.DrainClient, report: operations.Report
    ) -> StepOutcome:
        nodes = {n.name: n for n in await kube.nodes()}
        left = [n for n in spec.old_nodes if n in nodes]
        if left:
            raise StepBlocked(
                f"old nodes are back: {', '.join(left)}",
                hint="something re-created them; abort this rollout and start a new one",
            )
        wrong = [
            n
            for n in spec.new_nodes
            if n not in nodes or not nodes[n].ready or nodes[n].kubelet_version != spec.kubelet_version
        ]
        if wrong:
            raise StepBlocked(
                f"new nodes missing, not Ready or not on {spec.kubelet_version}: {', '.join(wrong)}",
                hint=f"check kwok (pilothouse logs {record.cluster} kwok), then resume",
            )
        await self._gate(record, spec, kube, report, "at the end")
        return StepOutcome.CHECKED

    # ----- parts of a batch ---------------------------------------------------------------------

    async def _ensure_new_nodes(self, run: _Batch, names: Sequence[str]) -> None:
        version = run.spec.kubelet_version

        async def create(name: str) -> bool:
            return await run.kube.create_node(name, kubelet_version=version, rollout=run.record.id)

        created = await self._each(names, create)
        if created:
            run.acted = True
            run.report(f"created {', '.join(created)} ({version})")
            log.info("rollout.nodes_created", nodes=created, version=version)
        if names:
            await self._wait_ready(run, names)

    async def _wait_ready(self, run: _Batch, names: Sequence[str]) -> None:
        stall = rollout_plan.Stall(self.settings.node_ready_timeout)
        while True:
            ready = {n.name for n in await run.kube.nodes() if n.ready}
            waiting = [n for n in names if n not in ready]
            if not waiting:
                return
            if stall.observe(False, self.clock()):
                raise StepBlocked(
                    f"new node(s) not Ready after {stall.timeout:.0f} s: {', '.join(waiting)}",
                    hint=f"check kwok (pilothouse logs {run.record.cluster} kwok), then resume",
                )
            run.report(f"waiting for {len(waiting)} new node(s) to be Ready")
            await self._check_requests(run.record, "waiting for new nodes")
            await asyncio.sleep(self.settings.poll_interval)

    async def _drain(self, run: _Batch, nodes: Sequence[str]) -> None:
        """Evict every pod from ``nodes`` as fast as the budgets allow; return when none is left."""
        stall = rollout_plan.Stall(run.spec.pdb_timeout)
        gate = asyncio.Semaphore(self.settings.concurrency)
        idle = 0
        remaining_before: int | None = None
        total: int | None = None
        while True:
            pods, budgets = await asyncio.gather(run.kube.pods_on(nodes), run.kube.budgets())
            wave = rollout_plan.plan_evictions(pods, budgets)
            remaining = len(pods) - wave.staying
            if total is None:
                total = remaining
            if total:
                _progress.get()(ProgressEvent("pods", "pods moved off the batch", total - remaining, total))
            if wave.drained:
                return
            if wave.unmanaged:
                raise StepBlocked(
                    f"pods without a controller on {', '.join(nodes)}: {', '.join(wave.unmanaged[:5])}",
                    hint="delete them or run them under a controller, then resume; or abort",
                )

            async def evict(pod: drain.PodState) -> drain.EvictionOutcome:
                async with gate:
                    return await run.kube.evict(pod)

            outcomes = await asyncio.gather(*(evict(p) for p in wave.evict))
            accepted = [o for o in outcomes if o.result is drain.EvictionResult.EVICTED]
            if accepted:
                run.acted = True
                keys = {o.pod for o in accepted}
                run.owners.update(rollout_plan.owner_of(p) for p in wave.evict if p.key in keys)
                log.info("rollout.evicted", pods=[o.pod for o in accepted])
            progressing = bool(accepted) or (remaining_before is not None and remaining < remaining_before)
            remaining_before = remaining
            if stall.observe(progressing, self.clock()):
                refused = [o.message for o in outcomes if o.result is not drain.EvictionResult.EVICTED]
                reason = wave.explain() if wave.waiting or not refused else refused[0]
                raise StepBlocked(
                    f"the drain of {', '.join(nodes)} made no progress for {stall.timeout:.0f} s: {reason}",
                    hint="scale the workload up or relax its PodDisruptionBudget, then "
                    f"`pilothouse operations resume {run.record.id}`; or abort it (its nodes are uncordoned)",
                )
            if progressing:
                idle = 0
                delay = self.settings.poll_interval
            else:
                delay = rollout_plan.retry_delay(idle)
                idle += 1
                retry_after = [o.retry_after for o in outcomes if o.retry_after]
                delay = max([delay, *retry_after])
                run.report(f"{remaining} pod(s) left; waiting: {wave.explain()}")
            await self._check_requests(run.record, f"draining {', '.join(nodes)}")
            await asyncio.sleep(delay)

    async def _wait_replacements(self, run: _Batch) -> None:
        """Wait until the controllers of the evicted pods have all their pods Ready again."""
        owners = {o for o in run.owners if not rollout_plan.owner_exempt(o, run.spec.exempt)}
        stall = rollout_plan.Stall(run.spec.health_timeout)
        while owners:
            desired = await run.kube.replicas(owners)
            pods = await run.kube.pods_in(namespace for _kind, namespace, _name in desired)
            missing = rollout_plan.replacements_missing(desired, pods)
            if not missing:
                return
            if stall.observe(False, self.clock()):
                raise StepBlocked(
                    f"replacement pods not Ready after {stall.timeout:.0f} s: " + "; ".join(missing[:5]),
                    hint=f"see why they do not start, then `pilothouse operations resume {run.record.id}`; "
                    "or abort",
                )
            run.report(f"waiting for replacement pods: {'; '.join(missing[:3])}")
            await self._check_requests(run.record, "waiting for replacement pods")
            await asyncio.sleep(self.settings.poll_interval)

    async def _gate(
        self,
        record: OperationRecord,
        spec: RolloutSpec,
        kube: drain.DrainClient,
        report: operations.Report,
        when: str,
    ) -> None:
        """Wait until every workload that was healthy at the start is available again."""
        stall = rollout_plan.Stall(spec.health_timeout)
        while True:
            workloads, pods = await asyncio.gather(kube.workloads(), kube.pods())
            failing = rollout_plan.failing_workloads(workloads, exempt=spec.exempt)
            failing += rollout_plan.crashing_pods(pods, exempt=spec.exempt)
            if not failing:
                return
            if stall.observe(False, self.clock()):
                raise StepBlocked(
                    f"health gate {when}: workloads failing for {stall.timeout:.0f} s: "
                    + "; ".join(failing[:5]),
                    hint=f"repair them, then `pilothouse operations resume {record.id}`; or abort",
                )
            report(f"health gate {when}: waiting for {'; '.join(failing[:3])}")
            await self._check_requests(record, f"waiting for workloads {when}")
            await asyncio.sleep(self.settings.poll_interval)

    async def _check_requests(self, record: OperationRecord, doing: str) -> None:
        current = await asyncio.to_thread(self.store.get, record.id)
        if current.requested is OperationRequest.PAUSE:
            raise StepBlocked(f"paused on request while {doing}")
        if current.requested is OperationRequest.ABORT:
            raise StepBlocked(f"abort requested while {doing}")

    def _report_nodes(self, spec: RolloutSpec, nodes: Sequence[drain.NodeState]) -> None:
        present = {n.name for n in nodes}
        replaced = sum(n not in present for n in spec.old_nodes)
        _progress.get()(ProgressEvent("nodes", "old nodes replaced", replaced, len(spec.old_nodes)))

    # ----- abort --------------------------------------------------------------------------------

    async def abort(self, record: OperationRecord) -> str:
        spec = RolloutSpec.from_dict(record.spec)
        try:
            creds = await asyncio.to_thread(self.registry.credentials, record.cluster)
            async with drain.open_drain(creds) as kube:
                uncordoned = await self._each(spec.old_nodes, lambda n: kube.uncordon(n, by=record.id))
                await self._each(spec.old_nodes, lambda n: kube.untaint(n, OUTDATED_TAINT, record.id))
                created = sorted(n.name for n in await kube.nodes() if n.rollout == record.id)
        except errors.PilothouseError as exc:
            return (
                f"could not uncordon the nodes it cordoned ({exc.message}); uncordon the nodes "
                f"annotated pilothouse.dev/cordoned-by={record.id} by hand"
            )
        log.info("rollout.aborted", uncordoned=uncordoned, created=created)
        return (
            f"uncordoned: {', '.join(uncordoned) or 'none'}; "
            f"new nodes kept ({spec.kubelet_version}): {', '.join(created) or 'none'}"
        )


@contextlib.contextmanager
def progress_to(sink: ProgressSink) -> Iterator[None]:
    """Send the fine-grained rollout progress of this task (and its children) to ``sink``."""
    token = _progress.set(sink)
    try:
        yield
    finally:
        _progress.reset(token)
