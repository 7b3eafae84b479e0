"""Plain-data factories for summaries used by several unit tests."""

from __future__ import annotations

from pilothouse.kube.summaries import PodSummary


def pod_summary(
    name: str,
    *,
    phase: str = "Running",
    waiting: str = "",
    namespace: str = "default",
    node: str = "kwok-node-0",
    owner_name: str = "web",
    cpu_request_millicores: int = 0,
    memory_request_bytes: int = 0,
) -> PodSummary:
    return PodSummary(
        namespace=namespace,
        name=name,
        node=node,
        phase=phase,
        ready=phase == "Running" and not waiting,
        terminating=False,
        restarts=0,
        waiting_reason=waiting,
        owner_kind="ReplicaSet",
        owner_name=owner_name,
        cpu_request_millicores=cpu_request_millicores,
        memory_request_bytes=memory_request_bytes,
        cpu_limit_millicores=0,
        memory_limit_bytes=0,
    )
