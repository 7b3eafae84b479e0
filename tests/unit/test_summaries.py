"""Summaries of Kubernetes objects and quantity parsing, from plain data (no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from lightkube.models.core_v1 import (
    Container,
    ContainerState,
    ContainerStateWaiting,
    ContainerStatus,
    PodSpec,
    PodStatus,
    ResourceRequirements,
)
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.resources.apps_v1 import DaemonSet, Deployment, StatefulSet
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Event, Namespace, Node, Pod
from lightkube.resources.policy_v1 import PodDisruptionBudget

from pilothouse.kube import summaries
from pilothouse.kube.summaries import JobState, WorkloadKind

T = TypeVar("T")


def _load(cls: type[T], data: dict[str, Any]) -> T:
    """A lightkube object from plain data, as the API server would send it."""
    obj = cls.from_dict(data)  # type: ignore[attr-defined]
    assert isinstance(obj, cls)
    return obj


# ----- quantities ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100m", Decimal("0.1")),
        ("1", Decimal(1)),
        ("1.5", Decimal("1.5")),
        (".5", Decimal("0.5")),
        ("2k", Decimal(2000)),
        ("1M", Decimal(1_000_000)),
        ("1Ki", Decimal(1024)),
        ("500Mi", Decimal(500 * 1024**2)),
        ("1Gi", Decimal(1024**3)),
        ("0.5Gi", Decimal(512 * 1024**2)),
        ("1e3", Decimal(1000)),
        ("1E", Decimal(10**18)),  # E is exa, not an exponent
        ("0", Decimal(0)),
    ],
)
def test_parse_quantity(text: str, expected: Decimal) -> None:
    assert summaries.parse_quantity(text) == expected


@pytest.mark.parametrize(
    "text", ["", "abc", "Mi", "1Gb", "1ki", "1.2.3", " 1", "1 Gi", "--1", "1e", "1e999999999999"]
)
def test_parse_quantity_rejects_malformed_input(text: str) -> None:
    with pytest.raises(ValueError, match="quantity"):
        summaries.parse_quantity(text)


def test_parse_quantity_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="quantity"):
        summaries.parse_quantity(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "millicores"),
    [("100m", 100), ("1", 1000), ("1.5", 1500), ("0.1", 100), ("250m", 250), ("0.0001", 1), ("32", 32000)],
)
def test_cpu_millicores_round_up(text: str, millicores: int) -> None:
    assert summaries.cpu_millicores(text) == millicores


@pytest.mark.parametrize(
    ("text", "size"),
    [("1Gi", 1024**3), ("500Mi", 500 * 1024**2), ("2k", 2000), ("128974848", 128974848), ("1m", 1)],
)
def test_memory_bytes_round_up(text: str, size: int) -> None:
    assert summaries.memory_bytes(text) == size


# ----- nodes and namespaces ----------------------------------------------------------------------


def _node(**overrides: Any) -> Node:
    data: dict[str, Any] = {
        "metadata": {
            "name": "kwok-node-000",
            "labels": {"node.kubernetes.io/instance-type": "m5.large", "team": "core"},
        },
        "spec": {},
        "status": {
            "allocatable": {"cpu": "31500m", "memory": "250Gi", "pods": "110"},
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True"},
            ],
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": "",
                "containerRuntimeVersion": "kwok",
                "kernelVersion": "kwok",
                "kubeProxyVersion": "",
                "kubeletVersion": "v1.36.3",
                "machineID": "",
                "operatingSystem": "linux",
                "osImage": "kwok",
                "systemUUID": "",
            },
        },
    }
    data.update(overrides)
    return _load(Node, data)


def test_node_summary() -> None:
    node = summaries.summarize_node(_node())
    assert node == summaries.NodeSummary(
        name="kwok-node-000",
        ready=True,
        unschedulable=False,
        kubelet_version="v1.36.3",
        cpu_millicores=31500,
        memory_bytes=250 * 1024**3,
        pods=110,
        instance_type="m5.large",
        conditions=(("MemoryPressure", "False"), ("Ready", "True")),
    )
    assert node.key == ("", "kwok-node-000")
    assert node.problems == ()


def test_cordoned_not_ready_node_under_pressure() -> None:
    node = summaries.summarize_node(
        _node(
            spec={"unschedulable": True},
            status={
                "conditions": [
                    {"type": "Ready", "status": "Unknown"},
                    {"type": "DiskPressure", "status": "True"},
                ]
            },
        )
    )
    assert node.unschedulable
    assert not node.ready
    assert node.problems == ("Ready", "DiskPressure")
    assert (node.cpu_millicores, node.memory_bytes, node.kubelet_version) == (0, 0, "")


def test_node_with_no_status_and_a_malformed_quantity() -> None:
    bare = summaries.summarize_node(Node(metadata=ObjectMeta(name="n")))
    assert (bare.ready, bare.unschedulable, bare.instance_type, bare.conditions) == (False, False, "", ())
    odd = summaries.summarize_node(_node(status={"allocatable": {"cpu": "lots", "memory": "1Gi"}}))
    assert (odd.cpu_millicores, odd.memory_bytes) == (0, 1024**3)


def test_namespace_summary() -> None:
    namespace = _load(
        Namespace,
        {
            "metadata": {"name": "shop", "labels": {"team": "payments", "a": "b"}},
            "status": {"phase": "Active"},
        },
    )
    assert summaries.summarize_namespace(namespace) == summaries.NamespaceSummary(
        name="shop", phase="Active", labels=(("a", "b"), ("team", "payments"))
    )
    assert summaries.summarize_namespace(Namespace(metadata=ObjectMeta(name="x"))).phase == "Active"


# ----- pods -------------------------------------------------------------------------------------


def _container(name: str, requests: dict[str, str] | None, limits: dict[str, str] | None = None) -> Container:
    return Container(name=name, resources=ResourceRequirements(requests=requests, limits=limits))


def _status(
    name: str, *, restarts: int = 0, waiting: str | None = None, ready: bool = True
) -> ContainerStatus:
    state = ContainerState(waiting=ContainerStateWaiting(reason=waiting)) if waiting else None
    return ContainerStatus(
        name=name, image="img", imageID="", ready=ready, restartCount=restarts, state=state
    )


def test_pod_summary_sums_requests_and_reads_owner_and_readiness() -> None:
    pod = Pod(
        metadata=ObjectMeta(
            name="web-7d4b9-abcde",
            namespace="shop",
            ownerReferences=[
                OwnerReference(apiVersion="v1", kind="Other", name="x", uid="1"),
                OwnerReference(
                    apiVersion="apps/v1", kind="ReplicaSet", name="web-7d4b9", uid="2", controller=True
                ),
            ],
        ),
        spec=PodSpec(
            nodeName="kwok-node-003",
            containers=[
                _container("app", {"cpu": "250m", "memory": "256Mi"}, {"cpu": "1", "memory": "512Mi"}),
                _container("sidecar", {"cpu": "50m", "memory": "64Mi"}),
                _container("bare", None),
            ],
        ),
        status=_load(
            PodStatus,
            {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    _status("app", restarts=2).to_dict(),
                    _status("sidecar", restarts=1).to_dict(),
                ],
            },
        ),
    )
    summary = summaries.summarize_pod(pod)
    assert summary == summaries.PodSummary(
        namespace="shop",
        name="web-7d4b9-abcde",
        node="kwok-node-003",
        phase="Running",
        ready=True,
        terminating=False,
        restarts=3,
        waiting_reason="",
        owner_kind="ReplicaSet",
        owner_name="web-7d4b9",
        cpu_request_millicores=300,
        memory_request_bytes=320 * 1024**2,
        cpu_limit_millicores=1000,
        memory_limit_bytes=512 * 1024**2,
    )
    assert summary.key == ("shop", "web-7d4b9-abcde")


def test_crash_looping_pod() -> None:
    pod = _load(
        Pod,
        {
            "metadata": {"name": "db-0", "namespace": "data", "deletionTimestamp": "2026-01-02T03:04:05Z"},
            "spec": {"containers": [{"name": "db"}]},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [
                    {
                        "name": "db",
                        "image": "db",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 7,
                        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
                    }
                ],
            },
        },
    )
    summary = summaries.summarize_pod(pod)
    assert (summary.ready, summary.restarts, summary.waiting_reason) == (False, 7, "CrashLoopBackOff")
    assert summary.terminating
    assert (summary.owner_kind, summary.owner_name) == ("", "")


def test_init_containers_raise_requests_when_larger_and_overhead_adds() -> None:
    pod = Pod(
        metadata=ObjectMeta(name="p", namespace="n"),
        spec=PodSpec(
            containers=[_container("a", {"cpu": "100m", "memory": "100Mi"})],
            initContainers=[_container("migrate", {"cpu": "2", "memory": "10Mi"})],
            overhead={"cpu": "10m", "memory": "1Mi"},
        ),
        status=PodStatus(initContainerStatuses=[_status("migrate", waiting="ImagePullBackOff", ready=False)]),
    )
    summary = summaries.summarize_pod(pod)
    assert summary.cpu_request_millicores == 2010
    assert summary.memory_request_bytes == 101 * 1024**2
    assert summary.waiting_reason == "ImagePullBackOff"


def test_unscheduled_pod_without_status() -> None:
    summary = summaries.summarize_pod(Pod(metadata=ObjectMeta(name="p", namespace="n")))
    assert (summary.node, summary.phase, summary.ready, summary.restarts) == ("", "Pending", False, 0)
    assert summary.cpu_request_millicores == summary.memory_request_bytes == 0


def test_interned_strings_are_shared() -> None:
    data = {"metadata": {"name": "a", "namespace": "shared-ns"}, "spec": {"containers": [{"name": "c"}]}}
    first = summaries.summarize_pod(_load(Pod, data))
    second = summaries.summarize_pod(
        _load(Pod, {**data, "metadata": {"name": "b", "namespace": "shared-ns"}})
    )
    assert first.namespace is second.namespace


# ----- workloads, jobs, PDBs ----------------------------------------------------------------------

_TEMPLATE = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c"}]}}
_SELECTOR = {"matchLabels": {"app": "x"}}


def test_deployment_summary() -> None:
    deployment = _load(
        Deployment,
        {
            "metadata": {"name": "web", "namespace": "shop", "generation": 3},
            "spec": {"replicas": 5, "selector": _SELECTOR, "template": _TEMPLATE},
            "status": {
                "observedGeneration": 3,
                "readyReplicas": 4,
                "availableReplicas": 3,
                "updatedReplicas": 5,
            },
        },
    )
    summary = summaries.summarize_deployment(deployment)
    assert summary == summaries.WorkloadSummary(
        namespace="shop",
        name="web",
        kind=WorkloadKind.DEPLOYMENT,
        desired=5,
        ready=4,
        available=3,
        updated=5,
        observed=True,
    )
    assert not summary.fully_available


def test_deployment_defaults_and_unobserved_generation() -> None:
    deployment = _load(
        Deployment,
        {
            "metadata": {"name": "web", "namespace": "shop", "generation": 4},
            "spec": {"selector": _SELECTOR, "template": _TEMPLATE},
            "status": {"observedGeneration": 3, "readyReplicas": 1, "availableReplicas": 1},
        },
    )
    summary = summaries.summarize_deployment(deployment)
    assert (summary.desired, summary.observed, summary.fully_available) == (1, False, False)
    scaled_to_zero = summaries.summarize_deployment(
        _load(
            Deployment,
            {
                "metadata": {"name": "z", "namespace": "s"},
                "spec": {"replicas": 0, "selector": _SELECTOR, "template": _TEMPLATE},
            },
        )
    )
    assert (scaled_to_zero.desired, scaled_to_zero.fully_available) == (0, True)


def test_statefulset_and_daemonset_summaries() -> None:
    statefulset = _load(
        StatefulSet,
        {
            "metadata": {"name": "db", "namespace": "data"},
            "spec": {"replicas": 3, "selector": _SELECTOR, "template": _TEMPLATE, "serviceName": "db"},
            "status": {"replicas": 3, "readyReplicas": 3, "availableReplicas": 3, "updatedReplicas": 3},
        },
    )
    daemonset = _load(
        DaemonSet,
        {
            "metadata": {"name": "agent", "namespace": "kube-system"},
            "spec": {"selector": _SELECTOR, "template": _TEMPLATE},
            "status": {
                "currentNumberScheduled": 20,
                "desiredNumberScheduled": 20,
                "numberMisscheduled": 0,
                "numberReady": 19,
                "numberAvailable": 19,
            },
        },
    )
    db = summaries.summarize_statefulset(statefulset)
    agent = summaries.summarize_daemonset(daemonset)
    assert (db.kind, db.desired, db.ready, db.available, db.fully_available) == (
        WorkloadKind.STATEFULSET,
        3,
        3,
        3,
        True,
    )
    assert (agent.kind, agent.desired, agent.ready, agent.available, agent.fully_available) == (
        WorkloadKind.DAEMONSET,
        20,
        19,
        19,
        False,
    )


@pytest.mark.parametrize(
    ("spec", "status", "state"),
    [
        ({}, {"active": 1}, JobState.RUNNING),
        ({}, {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}, JobState.COMPLETE),
        ({}, {"failed": 6, "conditions": [{"type": "Failed", "status": "True"}]}, JobState.FAILED),
        ({"suspend": True}, {}, JobState.SUSPENDED),
        ({}, {"conditions": [{"type": "Complete", "status": "False"}]}, JobState.RUNNING),
    ],
)
def test_job_states(spec: dict[str, Any], status: dict[str, Any], state: JobState) -> None:
    job = _load(
        Job,
        {
            "metadata": {
                "name": "backup-123",
                "namespace": "ops",
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "CronJob",
                        "name": "backup",
                        "uid": "u",
                        "controller": True,
                    }
                ],
            },
            "spec": {"template": _TEMPLATE, "completions": 1, **spec},
            "status": status,
        },
    )
    summary = summaries.summarize_job(job)
    assert summary.state is state
    assert (summary.owner_name, summary.completions) == ("backup", 1)


def test_pdb_summary() -> None:
    pdb = _load(
        PodDisruptionBudget,
        {
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"minAvailable": 2},
            "status": {"currentHealthy": 3, "desiredHealthy": 2, "disruptionsAllowed": 1, "expectedPods": 3},
        },
    )
    assert summaries.summarize_pdb(pdb) == summaries.PdbSummary(
        namespace="shop",
        name="web",
        disruptions_allowed=1,
        current_healthy=3,
        desired_healthy=2,
        expected_pods=3,
    )
    empty = summaries.summarize_pdb(PodDisruptionBudget(metadata=ObjectMeta(name="x", namespace="y")))
    assert empty.disruptions_allowed == 0


# ----- events -----------------------------------------------------------------------------------


def test_core_event_summary_truncates_the_message() -> None:
    event = _load(
        Event,
        {
            "metadata": {"name": "web.17a", "namespace": "shop"},
            "involvedObject": {"kind": "Deployment", "name": "web", "namespace": "shop"},
            "reason": "ScalingReplicaSet",
            "type": "Normal",
            "message": "x" * 2000,
            "count": 4,
            "lastTimestamp": "2026-03-04T05:06:07Z",
            "source": {"component": "deployment-controller"},
        },
    )
    summary = summaries.summarize_event(event)
    assert len(summary.message) == summaries.EVENT_MESSAGE_LIMIT
    assert (summary.involved_kind, summary.involved_name, summary.reason, summary.type) == (
        "Deployment",
        "web",
        "ScalingReplicaSet",
        "Normal",
    )
    assert summary.count == 4
    assert summary.last_timestamp == datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert summary.source == "deployment-controller"
    assert summary.key == ("shop", "web.17a")


def test_events_api_event_uses_series_and_event_time() -> None:
    event = _load(
        Event,
        {
            "metadata": {"name": "p.18b", "namespace": "shop", "creationTimestamp": "2026-03-04T05:00:00Z"},
            "involvedObject": {"kind": "Pod", "name": "p"},
            "reason": "BackOff",
            "type": "Warning",
            "eventTime": "2026-03-04T05:01:00.123456Z",
            "series": {"count": 12, "lastObservedTime": "2026-03-04T05:09:00.000000Z"},
            "reportingComponent": "kubelet",
        },
    )
    summary = summaries.summarize_event(event)
    assert summary.count == 12
    assert summary.last_timestamp == datetime(2026, 3, 4, 5, 9, tzinfo=UTC)
    assert summary.source == "kubelet"
    single = summaries.summarize_event(
        _load(
            Event,
            {
                "metadata": {"name": "q", "namespace": "s", "creationTimestamp": "2026-03-04T05:00:00Z"},
                "involvedObject": {},
            },
        )
    )
    assert single.count == 1
    assert single.last_timestamp == datetime(2026, 3, 4, 5, 0, tzinfo=UTC)
    assert (single.involved_kind, single.message) == ("", "")


def test_every_kind_has_a_spec_with_its_summarizer() -> None:
    assert [spec.kind for spec in summaries.ALL_SPECS] == list(summaries.Kind)
    assert summaries.PODS.namespaced
    assert not summaries.NODES.namespaced
    assert summaries.ALL_SPECS[0].summarize is summaries.summarize_node
