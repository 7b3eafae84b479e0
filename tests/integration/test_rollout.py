"""Node rollouts of real local clusters: surge nodes, cordon, evictions through the API server,
replacement pods placed by the real scheduler, old nodes deleted.

Each test runs a cluster of its own on Kubernetes 1.36.3 whose kwok nodes report kubelet
v1.35.4, and rolls them to v1.36.3. A watcher holds one watch on the pods of the workload
namespace (events arrive in etcd order) and checks after every event that each
PodDisruptionBudget's selector still matches at least its required number of Ready,
non-terminating pods; the API server's audit log tells how often each pod was evicted and
each node cordoned, created and deleted.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import (
    Affinity,
    Container,
    PodAffinityTerm,
    PodAntiAffinity,
    PodSpec,
    PodTemplateSpec,
)
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.models.policy_v1 import PodDisruptionBudgetSpec
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Node, Pod
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.types import PatchType

from pilothouse import errors
from pilothouse.binaries.cache import BinaryCache
from pilothouse.fleet import operations, requests
from pilothouse.fleet.leases import holder_is_dead
from pilothouse.kube import client as kube_client
from pilothouse.kube import drain
from pilothouse.platform import Platform
from pilothouse.providers.local.provider import LocalRuntime
from pilothouse.vocabulary import CORDONED_BY_ANNOTATION, OUTDATED_TAINT, OperationPhase, OperationRequest
from tests.integration.kube_helpers import eventually

PILOTHOUSE = str(Path(sys.executable).with_name("pilothouse"))
CONTROL_PLANE, OLD = "1.36.3", "v1.35.4"
NEW = f"v{CONTROL_PLANE}"
NAMESPACE = "default"
ADMIN_USER = "pilothouse-admin"  # the user of the cluster's admin credentials


async def _old_cluster(platform: Platform, name: str, nodes: int) -> LocalRuntime:
    """A 1.36.3 cluster whose kwok nodes report kubelet v1.35.4 (kwok plays the kubelet; the
    version is whatever the Node's status says)."""
    record = await platform.clusters.create_local(
        requests.parse(requests.CreateLocalCluster, name=name, nodes=nodes, version=CONTROL_PLANE)
    )
    async with kube_client.open_client(platform.clusters.credentials(name)) as client:
        async for node in client.list(Node):
            await client.patch(
                Node.Status,
                str(node.metadata.name),
                {"status": {"nodeInfo": {"kubeletVersion": OLD}}},
                patch_type=PatchType.MERGE,
            )
    return LocalRuntime.from_dict(record.runtime)


def _deployment(name: str, replicas: int, *, spread: bool = False) -> Deployment:
    labels = {"app": name}
    affinity = None
    if spread:  # exactly one pod per node
        affinity = Affinity(
            podAntiAffinity=PodAntiAffinity(
                requiredDuringSchedulingIgnoredDuringExecution=[
                    PodAffinityTerm(
                        topologyKey="kubernetes.io/hostname", labelSelector=LabelSelector(matchLabels=labels)
                    )
                ]
            )
        )
    return Deployment(
        metadata=ObjectMeta(name=name, namespace=NAMESPACE),
        spec=DeploymentSpec(
            replicas=replicas,
            selector=LabelSelector(matchLabels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels),
                spec=PodSpec(
                    containers=[Container(name="app", image="registry.example/app:1.0")], affinity=affinity
                ),
            ),
        ),
    )


def _budget(
    name: str, *, min_available: int | None = None, max_unavailable: int | None = None
) -> PodDisruptionBudget:
    return PodDisruptionBudget(
        metadata=ObjectMeta(name=name, namespace=NAMESPACE),
        spec=PodDisruptionBudgetSpec(
            selector=LabelSelector(matchLabels={"app": name}),
            minAvailable=min_available,
            maxUnavailable=max_unavailable,
        ),
    )


async def _all_available(client: AsyncClient) -> list[Deployment]:
    async def deployments() -> list[Deployment]:
        return [d async for d in client.list(Deployment, namespace=NAMESPACE)]

    return await eventually(
        deployments,
        lambda ds: all(
            (d.status.availableReplicas or 0) == d.spec.replicas == (d.status.readyReplicas or 0)
            and (d.status.observedGeneration or 0) >= (d.metadata.generation or 0)
            and (d.status.replicas or 0) == d.spec.replicas
            for d in ds
        ),
        timeout=90,
    )


def _healthy(pod: Pod) -> bool:
    conditions = pod.status.conditions if pod.status else None
    return (
        pod.metadata.deletionTimestamp is None
        and pod.status is not None
        and pod.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in conditions or [])
    )


@dataclass
class BudgetWatcher:
    """One watch on the namespace's pods; after every event, each app must keep at least
    ``required[app]`` Ready, non-terminating pods (what its PodDisruptionBudget promises)."""

    client: AsyncClient
    required: dict[str, int]
    healthy: dict[str, tuple[str, bool]] = field(default_factory=dict)  # pod -> (app, healthy)
    violations: list[str] = field(default_factory=list)
    deleted: int = 0
    lowest: dict[str, int] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None

    def _record(self, kind: str, pod: Pod) -> None:
        name = str(pod.metadata.name)
        app = (pod.metadata.labels or {}).get("app", "")
        if kind == "DELETED":
            self.healthy.pop(name, None)
            self.deleted += 1
        else:
            self.healthy[name] = (app, _healthy(pod))

    def _check(self, cause: str) -> None:
        for app, minimum in self.required.items():
            count = sum(a == app and ok for a, ok in self.healthy.values())
            self.lowest[app] = min(self.lowest.get(app, count), count)
            if count < minimum:
                self.violations.append(f"{time.strftime('%X')} {app}: {count} < {minimum} after {cause}")

    async def start(self) -> None:
        lister = self.client.list(Pod, namespace=NAMESPACE)
        async for pod in lister:
            self._record("ADDED", pod)
        self._check("the initial list")
        assert not self.violations, self.violations
        version = lister.resourceVersion
        self.task = asyncio.create_task(self._run(version))

    async def _run(self, version: str) -> None:
        async for kind, pod in self.client.watch(Pod, namespace=NAMESPACE, resource_version=version):
            self._record(kind, pod)
            self._check(f"{kind} {pod.metadata.name}")

    async def stop(self) -> None:
        assert self.task is not None
        if self.task.done():
            self.task.result()  # a watch that died would have missed events: fail loudly
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@dataclass
class NodeWatcher:
    """A watch on Nodes; ``wait_for`` returns once an event satisfies a predicate."""

    client: AsyncClient
    seen: list[tuple[str, Node]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for kind, node in self.client.watch(Node):
            self.seen.append((kind, node))
            self.changed.set()

    async def wait_for(self, accept: Callable[[str, Node], bool], *, timeout: float = 120) -> None:
        checked = 0
        async with asyncio.timeout(timeout):
            while True:
                for kind, node in self.seen[checked:]:
                    if accept(kind, node):
                        return
                checked = len(self.seen)
                self.changed.clear()
                await self.changed.wait()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


def _audit(runtime: LocalRuntime) -> list[dict[str, Any]]:
    entries = []
    for path in sorted(runtime.layout.logs.glob("audit*.log")):
        entries += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return entries


def _writes(entries: list[dict[str, Any]], verb: str, resource: str, subresource: str = "") -> Counter[str]:
    """How many successful ``verb`` requests Pilothouse (the cluster's admin user) made to each object."""
    return Counter(
        e["objectRef"].get("name", "")
        for e in entries
        if e["user"]["username"] == ADMIN_USER
        and e["verb"] == verb
        and e.get("objectRef", {}).get("resource") == resource
        and e["objectRef"].get("subresource", "") == subresource
        and e.get("responseStatus", {}).get("code", 0) < 300
    )


async def _wait_until_done(platform: Platform, operation_id: str, timeout: float = 120) -> None:
    await operations.wait_finished(platform.operations.store, operation_id, timeout=timeout)


@pytest.mark.slow
@pytest.mark.own_cluster
async def test_rollout_survives_kill_9_twice_and_never_breaks_a_budget(
    platform: Platform, pilothouse_env: dict[str, str], installed_binaries: BinaryCache
) -> None:
    name = "rollout-kill"
    runtime = await _old_cluster(platform, name, nodes=4)
    env = {**os.environ, **pilothouse_env}
    old = [f"kwok-node-{i:03d}" for i in range(4)]
    new = [f"kwok-node-{i:03d}" for i in range(4, 8)]
    try:
        async with kube_client.open_client(platform.clusters.credentials(name)) as client:
            for deployment in (_deployment("web", 4), _deployment("api", 3), _deployment("solo", 1)):
                await client.create(deployment)
            await client.create(_budget("web", min_available=3))
            await client.create(_budget("api", max_unavailable=1))
            await _all_available(client)
            watcher = BudgetWatcher(client, {"web": 3, "api": 2})
            await watcher.start()
            nodes = NodeWatcher(client)
            nodes.start()

            plan = await platform.rollouts.plan(name)
            assert plan.allowed, plan.blockers
            assert [b.old for b in plan.batches] == [(n,) for n in old]
            assert [b.surge for b in plan.batches] == [(n,) for n in new]

            cli = await asyncio.create_subprocess_exec(
                PILOTHOUSE,
                "rollout",
                "start",
                name,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            # kill 1: right after batch-2 cordoned its old node, while it drains
            await nodes.wait_for(lambda kind, n: n.metadata.name == old[1] and bool(n.spec.unschedulable))
            cli.send_signal(signal.SIGKILL)
            await cli.wait()
            record = platform.operations.store.list(cluster=name)[0]
            assert record.phase is OperationPhase.RUNNING
            holder = platform.clusters.get(name).lease_holder
            assert holder is not None
            assert holder_is_dead(holder)

            again = await asyncio.create_subprocess_exec(
                PILOTHOUSE,
                "operations",
                "resume",
                record.id,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            # kill 2: right after batch-3 created its surge node, before it is Ready and used
            await nodes.wait_for(lambda kind, n: kind == "ADDED" and n.metadata.name == new[2])
            again.send_signal(signal.SIGKILL)
            await again.wait()

            done = await platform.rollouts.run(record.id)
            assert done.phase is OperationPhase.SUCCEEDED, done.message
            await _all_available(client)
            await asyncio.sleep(1)  # let the watcher see the last events
            await watcher.stop()
            await nodes.stop()

            # no budget was ever broken, and pods did move
            assert watcher.violations == [], watcher.violations[:5]
            assert watcher.deleted >= 8
            assert watcher.lowest == {"web": 3, "api": 2}, watcher.lowest

            # every step finished; none that took effect was done twice
            steps = {s.name: s for s in operations.journal(done)}
            assert all(s.state is operations.StepState.DONE for s in steps.values())
            assert all(s.acted <= 1 for s in steps.values()), [(s.name, s.acted) for s in steps.values()]
            assert steps["batch-2"].attempts == 2
            assert steps["batch-3"].attempts == 2
            assert steps["batch-1"].attempts == steps["batch-4"].attempts == 1

            # the cluster: old nodes gone, new ones Ready on the target, every pod on them
            after = {
                n.name: n
                for n in await drain.DrainClient(client, platform.clusters.credentials(name)).nodes()
            }
            assert sorted(after) == new
            assert all(n.ready and not n.unschedulable and n.kubelet_version == NEW for n in after.values())
            pods = [p async for p in client.list(Pod, namespace=NAMESPACE)]
            assert len(pods) == 8
            assert {p.spec.nodeName for p in pods} <= set(new)

        # the API server's record: each pod evicted at most once, each node cordoned,
        # created and deleted at most once
        audit = _audit(runtime)
        evictions = _writes(audit, "create", "pods", "eviction")
        assert evictions, "no eviction reached the API server"
        assert max(evictions.values()) == 1, evictions
        patches = [
            (e["objectRef"]["name"], sorted(e["requestObject"]["spec"]))
            for e in audit
            if e["user"]["username"] == ADMIN_USER
            and e["verb"] == "patch"
            and e["objectRef"]["resource"] == "nodes"
        ]
        assert Counter(name for name, fields in patches if fields == ["unschedulable"]) == Counter(
            old
        )  # cordons
        assert Counter(name for name, fields in patches if fields == ["taints"]) == Counter(
            old
        )  # PreferNoSchedule
        assert len(patches) == 2 * len(old)
        assert _writes(audit, "delete", "nodes") == Counter(old)
        assert _writes(audit, "create", "nodes") == Counter(old + new)  # the cluster's, then ours
    finally:
        await platform.clusters.delete(name)


@pytest.mark.slow
@pytest.mark.own_cluster
async def test_a_budget_that_allows_nothing_pauses_the_rollout_and_abort_leaves_the_cluster_serving(
    platform: Platform, installed_binaries: BinaryCache
) -> None:
    name = "rollout-blocked"
    await _old_cluster(platform, name, nodes=3)
    try:
        creds = platform.clusters.credentials(name)
        async with kube_client.open_client(creds) as client:
            await client.create(_deployment("locked", 3, spread=True))  # one pod on every node
            await client.create(_budget("locked", min_available=3))  # allows no disruption at all
            await client.create(_deployment("web", 2))
            await client.create(_budget("web", max_unavailable=1))
            await _all_available(client)
            watcher = BudgetWatcher(client, {"locked": 3, "web": 1})
            await watcher.start()
            kube = drain.DrainClient(client, creds)

            plan = await platform.rollouts.plan(name)
            assert "pdb-blocks-drain" in [f.code for f in plan.warnings]
            record = await platform.rollouts.start(name, pdb_timeout=6, health_timeout=30)

            paused = await platform.rollouts.run(record.id)
            assert paused.phase is OperationPhase.PAUSED, paused.message
            assert "paused at replace kwok-node-000" in paused.message
            assert "made no progress for 6 s" in paused.message
            assert "PodDisruptionBudget default/locked allows no disruption now (3 healthy, 3 required)" in (
                paused.message
            )
            steps = {s.name: s for s in operations.journal(paused)}
            assert steps["batch-1"].state is operations.StepState.PENDING
            node = await client.get(Node, "kwok-node-000")
            assert node.spec.unschedulable
            assert (node.metadata.annotations or {}).get(CORDONED_BY_ANNOTATION) == record.id
            tainted = sorted(
                n.name
                for n in await kube.nodes()
                if (OUTDATED_TAINT, record.id, "PreferNoSchedule") in n.taints
            )
            assert tainted == ["kwok-node-000", "kwok-node-001", "kwok-node-002"]

            # resumed, it waits again; a pause asked for while it waits takes effect at once
            platform.operations.store.resume(record.id)
            task = asyncio.create_task(platform.rollouts.run(record.id))
            await asyncio.sleep(1.5)
            platform.operations.store.request(record.id, OperationRequest.PAUSE)
            paused_again = await asyncio.wait_for(task, timeout=10)
            assert paused_again.phase is OperationPhase.PAUSED
            assert "paused on request while draining kwok-node-000" in paused_again.message

            platform.operations.store.request(record.id, OperationRequest.ABORT)
            aborted = await platform.rollouts.run(record.id)
            assert aborted.phase is OperationPhase.ABORTED, aborted.message
            assert "uncordoned: kwok-node-000" in aborted.message
            assert "new nodes kept (v1.36.3): kwok-node-003" in aborted.message

            # the cluster serves: no node cordoned, every workload available, the budget intact
            node = await client.get(Node, "kwok-node-000")
            assert not node.spec.unschedulable
            assert CORDONED_BY_ANNOTATION not in (node.metadata.annotations or {})
            assert not [t for n in await kube.nodes() for t in n.taints if t[0] == OUTDATED_TAINT]
            await _all_available(client)
            await client.create(_deployment("after", 2))
            await _all_available(client)
            await watcher.stop()
            assert watcher.violations == [], watcher.violations[:5]
    finally:
        await platform.clusters.delete(name)


@pytest.mark.slow
@pytest.mark.own_cluster
async def test_a_crash_looping_workload_trips_the_health_gate_and_resume_finishes_the_rollout(
    platform: Platform, installed_binaries: BinaryCache
) -> None:
    name = "rollout-gate"
    await _old_cluster(platform, name, nodes=3)
    try:
        async with kube_client.open_client(platform.clusters.credentials(name)) as client:
            await client.create(_deployment("web", 3))
            await client.create(_budget("web", max_unavailable=1))
            await client.create(_deployment("flaky", 2))
            await _all_available(client)
            record = await platform.rollouts.start(name, max_surge="2", health_timeout=4)

            # a bad release of `flaky` lands after the rollout was planned: its new pod crash-loops
            crash = {
                "spec": {"template": {"metadata": {"annotations": {"pilothouse.dev/simulate": "crashloop"}}}}
            }
            await client.patch(Deployment, "flaky", crash, namespace=NAMESPACE, patch_type=PatchType.MERGE)
            paused = await platform.rollouts.run(record.id)
            assert paused.phase is OperationPhase.PAUSED, paused.message
            assert "health gate before the batch" in paused.message
            assert "CrashLoopBackOff" in paused.message
            assert not any([n.spec.unschedulable async for n in client.list(Node)])  # nothing drained

            heal = {"spec": {"template": {"metadata": {"annotations": {"pilothouse.dev/simulate": None}}}}}
            await client.patch(Deployment, "flaky", heal, namespace=NAMESPACE, patch_type=PatchType.MERGE)
            platform.operations.store.resume(record.id)
            done = await platform.rollouts.run(record.id)
            assert done.phase is OperationPhase.SUCCEEDED, done.message
            nodes = [n async for n in client.list(Node)]
            assert sorted(str(n.metadata.name) for n in nodes) == [f"kwok-node-{i:03d}" for i in range(3, 6)]
            assert {n.status.nodeInfo.kubeletVersion for n in nodes} == {NEW}
            await _all_available(client)

        # a restart keeps the new nodes and does not bring the replaced ones back
        await platform.clusters.stop(name)
        await platform.clusters.start(name)
        async with kube_client.open_client(platform.clusters.credentials(name)) as client:
            names = sorted([str(n.metadata.name) async for n in client.list(Node)])
            assert names == [f"kwok-node-{i:03d}" for i in range(3, 6)]
    finally:
        await platform.clusters.delete(name)


@pytest.mark.slow
@pytest.mark.own_cluster
async def test_refused_rollouts_say_why_and_change_nothing(
    platform: Platform, pilothouse_env: dict[str, str], installed_binaries: BinaryCache
) -> None:
    name = "rollout-refused"
    runtime = await _old_cluster(platform, name, nodes=2)
    env = {**os.environ, **pilothouse_env}

    def refused(*args: str, expected: str) -> None:
        result = subprocess.run(
            [PILOTHOUSE, "rollout", "start", name, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert expected in " ".join(output.split()), output
        assert "Traceback" not in output

    async def nodes() -> list[tuple[str, bool, str]]:
        async with kube_client.open_client(platform.clusters.credentials(name)) as client:
            return [
                (str(n.metadata.name), bool(n.spec.unschedulable), str(n.status.nodeInfo.kubeletVersion))
                async for n in client.list(Node)
            ]

    try:
        before = await nodes()
        # through the CLI: the message and hint a user reads, exit code 1, no traceback
        refused("--to", "1.99.0", expected="Kubernetes 1.99.0 is not a release Pilothouse supports")
        refused("--max-surge", "lots", expected="max-surge must be a whole number of nodes or a percentage")
        # the same service, in-process, for the other refusals
        for kwargs, error, expected in (
            ({"to": "latest"}, errors.InvalidInput, "malformed target version 'latest'"),
            ({"to": "1.35.4"}, errors.Conflict, "already run v1.35.4"),
            ({"max_surge": "-1"}, errors.InvalidInput, "max-surge must be a whole number"),
            ({"max_unavailable": "150%"}, errors.InvalidInput, "max-unavailable 150% is more than 100%"),
            ({"max_surge": 0, "max_unavailable": 0}, errors.InvalidInput, "both come to 0 nodes"),
            ({"pdb_timeout": 0.0}, errors.InvalidInput, "pdb-timeout must be more than 0"),
        ):
            with pytest.raises(error, match=re.escape(expected)):
                await platform.rollouts.start(name, **kwargs)
        assert await nodes() == before
        assert before == [(f"kwok-node-{i:03d}", False, OLD) for i in range(2)]
        assert platform.operations.store.list(cluster=name) == []

        platform.clusters.local.kill(runtime, "kube-apiserver-0")
        refused(expected=f"cannot plan a node rollout of {name}: cannot connect to")
        assert platform.operations.store.list(cluster=name) == []
    finally:
        await platform.clusters.delete(name)
