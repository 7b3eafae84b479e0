"""Draining and replacing nodes through the Kubernetes API: cordon, taint, evict, create, delete.

``open_drain(creds)`` yields a ``DrainClient``, the only way node rollouts
(``fleet.rollouts``) and the node-rollout benchmark touch a cluster. Every
call is one API request (or one paginated list) and reports what it found,
so the caller can observe before it acts:

- ``cordon``/``uncordon`` patch ``spec.unschedulable`` and mark the node
  with ``pilothouse.dev/cordoned-by`` (the operation that cordoned it) in
  the same merge patch; they do nothing to a node already in that state.
- ``evict`` POSTs an ``Eviction`` to ``pods/<name>/eviction`` with the pod's
  UID as precondition, so a pod re-created under the same name (a
  StatefulSet's) is never evicted by mistake. The API server checks the
  PodDisruptionBudgets and answers 429 when one allows no disruption; the
  result says so (``EvictionResult.BLOCKED``) instead of raising.
- ``taint``/``untaint`` add or remove one taint (``PreferNoSchedule`` by
  default). A node's taints are an atomic list, so they read the node, edit
  the list and write it back under the read's ``resourceVersion``, again on a
  409; a node already in the wanted state is left alone.
- ``create_node`` makes a kwok-simulated node (``kube.nodes.simulated_node``)
  with the given kubelet version; ``delete_node`` removes a Node object. Both
  report whether they changed anything (409 on create and 404 on delete mean
  it was already done).

Reads (nodes; pods of nodes, of namespaces or all; PodDisruptionBudgets;
Deployments and StatefulSets; the ``spec.replicas`` of pods' controllers)
return frozen, plain states (``NodeState``, ``PodState``, ``BudgetState``,
``WorkloadSummary``) that the pure planner (``fleet.rollout_plan``) reads.
lightkube does the HTTP; failures are translated into Pilothouse errors
(``kube.client.translate``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from enum import StrEnum

from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import DeleteOptions, LabelSelector, ObjectMeta, Preconditions
from lightkube.resources.apps_v1 import Deployment, ReplicaSet, StatefulSet
from lightkube.resources.core_v1 import Node, Pod
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.types import PatchType

from pilothouse import errors
from pilothouse.kube import client as kube_client
from pilothouse.kube import nodes as kube_nodes
from pilothouse.kube import summaries
from pilothouse.kube.credentials import ClusterCredentials
from pilothouse.vocabulary import CORDONED_BY_ANNOTATION, ROLLOUT_LABEL

PREFER_NO_SCHEDULE = "PreferNoSchedule"

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
LIST_CHUNK = 500


@dataclass(frozen=True, slots=True)
class NodeState:
    name: str
    ready: bool
    unschedulable: bool
    kubelet_version: str
    cordoned_by: str  # the operation that cordoned it ("" when not Pilothouse)
    rollout: str  # the operation that created it ("" when none)
    taints: tuple[tuple[str, str, str], ...] = ()  # (key, value, effect)


@dataclass(frozen=True, slots=True)
class PodState:
    namespace: str
    name: str
    uid: str
    node: str
    labels: Mapping[str, str]
    phase: str
    ready: bool
    terminating: bool
    owner_kind: str
    owner_name: str
    mirror: bool
    waiting_reason: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Expression:
    key: str
    operator: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Selector:
    match_labels: Mapping[str, str]
    match_expressions: tuple[Expression, ...]


@dataclass(frozen=True, slots=True)
class BudgetState:
    namespace: str
    name: str
    selector: Selector | None
    min_available: str  # "" when unset; "2" or "50%"
    max_unavailable: str
    disruptions_allowed: int
    current_healthy: int
    desired_healthy: int
    expected_pods: int
    processed: bool
    unhealthy_pod_eviction_policy: str  # "IfHealthyBudget" (the default) or "AlwaysAllow"


class EvictionResult(StrEnum):
    EVICTED = "evicted"  # the API server accepted it: the pod is going
    GONE = "gone"  # the pod (with that UID) no longer exists
    BLOCKED = "blocked"  # 429: a PodDisruptionBudget allows no disruption now
    REFUSED = "refused"  # any other refusal (e.g. a pod covered by two budgets)


@dataclass(frozen=True, slots=True)
class EvictionOutcome:
    pod: str  # namespace/name
    result: EvictionResult
    message: str = ""
    retry_after: float | None = None


def node_state(node: Node) -> NodeState:
    meta = node.metadata or ObjectMeta()
    info = node.status.nodeInfo if node.status else None
    return NodeState(
        name=meta.name or "",
        ready=kube_nodes.is_ready(node),
        unschedulable=bool(node.spec.unschedulable) if node.spec else False,
        kubelet_version=(info.kubeletVersion if info else "") or "",
        cordoned_by=(meta.annotations or {}).get(CORDONED_BY_ANNOTATION, ""),
        rollout=(meta.labels or {}).get(ROLLOUT_LABEL, ""),
        taints=tuple(
            (t.key, t.value or "", t.effect) for t in ((node.spec.taints if node.spec else None) or ())
        ),
    )


def pod_state(pod: Pod) -> PodState:
    summary = summaries.summarize_pod(pod)
    meta = pod.metadata or ObjectMeta()
    return PodState(
        namespace=summary.namespace,
        name=summary.name,
        uid=meta.uid or "",
        node=summary.node,
        labels=dict(meta.labels or {}),
        phase=summary.phase,
        ready=summary.ready,
        terminating=summary.terminating,
        owner_kind=summary.owner_kind,
        owner_name=summary.owner_name,
        mirror=MIRROR_ANNOTATION in (meta.annotations or {}),
        waiting_reason=summary.waiting_reason,
    )


def _selector(selector: LabelSelector | None) -> Selector | None:
    if selector is None:
        return None
    return Selector(
        match_labels=dict(selector.matchLabels or {}),
        match_expressions=tuple(
            Expression(e.key, e.operator, tuple(e.values or ())) for e in selector.matchExpressions or ()
        ),
    )


def budget_state(pdb: PodDisruptionBudget) -> BudgetState:
    summary = summaries.summarize_pdb(pdb)
    spec = pdb.spec
    status = pdb.status
    generation = pdb.metadata.generation if pdb.metadata else None
    observed = status.observedGeneration if status else None
    return BudgetState(
        namespace=summary.namespace,
        name=summary.name,
        selector=_selector(spec.selector if spec else None),
        min_available="" if spec is None or spec.minAvailable is None else str(spec.minAvailable),
        max_unavailable="" if spec is None or spec.maxUnavailable is None else str(spec.maxUnavailable),
        disruptions_allowed=summary.disruptions_allowed,
        current_healthy=summary.current_healthy,
        desired_healthy=summary.desired_healthy,
        expected_pods=summary.expected_pods,
        processed=observed is not None and (generation is None or observed >= generation),
        unhealthy_pod_eviction_policy=(spec.unhealthyPodEvictionPolicy if spec else None)
        or "IfHealthyBudget",
    )


class DrainClient:
    """Node-rollout calls on one cluster; see the module docstring."""

    def __init__(self, client: AsyncClient, creds: ClusterCredentials) -> None:
        self.client = client
        self.creds = creds

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except errors.PilothouseError:
            raise
        except Exception as exc:
            raise kube_client.translate(exc, self.creds) from None

    # ----- reads ----------------------------------------------------------------------------

    async def nodes(self) -> list[NodeState]:
        with self._translated():
            return [node_state(n) async for n in self.client.list(Node, chunk_size=LIST_CHUNK)]

    async def node(self, name: str) -> NodeState | None:
        with self._translated():
            try:
                return node_state(await self.client.get(Node, name))
            except ApiError as exc:
                if exc.status.code == 404:
                    return None
                raise

    async def pod(self, namespace: str, name: str) -> PodState | None:
        with self._translated():
            try:
                return pod_state(await self.client.get(Pod, name, namespace=namespace))
            except ApiError as exc:
                if exc.status.code == 404:
                    return None
                raise

    async def pods(self) -> list[PodState]:
        with self._translated():
            return [pod_state(p) async for p in self.client.list(Pod, namespace="*", chunk_size=LIST_CHUNK)]

    async def pods_in(self, namespaces: Iterable[str]) -> list[PodState]:
        with self._translated():
            return [
                pod_state(p)
                for namespace in dict.fromkeys(namespaces)
                async for p in self.client.list(Pod, namespace=namespace, chunk_size=LIST_CHUNK)
            ]

    async def replicas(
        self, owners: Iterable[tuple[str, str, str]], *, concurrency: int = 16
    ) -> dict[tuple[str, str, str], int]:
        """``spec.replicas`` of ReplicaSets and StatefulSets given as (kind, namespace, name); owners
        that no longer exist (or of other kinds) are left out."""
        kinds: dict[str, type[ReplicaSet] | type[StatefulSet]] = {
            "ReplicaSet": ReplicaSet,
            "StatefulSet": StatefulSet,
        }
        gate = asyncio.Semaphore(concurrency)

        async def read(owner: tuple[str, str, str]) -> int | None:
            kind, namespace, name = owner
            resource = kinds.get(kind)
            if resource is None:
                return None
            async with gate:
                try:
                    obj = await self.client.get(resource, name, namespace=namespace)
                except ApiError as exc:
                    if exc.status.code == 404:
                        return None
                    raise
            replicas = obj.spec.replicas if obj.spec else None
            return 1 if replicas is None else replicas

        wanted = list(dict.fromkeys(owners))
        with self._translated():
            counts = await asyncio.gather(*(read(o) for o in wanted))
        return {owner: count for owner, count in zip(wanted, counts, strict=True) if count is not None}

    async def pods_on(self, nodes: Iterable[str], *, concurrency: int = 16) -> list[PodState]:
        """Pods bound to ``nodes`` (one field-selected list per node, run concurrently)."""
        gate = asyncio.Semaphore(concurrency)

        async def on(node: str) -> list[PodState]:
            async with gate:
                return [
                    pod_state(p)
                    async for p in self.client.list(
                        Pod, namespace="*", fields={"spec.nodeName": node}, chunk_size=LIST_CHUNK
                    )
                ]

        with self._translated():
            found = await asyncio.gather(*(on(n) for n in dict.fromkeys(nodes)))
        return [pod for chunk in found for pod in chunk]

    async def budgets(self) -> list[BudgetState]:
        with self._translated():
            return [budget_state(b) async for b in self.client.list(PodDisruptionBudget, namespace="*")]

    async def workloads(self) -> list[summaries.WorkloadSummary]:
        """Deployments and StatefulSets of every namespace."""
        with self._translated():
            found = [
                summaries.summarize_deployment(d)
                async for d in self.client.list(Deployment, namespace="*", chunk_size=LIST_CHUNK)
            ]
            found += [
                summaries.summarize_statefulset(s)
                async for s in self.client.list(StatefulSet, namespace="*", chunk_size=LIST_CHUNK)
            ]
            return found

    # ----- changes --------------------------------------------------------------------------

    async def create_node(self, name: str, *, kubelet_version: str, rollout: str = "") -> bool:
        """Create a simulated node; False when it already exists."""
        node = kube_nodes.simulated_node(name, kubelet_version=kubelet_version)
        if rollout and node.metadata is not None and node.metadata.labels is not None:
            node.metadata.labels[ROLLOUT_LABEL] = rollout
        with self._translated():
            try:
                await self.client.create(node)
            except ApiError as exc:
                if exc.status.code == 409:
                    return False
                raise
        return True

    async def delete_node(self, name: str) -> bool:
        """Delete a Node object; False when it is already gone."""
        with self._translated():
            try:
                await self.client.delete(Node, name)
            except ApiError as exc:
                if exc.status.code == 404:
                    return False
                raise
        return True

    async def cordon(self, name: str, *, by: str) -> bool:
        """Mark the node unschedulable (and cordoned by ``by``); False if it already was."""
        node = await self.node(name)
        if node is None or node.unschedulable:
            return False
        patch = {"spec": {"unschedulable": True}, "metadata": {"annotations": {CORDONED_BY_ANNOTATION: by}}}
        with self._translated():
            await self.client.patch(Node, name, patch, patch_type=PatchType.MERGE)
        return True

    async def uncordon(self, name: str, *, by: str) -> bool:
        """Make a node that ``by`` cordoned schedulable again; False for any other node."""
        node = await self.node(name)
        if node is None or not node.unschedulable or node.cordoned_by != by:
            return False
        patch = {"spec": {"unschedulable": None}, "metadata": {"annotations": {CORDONED_BY_ANNOTATION: None}}}
        with self._translated():
            await self.client.patch(Node, name, patch, patch_type=PatchType.MERGE)
        return True

    async def taint(self, name: str, key: str, value: str, *, effect: str = PREFER_NO_SCHEDULE) -> bool:
        """Add the taint ``key=value:effect``; False if the node has a taint with that key and
        effect already, or is gone. Taints are an atomic list: read, add, write back under the
        read's resourceVersion, again on a conflict."""
        return await self._edit_taints(name, key, effect, value)

    async def untaint(self, name: str, key: str, value: str, *, effect: str = PREFER_NO_SCHEDULE) -> bool:
        """Remove the taint ``key=value:effect``; False when it is not there."""
        return await self._edit_taints(name, key, effect, value, remove=True)

    async def _edit_taints(
        self, name: str, key: str, effect: str, value: str, *, remove: bool = False
    ) -> bool:
        for _attempt in range(10):
            with self._translated():
                try:
                    node = await self.client.get(Node, name)
                except ApiError as exc:
                    if exc.status.code == 404:
                        return False
                    raise
                taints = [t.to_dict() for t in (node.spec.taints if node.spec else None) or []]
                mine = [t for t in taints if t.get("key") == key and t.get("effect") == effect]
                if remove:
                    if not any(t.get("value", "") == value for t in mine):
                        return False
                    taints = [t for t in taints if t not in mine]
                else:
                    if mine:
                        return False
                    taints.append({"key": key, "value": value, "effect": effect})
                version = node.metadata.resourceVersion if node.metadata else None
                patch = {"metadata": {"resourceVersion": version}, "spec": {"taints": taints}}
                try:
                    await self.client.patch(Node, name, patch, patch_type=PatchType.MERGE)
                except ApiError as exc:
                    if exc.status.code == 409:
                        continue  # the node changed since it was read: read it again
                    raise
                return True
        raise errors.Conflict(
            f"node {name} kept changing while its taints were edited",
            hint="retry; if it persists, see who writes it",
        )

    async def evict(self, pod: PodState) -> EvictionOutcome:
        """Ask the API server to evict ``pod`` (the very pod: its UID is a precondition)."""
        eviction = Pod.Eviction(
            metadata=ObjectMeta(name=pod.name, namespace=pod.namespace),
            deleteOptions=DeleteOptions(preconditions=Preconditions(uid=pod.uid) if pod.uid else None),
        )
        with self._translated():
            try:
                await self.client.create(eviction, pod.name, namespace=pod.namespace)
            except ApiError as exc:
                code = exc.status.code
                message = (exc.status.message or "")[:256]
                if code in (404, 409):
                    return EvictionOutcome(pod.key, EvictionResult.GONE, message)
                if code == 429:
                    details = exc.status.details
                    retry = details.retryAfterSeconds if details is not None else None
                    return EvictionOutcome(
                        pod.key, EvictionResult.BLOCKED, message, float(retry) if retry else None
                    )
                if code in (400, 422, 500):
                    return EvictionOutcome(pod.key, EvictionResult.REFUSED, message)
                raise
        return EvictionOutcome(pod.key, EvictionResult.EVICTED)


@asynccontextmanager
async def open_drain(creds: ClusterCredentials, *, timeout: float = 30.0) -> AsyncIterator[DrainClient]:
    """A ``DrainClient`` on the cluster; its calls raise ``ClusterUnreachable`` when it does not answer."""
    async with kube_client.open_client(creds, timeout=timeout) as client:
        yield DrainClient(client, creds)
