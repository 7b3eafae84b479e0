"""Node rollout planning: which nodes go in which batch, which pods may be evicted now, and
when a rollout must stop and wait.

Pure: no I/O, no clock (callers pass ``now``). ``fleet.rollouts`` gathers the
facts (nodes, pods, PodDisruptionBudgets and workloads read through
``kube.drain``), records the plan as a durable operation and carries it out;
this module only decides. Its inputs are structural (``NodeLike``,
``PodLike``, ``BudgetLike``, ``WorkloadLike``): ``kube.drain``'s states and
``kube.summaries.WorkloadSummary`` satisfy them, and tests pass their own.

**Batches.** The terms are those of a Deployment's (and Cluster API's
MachineDeployment's) rolling update, applied to nodes: ``desired`` is the
cluster's node count; ``maxSurge`` nodes may exist above it and
``maxUnavailable`` below it (a cordoned or draining node is unavailable).
Each is a count or a percentage of ``desired`` (surge rounds up, unavailable
rounds down, as Kubernetes does) and they may not both be 0. Old nodes are
replaced in batches of ``maxSurge + maxUnavailable``: a batch first creates
its surge nodes, then cordons and drains its old nodes, deletes them, and
creates the rest of its new nodes. Before the first batch every old node gets
a ``PreferNoSchedule`` taint (as Cluster API taints outdated nodes during a
rolling update), so the scheduler puts moved pods on new nodes, and a pod is
moved once rather than again with each batch. ``plan_batches`` keeps both bounds at
every moment (``simulate`` replays a plan to check that) and ends at
``desired`` nodes: a cluster left above it by an aborted rollout sheds the
surplus in its first batches.

**Evictions.** ``plan_evictions`` picks, from the pods still on draining
nodes, those the API server should accept now: each PodDisruptionBudget's
``disruptionsAllowed`` is spent pod by pod, pods without a budget go at once
(as ``kubectl drain`` does), DaemonSet and mirror pods stay (they go with
the node), and pods without a controller block the drain (they would not
come back). The API server enforces the budgets whatever this module
decides; the plan only avoids requests it would refuse. Retries of a refused
eviction (429) back off with ``retry_delay``.

**Waiting.** ``Stall`` tells a wait that is still making progress from one
that has stalled past its timeout: a drain blocked by a budget that allows
nothing, or a health gate that stays red (``failing_workloads``: not fully
available; ``crashing_pods``: containers that keep failing to start).
Workloads already failing when the rollout is planned are exempt. A stalled
rollout pauses with the reason; it never breaks a budget.

Findings, each with a stable ``code`` (blockers refuse the rollout):
  ``version-unknown``        the target is not a release Pilothouse supports
  ``version-newer``          the target is newer than the control plane
  ``version-too-old``        the target is more than 3 minors older than the control plane
  ``not-local``              an imported cluster: Pilothouse cannot create its nodes
  ``cluster-not-running``    the cluster is not Running
  ``nothing-to-replace``     every node already runs the target (``--all`` replaces them anyway)
  ``no-desired-size``        the cluster is meant to have no nodes
  ``cluster-shrinks``        (warning) more nodes than the cluster is meant to have: it ends at its size
  ``unmanaged-pods``         pods without a controller on nodes to replace
  ``pdb-blocks-drain``       (warning) a budget allows no disruption now: the rollout will wait
  ``single-replica``         (warning) a workload with one replica is down while it moves
  ``workloads-failing``      (warning) workloads already failing: the health gate ignores them
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pilothouse import errors
from pilothouse.fleet.upgrade_plan import KUBELET_MAX_SKEW, Finding, Judged, PlanStep, Severity, Version

#: Delays between eviction rounds that made no progress (a 429 from a budget); the last repeats.
RETRY_DELAYS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 5.0)
DAEMONSET = "DaemonSet"
#: Owner kinds whose pods come back elsewhere when evicted.
CONTROLLERS = frozenset({"ReplicaSet", "StatefulSet", "ReplicationController", "Job", DAEMONSET})
#: Container waiting reasons that mean a pod keeps failing to start.
CRASHING = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
_COUNT_OR_PERCENT = re.compile(r"^\s*(\d{1,6})\s*(%?)\s*$")


# ----- what the planner reads ------------------------------------------------------------------


class NodeLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def kubelet_version(self) -> str: ...
    @property
    def unschedulable(self) -> bool: ...


class PodLike(Protocol):
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def node(self) -> str: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def phase(self) -> str: ...
    @property
    def ready(self) -> bool: ...
    @property
    def terminating(self) -> bool: ...
    @property
    def owner_kind(self) -> str: ...
    @property
    def owner_name(self) -> str: ...
    @property
    def mirror(self) -> bool: ...
    @property
    def waiting_reason(self) -> str: ...  # e.g. CrashLoopBackOff; "" when no container waits


class ExpressionLike(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def operator(self) -> str: ...
    @property
    def values(self) -> Sequence[str]: ...


class SelectorLike(Protocol):
    @property
    def match_labels(self) -> Mapping[str, str]: ...
    @property
    def match_expressions(self) -> Sequence[ExpressionLike]: ...


class BudgetLike(Protocol):
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def selector(self) -> SelectorLike | None: ...
    @property
    def disruptions_allowed(self) -> int: ...
    @property
    def current_healthy(self) -> int: ...
    @property
    def desired_healthy(self) -> int: ...
    @property
    def processed(self) -> bool: ...  # status.observedGeneration caught up with the spec
    @property
    def unhealthy_pod_eviction_policy(self) -> str: ...


class WorkloadLike(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def desired(self) -> int: ...
    @property
    def ready(self) -> int: ...
    @property
    def available(self) -> int: ...
    @property
    def observed(self) -> bool: ...


# ----- label selectors -------------------------------------------------------------------------


def selector_matches(selector: SelectorLike | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label selector semantics: every term must hold; an empty selector matches
    everything, a missing (None) one matches nothing (as for PodDisruptionBudgets)."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    for expression in selector.match_expressions:
        present = expression.key in labels
        value = labels.get(expression.key)
        operator = expression.operator
        if operator == "In" and value not in expression.values:
            return False
        if operator == "NotIn" and present and value in expression.values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


def budgets_covering(pod: PodLike, budgets: Iterable[BudgetLike]) -> list[BudgetLike]:
    return [b for b in budgets if b.namespace == pod.namespace and selector_matches(b.selector, pod.labels)]


# ----- maxSurge / maxUnavailable -------------------------------------------------------------


def resolve_count(value: int | str, *, desired: int, round_up: bool, what: str) -> int:
    """A count (``2``) or a percentage of ``desired`` (``"25%"``) as a number of nodes."""
    text = str(value)
    found = _COUNT_OR_PERCENT.match(text)
    if found is None or isinstance(value, bool):
        raise errors.InvalidInput(
            f"{what} must be a whole number of nodes or a percentage such as 25% (got {text!r})",
            hint=f"e.g. --{what} 1 or --{what} 20%",
        )
    number = int(found[1])
    if not found[2]:
        return number
    if number > 100:
        raise errors.InvalidInput(
            f"{what} {text.strip()} is more than 100% of the nodes", hint="use a percentage from 0% to 100%"
        )
    share = desired * number / 100
    return math.ceil(share) if round_up else math.floor(share)


@dataclass(frozen=True)
class Limits:
    max_surge: int
    max_unavailable: int

    @property
    def batch_size(self) -> int:
        return self.max_surge + self.max_unavailable


def resolve_limits(max_surge: int | str, max_unavailable: int | str, *, desired: int) -> Limits:
    """Both bounds in nodes; ``InvalidInput`` for nonsense or when both come to 0."""
    surge = resolve_count(max_surge, desired=desired, round_up=True, what="max-surge")
    unavailable = resolve_count(max_unavailable, desired=desired, round_up=False, what="max-unavailable")
    if surge == 0 and unavailable == 0:
        raise errors.InvalidInput(
            f"max-surge {max_surge} and max-unavailable {max_unavailable} both come to 0 nodes "
            f"(of {desired}): no node could ever be replaced",
            hint="allow at least one surge node (--max-surge 1) or one unavailable node",
        )
    return Limits(surge, unavailable)


# ----- batches ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """Old nodes replaced together: ``surge`` nodes are created before they are drained,
    ``replace`` nodes after they are deleted."""

    old: tuple[str, ...]
    surge: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()

    @property
    def new(self) -> tuple[str, ...]:
        return self.surge + self.replace

    def to_dict(self) -> dict[str, list[str]]:
        return {"old": list(self.old), "surge": list(self.surge), "replace": list(self.replace)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Batch:
        return cls(
            old=tuple(str(n) for n in data.get("old", ())),
            surge=tuple(str(n) for n in data.get("surge", ())),
            replace=tuple(str(n) for n in data.get("replace", ())),
        )

    @property
    def title(self) -> str:
        def names(nodes: tuple[str, ...]) -> str:
            return ", ".join(nodes) if len(nodes) <= 3 else f"{len(nodes)} nodes ({nodes[0]} … {nodes[-1]})"

        new = f" with {names(self.new)}" if self.new else ""
        return f"replace {names(self.old)}{new}"


def free_names(taken: Collection[str], count: int, name_for: Callable[[int], str]) -> list[str]:
    """``count`` names ``name_for(0)``, ``name_for(1)``, … that are not ``taken``, lowest first."""
    names: list[str] = []
    index = 0
    while len(names) < count:
        candidate = name_for(index)
        if candidate not in taken:
            names.append(candidate)
        index += 1
    return names


def plan_batches(
    old: Sequence[str], *, kept: int, desired: int, new_names: Sequence[str], limits: Limits
) -> tuple[Batch, ...]:
    """Batches replacing ``old`` (in order) with ``new_names`` so the cluster ends at ``desired``
    nodes (``kept`` nodes stay as they are); see the module docstring for the bounds kept."""
    size = max(1, limits.batch_size)
    chunks = [tuple(old[i : i + size]) for i in range(0, len(old), size)]
    count = kept + len(old)
    surplus = count - desired  # > 0: more nodes than desired (shed first); < 0: fewer
    left = list(new_names)
    batches = []
    for index, chunk in enumerate(chunks):
        wanted = len(chunk)
        if surplus > 0:
            shed = min(surplus, wanted)
            wanted -= shed
            surplus -= shed
        elif surplus < 0 and index == 0:
            wanted -= surplus
            surplus = 0
        if index == len(chunks) - 1:
            wanted = len(left)
        wanted = min(wanted, len(left))
        surge = max(0, min(wanted, limits.max_surge - max(0, count - desired)))
        batches.append(Batch(old=chunk, surge=tuple(left[:surge]), replace=tuple(left[surge:wanted])))
        del left[:wanted]
        count += wanted - len(chunk)
    return tuple(batches)


@dataclass(frozen=True)
class Moment:
    """Node counts at one moment of a simulated rollout."""

    batch: int
    stage: str  # "surged", "drained", "replaced"
    total: int  # nodes that exist
    available: int  # nodes that exist and are not cordoned


def simulate(batches: Sequence[Batch], *, nodes: int) -> list[Moment]:
    """Replay a plan on counts: what the cluster looks like after each stage of each batch."""
    total = available = nodes
    moments = []
    for index, batch in enumerate(batches):
        total += len(batch.surge)
        available += len(batch.surge)
        moments.append(Moment(index, "surged", total, available))
        available -= len(batch.old)
        moments.append(Moment(index, "drained", total, available))
        total -= len(batch.old)
        total += len(batch.replace)
        available += len(batch.replace)
        moments.append(Moment(index, "replaced", total, available))
    return moments


# ----- the plan --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutFacts:
    """Everything ``plan_rollout`` reads."""

    cluster: str
    provider: str  # "local" or "import"
    phase: str  # the cluster's phase, e.g. "Running"
    control_plane: str  # the API server's version, e.g. "1.36.3"
    supported: tuple[str, ...]
    desired: int
    nodes: Sequence[NodeLike]
    pods: Sequence[PodLike] = ()
    budgets: Sequence[BudgetLike] = ()
    workloads: Sequence[WorkloadLike] = ()
    target: str | None = None  # None: the control plane's version
    max_surge: int | str = 1
    max_unavailable: int | str = 0
    replace_all: bool = False
    name_for: Callable[[int], str] = field(default=lambda i: f"node-{i:03d}")


@dataclass(frozen=True)
class RolloutPlan(Judged):
    cluster: str
    target: str
    limits: Limits
    desired: int
    batches: tuple[Batch, ...]
    exempt: tuple[str, ...]  # workloads already failing: the health gate ignores them
    findings: tuple[Finding, ...]

    @property
    def old_nodes(self) -> tuple[str, ...]:
        return tuple(n for b in self.batches for n in b.old)

    @property
    def steps(self) -> tuple[PlanStep, ...]:
        return (
            PlanStep("preflight", f"check the cluster and version {self.target}"),
            PlanStep("prefer-new", f"taint the {len(self.old_nodes)} old node(s) PreferNoSchedule"),
            *(PlanStep(batch_step(i), b.title) for i, b in enumerate(self.batches)),
            PlanStep("verify", f"check every node runs {self.target} and every workload is available"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "target": self.target,
            "desired": self.desired,
            "max_surge": self.limits.max_surge,
            "max_unavailable": self.limits.max_unavailable,
            "allowed": self.allowed,
            "batches": [b.to_dict() for b in self.batches],
            "steps": [{"name": s.name, "title": s.title} for s in self.steps],
            "exempt": list(self.exempt),
            "blockers": [f.to_dict() for f in self.blockers],
            "warnings": [f.to_dict() for f in self.warnings],
        }


def batch_step(index: int) -> str:
    return f"batch-{index + 1}"


def batch_index(step: str) -> int | None:
    """The batch a step name stands for (``batch-3`` → 2), None for other steps."""
    prefix, _, number = step.partition("-")
    return int(number) - 1 if prefix == "batch" and number.isdigit() and int(number) > 0 else None


def kubelet_version(version: Version) -> str:
    return f"v{version}"


def workload_id(workload: WorkloadLike) -> str:
    return f"{workload.kind} {workload.namespace}/{workload.name}"


def _version_findings(facts: RolloutFacts, target: Version, control_plane: Version) -> list[Finding]:
    found = []
    if str(target) not in facts.supported:
        found.append(
            Finding(
                "version-unknown",
                Severity.BLOCKER,
                f"Kubernetes {target} is not a release Pilothouse supports "
                f"(supported: {', '.join(facts.supported) or 'none'})",
                "choose one of the supported versions",
            )
        )
    if target > control_plane:
        found.append(
            Finding(
                "version-newer",
                Severity.BLOCKER,
                f"nodes on {target} would be newer than the control plane ({control_plane}); "
                "kubelets must never be newer than the API server",
                f"upgrade the control plane first: pilothouse upgrade apply {facts.cluster} --to {target}",
            )
        )
    elif (target.major, target.minor + KUBELET_MAX_SKEW) < (control_plane.major, control_plane.minor):
        found.append(
            Finding(
                "version-too-old",
                Severity.BLOCKER,
                f"nodes on {target} would be more than {KUBELET_MAX_SKEW} minors older than the "
                f"control plane ({control_plane})",
                f"roll out a version from {control_plane.major}.{control_plane.minor - KUBELET_MAX_SKEW} "
                f"to {control_plane}",
            )
        )
    return found


def _cluster_findings(facts: RolloutFacts) -> list[Finding]:
    found = []
    if facts.provider != "local":
        found.append(
            Finding(
                "not-local",
                Severity.BLOCKER,
                f"cluster {facts.cluster} was imported; Pilothouse cannot create nodes for it",
                "replace its nodes with the tools that created it",
            )
        )
    if facts.phase != "Running":
        found.append(
            Finding(
                "cluster-not-running",
                Severity.BLOCKER,
                f"cluster {facts.cluster} is {facts.phase}, not Running",
                f"start it first: pilothouse cluster start {facts.cluster}",
            )
        )
    return found


def _workload_findings(facts: RolloutFacts, old: Collection[str]) -> tuple[list[Finding], tuple[str, ...]]:
    found = []
    draining = [p for p in facts.pods if p.node in old and not p.terminating]
    unmanaged = sorted(
        f"{p.namespace}/{p.name}" for p in draining if not p.mirror and p.owner_kind not in CONTROLLERS
    )
    if unmanaged:
        shown = ", ".join(unmanaged[:5]) + (f" and {len(unmanaged) - 5} more" if len(unmanaged) > 5 else "")
        found.append(
            Finding(
                "unmanaged-pods",
                Severity.BLOCKER,
                f"{len(unmanaged)} pod(s) without a controller run on nodes to replace: {shown}; "
                "evicted, they would not come back",
                "run them under a Deployment, StatefulSet or Job, or delete them",
            )
        )
    blocking = {
        (b.namespace, b.name): b
        for p in draining
        for b in budgets_covering(p, facts.budgets)
        if b.disruptions_allowed <= 0
    }
    found += [
        Finding(
            "pdb-blocks-drain",
            Severity.WARNING,
            f"PodDisruptionBudget {ns}/{name} allows no disruption now "
            f"({b.current_healthy} healthy, {b.desired_healthy} required)",
            "the rollout waits for it and pauses after --pdb-timeout; scale the workload up or relax the budget",
            subject=f"{ns}/{name}",
        )
        for (ns, name), b in sorted(blocking.items())
    ]
    found += [
        Finding(
            "single-replica",
            Severity.WARNING,
            f"{w.kind} {w.namespace}/{w.name} has a single replica: it is unavailable while it moves",
            "run two or more replicas with a PodDisruptionBudget",
            subject=f"{w.namespace}/{w.name}",
        )
        for w in sorted(facts.workloads, key=lambda w: (w.namespace, w.name, w.kind))
        if w.desired == 1 and w.kind in ("Deployment", "StatefulSet")
    ]
    failing = (*failing_workloads(facts.workloads, exempt=()), *crashing_pods(facts.pods, exempt=()))
    if failing:
        found.append(
            Finding(
                "workloads-failing",
                Severity.WARNING,
                f"already failing before the rollout: {'; '.join(failing)}",
                "the health gate ignores these; it pauses the rollout when another workload fails",
            )
        )
    exempt = {workload_id(w) for w in facts.workloads if not workload_healthy(w)}
    exempt |= {workload_of(owner_of(p)) for p in facts.pods if p.waiting_reason in CRASHING}
    return found, tuple(sorted(exempt))


def plan_rollout(facts: RolloutFacts) -> RolloutPlan:
    """The plan of replacing ``facts.cluster``'s out-of-date nodes (all with ``replace_all``).

    ``InvalidInput`` for a malformed version or nonsense limits; other problems are findings."""
    control_plane = Version.parse(facts.control_plane, what="control-plane version")
    target = Version.parse(facts.target, what="target version") if facts.target else control_plane
    limits = resolve_limits(facts.max_surge, facts.max_unavailable, desired=facts.desired)
    wanted = kubelet_version(target)
    nodes = sorted(facts.nodes, key=lambda n: n.name)
    old = [n.name for n in nodes if facts.replace_all or Version.lenient(n.kubelet_version) != target]
    kept = len(nodes) - len(old)
    findings = [*_version_findings(facts, target, control_plane), *_cluster_findings(facts)]
    if facts.desired < 1:
        findings.append(
            Finding(
                "no-desired-size",
                Severity.BLOCKER,
                f"cluster {facts.cluster} is meant to have no nodes: replacing its {len(nodes)} node(s) would "
                "leave it with none",
                "recreate the cluster with --nodes N",
            )
        )
    elif len(nodes) > facts.desired:
        findings.append(
            Finding(
                "cluster-shrinks",
                Severity.WARNING,
                f"the cluster has {len(nodes)} nodes and is meant to have {facts.desired}: the rollout "
                f"ends at {facts.desired}, removing {len(nodes) - facts.desired}",
                "that is how the surge nodes an aborted rollout kept are given back",
            )
        )
    if not old:
        findings.append(
            Finding(
                "nothing-to-replace",
                Severity.BLOCKER,
                f"all {len(nodes)} node(s) of {facts.cluster} already run {wanted}",
                "pass --all to replace them anyway, or --to another version",
            )
        )
    workload_findings, exempt = _workload_findings(facts, set(old))
    findings += workload_findings
    new_names = free_names({n.name for n in nodes}, max(0, facts.desired - kept), facts.name_for)
    batches = plan_batches(old, kept=kept, desired=facts.desired, new_names=new_names, limits=limits)
    findings.sort(key=lambda f: (f.severity is not Severity.BLOCKER, f.code, f.subject))
    return RolloutPlan(
        cluster=facts.cluster,
        target=str(target),
        limits=limits,
        desired=facts.desired,
        batches=batches,
        exempt=exempt,
        findings=tuple(findings),
    )


# ----- evictions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    pod: str  # namespace/name
    node: str
    reason: str


P = TypeVar("P", bound=PodLike)


@dataclass(frozen=True)
class EvictionWave(Generic[P]):
    """What to do now with the pods of the nodes being drained."""

    evict: tuple[P, ...] = ()  # ask the API server now
    waiting: tuple[Waiting, ...] = ()  # a budget allows no more right now
    unmanaged: tuple[str, ...] = ()  # no controller: evicting would lose them
    terminating: int = 0  # evicted, still going away
    staying: int = 0  # DaemonSet and mirror pods: they go with the node

    @property
    def drained(self) -> bool:
        """Nothing left to evict or to wait for."""
        return not (self.evict or self.waiting or self.unmanaged or self.terminating)

    def explain(self) -> str:
        reasons = Counter(w.reason for w in self.waiting)
        text = "; ".join(f"{reason} ({count} pod(s) waiting)" for reason, count in reasons.most_common(3))
        if self.unmanaged:
            text = f"pods without a controller: {', '.join(self.unmanaged[:5])}" + (
                f"; {text}" if text else ""
            )
        return text or "nothing is blocked"


def _healthy(pod: PodLike) -> bool:
    return pod.phase == "Running" and pod.ready


def plan_evictions(pods: Iterable[P], budgets: Sequence[BudgetLike]) -> EvictionWave[P]:
    """The pods of draining nodes the API server should let go now (see the module docstring).

    A budget's ``disruptionsAllowed`` already counts evictions it has accepted whose pods are
    still there, so a fresh read each round keeps this from over-spending it."""
    remaining = {(b.namespace, b.name): b.disruptions_allowed for b in budgets}
    evict: list[P] = []
    waiting: list[Waiting] = []
    unmanaged: list[str] = []
    terminating = staying = 0
    for pod in sorted(pods, key=lambda p: (p.namespace, p.name)):
        key = f"{pod.namespace}/{pod.name}"
        if pod.terminating:
            terminating += 1
            continue
        if pod.mirror or pod.owner_kind == DAEMONSET:
            staying += 1
            continue
        if pod.owner_kind not in CONTROLLERS:
            unmanaged.append(key)
            continue
        if pod.phase in ("Succeeded", "Failed"):
            evict.append(pod)  # finished pods are evicted whatever the budgets say
            continue
        covering = budgets_covering(pod, budgets)
        if not covering:
            evict.append(pod)
            continue
        if len(covering) > 1:
            names = ", ".join(f"{b.namespace}/{b.name}" for b in covering)
            waiting.append(
                Waiting(key, pod.node, f"covered by several PodDisruptionBudgets ({names}): not evictable")
            )
            continue
        budget = covering[0]
        name = f"{budget.namespace}/{budget.name}"
        if not budget.processed:
            waiting.append(Waiting(key, pod.node, f"PodDisruptionBudget {name} is not processed yet"))
            continue
        if not _healthy(pod) and (
            budget.unhealthy_pod_eviction_policy == "AlwaysAllow"
            or budget.current_healthy >= budget.desired_healthy
        ):
            evict.append(pod)  # an unhealthy pod does not spend the budget
            continue
        if remaining[(budget.namespace, budget.name)] > 0:
            remaining[(budget.namespace, budget.name)] -= 1
            evict.append(pod)
            continue
        waiting.append(
            Waiting(
                key,
                pod.node,
                f"PodDisruptionBudget {name} allows no disruption now "
                f"({budget.current_healthy} healthy, {budget.desired_healthy} required)",
            )
        )
    return EvictionWave(tuple(evict), tuple(waiting), tuple(unmanaged), terminating, staying)


def retry_delay(attempt: int) -> float:
    """Seconds before the ``attempt``-th consecutive round without progress (0-based)."""
    return RETRY_DELAYS[min(max(attempt, 0), len(RETRY_DELAYS) - 1)]


# ----- waiting and health gates ----------------------------------------------------------------

#: A pod's controller: (kind, namespace, name), e.g. ("ReplicaSet", "shop", "web-5d8f7c").
Owner = tuple[str, str, str]


def owner_of(pod: PodLike) -> Owner:
    return (pod.owner_kind, pod.namespace, pod.owner_name)


def workload_of(owner: Owner) -> str:
    """The workload a pod's controller stands for: the ReplicaSet ``web-5d8f7c`` is the
    Deployment ``web``'s (its name is the Deployment's plus a template hash)."""
    kind, namespace, name = owner
    if kind == "ReplicaSet":
        return f"Deployment {namespace}/{name.rsplit('-', 1)[0]}"
    return f"{kind} {namespace}/{name}"


def owner_exempt(owner: Owner, exempt: Collection[str]) -> bool:
    """Whether the controller belongs to a workload the health gate ignores."""
    return workload_of(owner) in exempt


def crashing_pods(pods: Iterable[PodLike], *, exempt: Collection[str]) -> list[str]:
    """``"pod shop/web-5d8f7c-x2: CrashLoopBackOff"`` for every pod whose containers keep failing
    to start (and whose workload is not exempt): a workload can look available while its new
    pods crash, during its own rolling update."""
    return [
        f"pod {p.namespace}/{p.name}: {p.waiting_reason}"
        for p in sorted(pods, key=lambda p: (p.namespace, p.name))
        if p.waiting_reason in CRASHING and not p.terminating and not owner_exempt(owner_of(p), exempt)
    ]


def replacements_missing(desired: Mapping[Owner, int], pods: Iterable[PodLike]) -> list[str]:
    """``"ReplicaSet shop/web-5d8f7c: 2/3 pods Ready"`` for every controller with fewer Ready,
    non-terminating pods than it wants: the replacements of evicted pods are not all up yet."""
    ready = Counter(owner_of(p) for p in pods if _healthy(p) and not p.terminating)
    return [
        f"{kind} {namespace}/{name}: {ready[(kind, namespace, name)]}/{count} pods Ready"
        for (kind, namespace, name), count in sorted(desired.items())
        if ready[(kind, namespace, name)] < count
    ]


def workload_healthy(workload: WorkloadLike) -> bool:
    return workload.observed and workload.ready >= workload.desired and workload.available >= workload.desired


def failing_workloads(workloads: Iterable[WorkloadLike], *, exempt: Collection[str]) -> list[str]:
    """``"Deployment shop/web: 1/3 ready"`` for every workload not fully available (and not exempt)."""
    return [
        f"{workload_id(w)}: {w.ready}/{w.desired} ready"
        for w in sorted(workloads, key=lambda w: (w.namespace, w.name, w.kind))
        if not workload_healthy(w) and workload_id(w) not in exempt
    ]


@dataclass
class Stall:
    """Tells a wait that is progressing from one stuck for longer than ``timeout`` seconds."""

    timeout: float
    since: float | None = None

    def observe(self, progressing: bool, now: float) -> bool:
        """Record one look; True once nothing has progressed for ``timeout`` seconds."""
        if progressing:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= self.timeout

    def waited(self, now: float) -> float:
        return 0.0 if self.since is None else now - self.since
