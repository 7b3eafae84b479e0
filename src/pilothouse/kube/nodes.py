"""Node objects: registering simulated (kwok) nodes and counting Ready ones.

Nodes are created with server-side apply (field manager ``pilothouse``), so
re-running a half-finished registration is harmless. The kwok controller
picks up nodes carrying the ``kwok.x-k8s.io/node=fake`` annotation and plays
their kubelet: it marks them Ready and keeps their leases fresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from lightkube import AsyncClient
from lightkube.models.core_v1 import NodeStatus, NodeSystemInfo
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node

from pilothouse.vocabulary import KWOK_NODE_ANNOTATION, KWOK_NODE_ANNOTATION_VALUE, MANAGED_BY_LABEL

SIMULATED_CAPACITY = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "500Gi"}


def simulated_node_name(index: int) -> str:
    return f"kwok-node-{index:03d}"


def simulated_node(name: str, *, kubelet_version: str, instance_type: str = "kwok.standard") -> Node:
    return Node(
        metadata=ObjectMeta(
            name=name,
            annotations={
                KWOK_NODE_ANNOTATION: KWOK_NODE_ANNOTATION_VALUE,
                "node.alpha.kubernetes.io/ttl": "0",
            },
            labels={
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": instance_type,
                "type": "kwok",
                MANAGED_BY_LABEL: "pilothouse",
            },
        ),
        status=NodeStatus(
            capacity=dict(SIMULATED_CAPACITY),
            allocatable=dict(SIMULATED_CAPACITY),
            nodeInfo=NodeSystemInfo(
                architecture="amd64",
                bootID="",
                containerRuntimeVersion="kwok",
                kernelVersion="kwok",
                kubeProxyVersion="",
                kubeletVersion=kubelet_version,
                machineID="",
                operatingSystem="linux",
                osImage="kwok",
                systemUUID="",
            ),
        ),
    )


async def ensure_simulated_nodes(
    client: AsyncClient, count: int, *, kubelet_version: str, concurrency: int = 16
) -> list[str]:
    """Top the simulated nodes up to ``count``, naming new ones ``kwok-node-NNN`` with the lowest
    free numbers; return the names created. Nodes a node rollout (``fleet.rollouts``) put in
    place of ``kwok-node-000`` … keep their own names, so a restart never brings the old ones back."""
    existing: set[str] = set()
    simulated = 0
    async for node in client.list(Node):
        if node.metadata is None or node.metadata.name is None:
            continue
        existing.add(node.metadata.name)
        simulated += (node.metadata.annotations or {}).get(KWOK_NODE_ANNOTATION) == KWOK_NODE_ANNOTATION_VALUE
    names: list[str] = []
    index = 0
    while simulated + len(names) < count:
        if simulated_node_name(index) not in existing:
            names.append(simulated_node_name(index))
        index += 1
    gate = asyncio.Semaphore(concurrency)

    async def create(name: str) -> None:
        async with gate:
            await client.create(simulated_node(name, kubelet_version=kubelet_version))

    async with asyncio.TaskGroup() as group:  # one failure cancels the other creates
        for name in names:
            if name not in existing:
                group.create_task(create(name))
    return names


def is_ready(node: Node) -> bool:
    conditions = node.status.conditions if node.status and node.status.conditions else []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


async def count_ready(client: AsyncClient) -> tuple[int, int]:
    """(ready, total) nodes."""
    ready = total = 0
    async for node in client.list(Node, chunk_size=500):
        total += 1
        ready += is_ready(node)
    return ready, total


async def wait_ready(
    client: AsyncClient,
    expected: int,
    *,
    deadline: float,
    on_progress: Callable[[int, int], None] | None = None,
    interval: float = 0.5,
) -> int:
    """Poll until ``expected`` nodes are Ready or the event-loop time passes ``deadline``."""
    loop = asyncio.get_running_loop()
    ready = 0
    while True:
        ready, _total = await count_ready(client)
        if on_progress is not None:
            on_progress(ready, expected)
        if ready >= expected or loop.time() >= deadline:
            return ready
        await asyncio.sleep(interval)
