"""Compact summaries of Kubernetes objects, for the watch caches of the live inventory.

Pure functions: each ``summarize_*`` takes one lightkube object and returns a
frozen, slotted dataclass holding only what the inventory, health and
capacity code read (names, readiness, counts, requests in integer units).
Caches keep these, never whole objects, so a cached pod costs a few hundred
bytes rather than the tens of kilobytes of its decoded manifest; strings that
repeat across thousands of objects (namespaces, node names, phases, owner
kinds) are interned.

Quantities (``"100m"``, ``"1Gi"``) are parsed by lightkube's
``utils.quantity.parse_quantity`` (exact ``Decimal`` arithmetic); this module
only rounds them up to millicores and bytes and rejects what is not finite.

``KindSpec`` ties a watched kind to its lightkube resource class and its
summarizer; ``ALL_SPECS`` lists the kinds the inventory watches. Callers outside
``kube/`` use these specs (and ``kube.watching``) without importing lightkube.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Generic, TypeAlias, TypeVar

from lightkube.models.core_v1 import Container, ContainerStatus
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import DaemonSet, Deployment, StatefulSet
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Event, Namespace, Node, Pod
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.utils import quantity as lightkube_quantity

#: A cache key: (namespace, name); cluster-scoped objects have namespace "".
Key: TypeAlias = tuple[str, str]

EVENT_MESSAGE_LIMIT = 512
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
LEGACY_INSTANCE_TYPE_LABEL = "beta.kubernetes.io/instance-type"

_intern = sys.intern


# ----- quantities ----------------------------------------------------------------------------


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes quantity (``"100m"``, ``"1.5"``, ``"2k"``, ``"500Mi"``, ``"1e3"``) as a Decimal.

    Raises ``ValueError`` for anything that is not a finite quantity with a known suffix.
    """
    if not isinstance(text, str) or not text:
        raise ValueError(f"not a quantity: {text!r}")
    try:
        value = lightkube_quantity.parse_quantity(text)
    except (ValueError, ArithmeticError) as exc:
        raise ValueError(f"not a quantity: {text!r} ({exc})") from None
    if value is None or not value.is_finite():
        raise ValueError(f"not a finite quantity: {text!r}")
    return value


def cpu_millicores(text: str) -> int:
    """A CPU quantity in millicores, rounded up (``"100m"`` → 100, ``"1.5"`` → 1500)."""
    return math.ceil(parse_quantity(text) * 1000)


def memory_bytes(text: str) -> int:
    """A memory quantity in bytes, rounded up (``"1Gi"`` → 1073741824, ``"2k"`` → 2000)."""
    return math.ceil(parse_quantity(text))


def whole_units(text: str) -> int:
    """A count quantity (``"110"`` pods, ``"2k"``), rounded up."""
    return math.ceil(parse_quantity(text))


def _resource(resources: Mapping[str, Any] | None, name: str, convert: Callable[[str], int]) -> int:
    """One resource of a requests/limits/allocatable map; absent or malformed counts as 0."""
    if not resources or name not in resources:
        return 0
    try:
        return convert(str(resources[name]))
    except ValueError:
        return 0


# ----- summaries ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeSummary:
    name: str
    ready: bool
    unschedulable: bool
    kubelet_version: str
    cpu_millicores: int  # allocatable
    memory_bytes: int  # allocatable
    pods: int  # allocatable pod slots
    instance_type: str
    conditions: tuple[tuple[str, str], ...]  # (type, status), e.g. ("MemoryPressure", "False")

    @property
    def key(self) -> Key:
        return ("", self.name)

    @property
    def problems(self) -> tuple[str, ...]:
        """Conditions in a bad state: Ready not True, any pressure/unavailable condition True."""
        bad = []
        for kind, status in self.conditions:
            if (kind == "Ready") != (status == "True"):
                bad.append(kind)
        return tuple(bad)


@dataclass(frozen=True, slots=True)
class NamespaceSummary:
    name: str
    phase: str
    labels: tuple[tuple[str, str], ...]

    @property
    def key(self) -> Key:
        return ("", self.name)


@dataclass(frozen=True, slots=True)
class PodSummary:
    namespace: str
    name: str
    node: str  # "" until scheduled
    phase: str
    ready: bool
    terminating: bool
    restarts: int
    waiting_reason: str  # e.g. CrashLoopBackOff, ImagePullBackOff; "" when none waits
    owner_kind: str
    owner_name: str
    cpu_request_millicores: int
    memory_request_bytes: int
    cpu_limit_millicores: int
    memory_limit_bytes: int

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


class WorkloadKind(StrEnum):
    DEPLOYMENT = "Deployment"
    STATEFULSET = "StatefulSet"
    DAEMONSET = "DaemonSet"


@dataclass(frozen=True, slots=True)
class WorkloadSummary:
    namespace: str
    name: str
    kind: WorkloadKind
    desired: int
    ready: int
    available: int
    updated: int
    observed: bool  # the controller has seen the latest spec (observedGeneration >= generation)

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    @property
    def fully_available(self) -> bool:
        return self.observed and self.available >= self.desired and self.ready >= self.desired


class JobState(StrEnum):
    RUNNING = "Running"
    COMPLETE = "Complete"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


@dataclass(frozen=True, slots=True)
class JobSummary:
    namespace: str
    name: str
    state: JobState
    completions: int
    active: int
    succeeded: int
    failed: int
    owner_name: str  # the CronJob that made it, or ""

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class PdbSummary:
    namespace: str
    name: str
    disruptions_allowed: int
    current_healthy: int
    desired_healthy: int
    expected_pods: int

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class EventSummary:
    namespace: str
    name: str
    involved_kind: str
    involved_name: str
    reason: str
    type: str  # Normal or Warning
    message: str  # at most EVENT_MESSAGE_LIMIT characters
    count: int
    last_timestamp: datetime | None
    source: str

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


Summary: TypeAlias = (
    NodeSummary | NamespaceSummary | PodSummary | WorkloadSummary | JobSummary | PdbSummary | EventSummary
)


def _meta(metadata: ObjectMeta | None) -> tuple[str, str]:
    if metadata is None:
        return "", ""
    return _intern(metadata.namespace or ""), metadata.name or ""


def _observed(metadata: ObjectMeta | None, observed_generation: int | None) -> bool:
    generation = metadata.generation if metadata is not None else None
    if generation is None:
        return True
    return observed_generation is not None and observed_generation >= generation


def _owner(metadata: ObjectMeta | None) -> tuple[str, str]:
    refs = (metadata.ownerReferences if metadata is not None else None) or []
    chosen = next((r for r in refs if r.controller), refs[0] if refs else None)
    if chosen is None:
        return "", ""
    return _intern(chosen.kind), chosen.name


def summarize_node(node: Node) -> NodeSummary:
    status = node.status
    conditions = tuple(
        (_intern(c.type), _intern(c.status)) for c in ((status.conditions if status else None) or [])
    )
    labels = (node.metadata.labels if node.metadata else None) or {}
    allocatable = status.allocatable if status else None
    return NodeSummary(
        name=_meta(node.metadata)[1],
        ready=("Ready", "True") in conditions,
        unschedulable=bool(node.spec.unschedulable) if node.spec else False,
        kubelet_version=_intern(status.nodeInfo.kubeletVersion if status and status.nodeInfo else ""),
        cpu_millicores=_resource(allocatable, "cpu", cpu_millicores),
        memory_bytes=_resource(allocatable, "memory", memory_bytes),
        pods=_resource(allocatable, "pods", whole_units),
        instance_type=_intern(
            str(labels.get(INSTANCE_TYPE_LABEL) or labels.get(LEGACY_INSTANCE_TYPE_LABEL) or "")
        ),
        conditions=conditions,
    )


def summarize_namespace(namespace: Namespace) -> NamespaceSummary:
    labels = (namespace.metadata.labels if namespace.metadata else None) or {}
    return NamespaceSummary(
        name=_meta(namespace.metadata)[1],
        phase=_intern((namespace.status.phase if namespace.status else None) or "Active"),
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
    )


def _sum_resources(containers: Iterable[Container], which: str) -> tuple[int, int]:
    cpu = memory = 0
    for container in containers:
        resources = container.resources
        values = getattr(resources, which) if resources is not None else None
        cpu += _resource(values, "cpu", cpu_millicores)
        memory += _resource(values, "memory", memory_bytes)
    return cpu, memory


def _effective(pod: Pod, which: str) -> tuple[int, int]:
    """Requests (or limits) of a pod: the sum over its containers, or its largest init
    container if that is larger (init containers run one at a time, before the others),
    plus the runtime overhead for requests."""
    spec = pod.spec
    if spec is None:
        return 0, 0
    cpu, memory = _sum_resources(spec.containers or [], which)
    for init in spec.initContainers or []:
        init_cpu, init_memory = _sum_resources([init], which)
        cpu, memory = max(cpu, init_cpu), max(memory, init_memory)
    if which == "requests" and spec.overhead:
        cpu += _resource(spec.overhead, "cpu", cpu_millicores)
        memory += _resource(spec.overhead, "memory", memory_bytes)
    return cpu, memory


def _waiting_reason(statuses: Iterable[ContainerStatus]) -> str:
    for status in statuses:
        waiting = status.state.waiting if status.state else None
        if waiting is not None and waiting.reason:
            return _intern(waiting.reason)
    return ""


def summarize_pod(pod: Pod) -> PodSummary:
    namespace, name = _meta(pod.metadata)
    status = pod.status
    conditions = (status.conditions if status else None) or []
    container_statuses = (status.containerStatuses if status else None) or []
    init_statuses = (status.initContainerStatuses if status else None) or []
    owner_kind, owner_name = _owner(pod.metadata)
    cpu_request, memory_request = _effective(pod, "requests")
    cpu_limit, memory_limit = _effective(pod, "limits")
    return PodSummary(
        namespace=namespace,
        name=name,
        node=_intern((pod.spec.nodeName if pod.spec else None) or ""),
        phase=_intern((status.phase if status else None) or "Pending"),
        ready=any(c.type == "Ready" and c.status == "True" for c in conditions),
        terminating=pod.metadata is not None and pod.metadata.deletionTimestamp is not None,
        restarts=sum(s.restartCount or 0 for s in container_statuses),
        waiting_reason=_waiting_reason([*container_statuses, *init_statuses]),
        owner_kind=owner_kind,
        owner_name=owner_name,
        cpu_request_millicores=cpu_request,
        memory_request_bytes=memory_request,
        cpu_limit_millicores=cpu_limit,
        memory_limit_bytes=memory_limit,
    )


def summarize_deployment(deployment: Deployment) -> WorkloadSummary:
    namespace, name = _meta(deployment.metadata)
    status = deployment.status
    replicas = deployment.spec.replicas if deployment.spec else None
    return WorkloadSummary(
        namespace=namespace,
        name=name,
        kind=WorkloadKind.DEPLOYMENT,
        desired=1 if replicas is None else replicas,
        ready=(status.readyReplicas if status else None) or 0,
        available=(status.availableReplicas if status else None) or 0,
        updated=(status.updatedReplicas if status else None) or 0,
        observed=_observed(deployment.metadata, status.observedGeneration if status else None),
    )


def summarize_statefulset(statefulset: StatefulSet) -> WorkloadSummary:
    namespace, name = _meta(statefulset.metadata)
    status = statefulset.status
    replicas = statefulset.spec.replicas if statefulset.spec else None
    return WorkloadSummary(
        namespace=namespace,
        name=name,
        kind=WorkloadKind.STATEFULSET,
        desired=1 if replicas is None else replicas,
        ready=(status.readyReplicas if status else None) or 0,
        available=(status.availableReplicas if status else None) or 0,
        updated=(status.updatedReplicas if status else None) or 0,
        observed=_observed(statefulset.metadata, status.observedGeneration if status else None),
    )


def summarize_daemonset(daemonset: DaemonSet) -> WorkloadSummary:
    namespace, name = _meta(daemonset.metadata)
    status = daemonset.status
    return WorkloadSummary(
        namespace=namespace,
        name=name,
        kind=WorkloadKind.DAEMONSET,
        desired=status.desiredNumberScheduled if status else 0,
        ready=status.numberReady if status else 0,
        available=(status.numberAvailable if status else None) or 0,
        updated=(status.updatedNumberScheduled if status else None) or 0,
        observed=_observed(daemonset.metadata, status.observedGeneration if status else None),
    )


def summarize_job(job: Job) -> JobSummary:
    namespace, name = _meta(job.metadata)
    status = job.status
    true_conditions = {c.type for c in ((status.conditions if status else None) or []) if c.status == "True"}
    if "Complete" in true_conditions:
        state = JobState.COMPLETE
    elif "Failed" in true_conditions:
        state = JobState.FAILED
    elif job.spec is not None and job.spec.suspend:
        state = JobState.SUSPENDED
    else:
        state = JobState.RUNNING
    completions = job.spec.completions if job.spec else None
    return JobSummary(
        namespace=namespace,
        name=name,
        state=state,
        completions=1 if completions is None else completions,
        active=(status.active if status else None) or 0,
        succeeded=(status.succeeded if status else None) or 0,
        failed=(status.failed if status else None) or 0,
        owner_name=_owner(job.metadata)[1],
    )


def summarize_pdb(pdb: PodDisruptionBudget) -> PdbSummary:
    namespace, name = _meta(pdb.metadata)
    status = pdb.status
    return PdbSummary(
        namespace=namespace,
        name=name,
        disruptions_allowed=(status.disruptionsAllowed if status else None) or 0,
        current_healthy=(status.currentHealthy if status else None) or 0,
        desired_healthy=(status.desiredHealthy if status else None) or 0,
        expected_pods=(status.expectedPods if status else None) or 0,
    )


def summarize_event(event: Event) -> EventSummary:
    """A core/v1 Event. Events written through events.k8s.io/v1 (the controllers' API) leave
    ``lastTimestamp`` and ``count`` empty and fill ``eventTime`` and ``series`` instead."""
    namespace, name = _meta(event.metadata)
    involved = event.involvedObject
    series = event.series
    last = (
        event.lastTimestamp
        or (series.lastObservedTime if series else None)
        or event.eventTime
        or event.firstTimestamp
        or (event.metadata.creationTimestamp if event.metadata else None)
    )
    count = event.count or (series.count if series else None) or 1
    source = event.reportingComponent or (event.source.component if event.source else None) or ""
    return EventSummary(
        namespace=namespace,
        name=name,
        involved_kind=_intern((involved.kind if involved else None) or ""),
        involved_name=(involved.name if involved else None) or "",
        reason=_intern(event.reason or ""),
        type=_intern(event.type or ""),
        message=(event.message or "")[:EVENT_MESSAGE_LIMIT],
        count=count,
        last_timestamp=last,
        source=_intern(source),
    )


# ----- watched kinds ---------------------------------------------------------------------------


class Kind(StrEnum):
    """The kinds the live inventory watches, named by their plural resource name."""

    NODES = "nodes"
    NAMESPACES = "namespaces"
    PODS = "pods"
    DEPLOYMENTS = "deployments"
    STATEFULSETS = "statefulsets"
    DAEMONSETS = "daemonsets"
    JOBS = "jobs"
    PODDISRUPTIONBUDGETS = "poddisruptionbudgets"
    EVENTS = "events"


S = TypeVar("S", bound=Summary)


@dataclass(frozen=True, slots=True)
class KindSpec(Generic[S]):
    """How to list, watch and summarize one kind."""

    kind: Kind
    resource: type[Any]  # the lightkube resource class
    summarize: Callable[[Any], S]
    namespaced: bool


NODES: KindSpec[NodeSummary] = KindSpec(Kind.NODES, Node, summarize_node, namespaced=False)
NAMESPACES: KindSpec[NamespaceSummary] = KindSpec(
    Kind.NAMESPACES, Namespace, summarize_namespace, namespaced=False
)
PODS: KindSpec[PodSummary] = KindSpec(Kind.PODS, Pod, summarize_pod, namespaced=True)
DEPLOYMENTS: KindSpec[WorkloadSummary] = KindSpec(
    Kind.DEPLOYMENTS, Deployment, summarize_deployment, namespaced=True
)
STATEFULSETS: KindSpec[WorkloadSummary] = KindSpec(
    Kind.STATEFULSETS, StatefulSet, summarize_statefulset, namespaced=True
)
DAEMONSETS: KindSpec[WorkloadSummary] = KindSpec(
    Kind.DAEMONSETS, DaemonSet, summarize_daemonset, namespaced=True
)
JOBS: KindSpec[JobSummary] = KindSpec(Kind.JOBS, Job, summarize_job, namespaced=True)
PODDISRUPTIONBUDGETS: KindSpec[PdbSummary] = KindSpec(
    Kind.PODDISRUPTIONBUDGETS, PodDisruptionBudget, summarize_pdb, namespaced=True
)
EVENTS: KindSpec[EventSummary] = KindSpec(Kind.EVENTS, Event, summarize_event, namespaced=True)

#: Every kind the inventory watches, in the order they are started.
ALL_SPECS: tuple[KindSpec[Any], ...] = (
    NODES,
    NAMESPACES,
    PODS,
    DEPLOYMENTS,
    STATEFULSETS,
    DAEMONSETS,
    JOBS,
    PODDISRUPTIONBUDGETS,
    EVENTS,
)
