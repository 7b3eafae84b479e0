"""A real single-control-plane local cluster: nodes, version, workloads, restarts."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import Container, PodSpec, PodTemplateSpec
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Node, Pod, Secret

from pilothouse.kube import client as kube_client
from pilothouse.kube import nodes as kube_nodes
from pilothouse.platform import Platform
from pilothouse.providers.local.provider import LocalRuntime
from pilothouse.settings import Settings
from pilothouse.store.clusters import ClusterRecord
from pilothouse.vocabulary import ClusterPhase
from tests.conftest import SHARED_CLUSTER, SHARED_NODES
from tests.integration.kube_helpers import eventually


async def test_all_nodes_ready_and_pinned_version(platform: Platform, shared_cluster: ClusterRecord) -> None:
    creds = platform.clusters.credentials(SHARED_CLUSTER)
    version = await kube_client.get_json(creds, "/version")
    assert version["gitVersion"] == f"v{platform.settings.kubernetes_version}"
    async with kube_client.open_client(creds) as client:
        nodes = [n async for n in client.list(Node)]
        assert len(nodes) == SHARED_NODES
        assert all(kube_nodes.is_ready(n) for n in nodes), [
            n.metadata.name for n in nodes if not kube_nodes.is_ready(n)
        ]
        assert {n.status.nodeInfo.kubeletVersion for n in nodes} == {version["gitVersion"]}


async def test_deployment_of_ten_replicas_runs_on_simulated_nodes(
    platform: Platform, shared_cluster: ClusterRecord
) -> None:
    creds = platform.clusters.credentials(SHARED_CLUSTER)
    labels: dict[str, Any] = {"app": "web-ten"}
    deployment = Deployment(
        metadata=ObjectMeta(name="web-ten", namespace="default"),
        spec=DeploymentSpec(
            replicas=10,
            selector=LabelSelector(matchLabels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels),
                spec=PodSpec(containers=[Container(name="web", image="registry.example/web:1.0")]),
            ),
        ),
    )
    async with kube_client.open_client(creds) as client:
        await client.create(deployment)

        async def running_pods() -> list[Pod]:
            return [
                p
                async for p in client.list(Pod, namespace="default", labels=labels)
                if p.status.phase == "Running"
            ]

        pods = await eventually(running_pods, lambda ps: len(ps) == 10, timeout=90)
        node_names = {n.metadata.name async for n in client.list(Node)}
        assert all(p.spec.nodeName in node_names for p in pods)
        assert len({p.spec.nodeName for p in pods}) > 1, "the scheduler spread pods over several nodes"
        ready = await eventually(
            lambda: client.get(Deployment, "web-ten", namespace="default"),
            lambda d: (d.status.readyReplicas or 0) == 10,
            timeout=60,
        )
        assert ready.status.availableReplicas == 10
        await client.delete(Deployment, "web-ten", namespace="default")


async def test_a_restarted_pilothouse_finds_its_cluster_running(
    settings: Settings, shared_cluster: ClusterRecord
) -> None:
    # A fresh Platform is what a restarted Pilothouse process builds from the store.
    restarted = Platform.open(settings)
    try:
        view = restarted.clusters.view(SHARED_CLUSTER)
        assert view.record.phase == ClusterPhase.RUNNING
        assert view.processes
        assert all(view.processes.values()), view.processes
        assert await restarted.clusters.reconcile_local() == []
    finally:
        restarted.close()


async def test_reconciler_restarts_a_dead_component(
    platform: Platform, shared_cluster: ClusterRecord
) -> None:
    record = platform.clusters.get(SHARED_CLUSTER)
    runtime = LocalRuntime.from_dict(record.runtime)
    old_pid = runtime.processes["kube-scheduler-0"].pid
    platform.clusters.local.kill(runtime, "kube-scheduler-0")
    assert not platform.clusters.view(SHARED_CLUSTER).processes["kube-scheduler-0"]

    acted = await platform.clusters.reconcile_local()

    assert acted == [SHARED_CLUSTER]
    view = platform.clusters.view(SHARED_CLUSTER)
    assert all(view.processes.values()), view.processes
    new_pid = LocalRuntime.from_dict(view.record.runtime).processes["kube-scheduler-0"].pid
    assert new_pid != old_pid
    assert psutil.pid_exists(new_pid)
    assert view.record.phase == ClusterPhase.RUNNING


@pytest.mark.parametrize("secret", ["BEGIN EC PRIVATE KEY", "BEGIN PRIVATE KEY", "client-key-data"])
async def test_database_holds_no_plaintext_credentials(
    platform: Platform, shared_cluster: ClusterRecord, secret: str
) -> None:
    key_pem = (
        LocalRuntime.from_dict(platform.clusters.get(SHARED_CLUSTER).runtime).layout.pki / "admin.key"
    ).read_bytes()
    db_path = platform.settings.data_dir / "pilothouse.db"
    platform.db.engine.dispose()  # flush WAL into the main file as far as possible
    raw = db_path.read_bytes() + b"".join(
        p.read_bytes() for p in db_path.parent.glob("pilothouse.db-*") if p.is_file()
    )
    assert len(raw) > 0
    assert secret.encode() not in raw
    assert key_pem not in raw
    body = b"".join(key_pem.splitlines()[1:-1])
    assert body[:40] not in raw


async def test_api_server_writes_an_audit_trail(platform: Platform, shared_cluster: ClusterRecord) -> None:
    creds = platform.clusters.credentials(SHARED_CLUSTER)
    async with kube_client.open_client(creds) as client:
        await client.create(
            ConfigMap(metadata=ObjectMeta(name="audited", namespace="default"), data={"a": "b"})
        )
    layout = LocalRuntime.from_dict(platform.clusters.get(SHARED_CLUSTER).runtime).layout

    def audit_events() -> list[dict[str, Any]]:
        path = layout.logs / "audit-0.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    async def create_event() -> list[dict[str, Any]]:
        return [
            e
            for e in audit_events()
            if e.get("verb") == "create" and (e.get("objectRef") or {}).get("name") == "audited"
        ]

    events = await eventually(create_event, lambda found: len(found) >= 1, timeout=30)
    assert events[0]["user"]["username"] == "pilothouse-admin"
    assert events[0]["level"] == "Metadata", "ConfigMap bodies are not recorded"


async def test_secrets_are_encrypted_in_etcd(platform: Platform, shared_cluster: ClusterRecord) -> None:
    creds = platform.clusters.credentials(SHARED_CLUSTER)
    async with kube_client.open_client(creds) as client:
        await client.create(
            Secret(
                metadata=ObjectMeta(name="at-rest", namespace="default"),
                stringData={"password": "hunter2-plain"},
            )
        )
    runtime = LocalRuntime.from_dict(platform.clusters.get(SHARED_CLUSTER).runtime)
    etcd_pki = runtime.layout.pki / "etcd"
    context = ssl.create_default_context(cafile=str(etcd_pki / "ca.crt"))
    context.load_cert_chain(str(etcd_pki / "apiserver-client.crt"), str(etcd_pki / "apiserver-client.key"))
    key = base64.b64encode(b"/registry/secrets/default/at-rest").decode()
    async with httpx.AsyncClient(verify=context) as etcd:  # etcd's own JSON gateway, read directly
        response = await etcd.post(
            f"https://127.0.0.1:{runtime.ports.etcd_client[0]}/v3/kv/range", json={"key": key}
        )
    response.raise_for_status()
    stored = base64.b64decode(response.json()["kvs"][0]["value"])
    assert stored.startswith(b"k8s:enc:secretbox:v1:key1:")
    assert b"hunter2-plain" not in stored


def test_cli_show_lists_live_processes_and_their_addresses(
    platform: Platform, shared_cluster: ClusterRecord, pilothouse_env: dict[str, str]
) -> None:
    pilothouse = str(Path(sys.executable).with_name("pilothouse"))
    shown = subprocess.run(
        [pilothouse, "cluster", "show", SHARED_CLUSTER],
        env={**os.environ, **pilothouse_env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        check=True,
    )
    runtime = LocalRuntime.from_dict(platform.clusters.get(SHARED_CLUSTER).runtime)
    row = next(line for line in shown.stdout.splitlines() if "kube-apiserver-0" in line)
    assert " yes " in row
    assert str(runtime.processes["kube-apiserver-0"].pid) in row
    assert f"127.0.0.1:{runtime.ports.apiserver}" in row
    assert "Running" in shown.stdout
