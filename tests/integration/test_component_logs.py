"""Control-plane logs of the real shared cluster: CLI, API and rotation under a live process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from pilothouse import errors
from pilothouse.api.app import create_app
from pilothouse.platform import Platform
from pilothouse.providers.local.provider import LocalRuntime
from pilothouse.store.clusters import ClusterRecord
from tests.conftest import SHARED_CLUSTER
from tests.integration.api_server import serving

PILOTHOUSE = str(Path(sys.executable).with_name("pilothouse"))


def test_cli_prints_the_tail_of_a_component_log(
    pilothouse_env: dict[str, str], shared_cluster: ClusterRecord
) -> None:
    shown = subprocess.run(
        [PILOTHOUSE, "logs", SHARED_CLUSTER, "kube-apiserver", "--tail", "5"],
        env={**os.environ, **pilothouse_env},
        capture_output=True,
        text=True,
        check=True,
    )
    lines = shown.stdout.splitlines()
    assert 1 <= len(lines) <= 5
    unknown = subprocess.run(
        [PILOTHOUSE, "logs", SHARED_CLUSTER, "nginx"],
        env={**os.environ, **pilothouse_env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert unknown.returncode == 1
    assert "kube-apiserver-0" in unknown.stderr, "the hint lists the processes"


def test_api_serves_log_tails(platform: Platform, shared_cluster: ClusterRecord) -> None:
    token, _ = platform.tokens.issue("logs-viewer", ("viewer",))
    with serving(create_app(platform, reconcile=False)) as url:
        response = httpx.get(
            f"{url}/api/v1/clusters/{SHARED_CLUSTER}/logs/etcd-0?tail=3",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 200, response.text
    assert 1 <= len(response.text.strip().splitlines()) <= 3


def test_rotation_keeps_the_process_writing_to_its_log(
    platform: Platform, shared_cluster: ClusterRecord
) -> None:
    runtime = LocalRuntime.from_dict(platform.clusters.get(SHARED_CLUSTER).runtime)
    log = runtime.layout.log_file("kube-apiserver-0")
    audit = runtime.layout.logs / "audit-0.log"
    audit_size = audit.stat().st_size
    size_before = log.stat().st_size
    assert size_before > 0

    rotated = platform.clusters.rotate_logs(max_bytes=1024, keep=2)

    assert "kube-apiserver-0" in rotated[SHARED_CLUSTER]
    assert log.with_name(log.name + ".1").stat().st_size >= size_before
    assert log.stat().st_size < size_before
    assert audit.stat().st_size >= audit_size, "audit logs are the API server's to rotate"
    assert all(platform.clusters.view(SHARED_CLUSTER).processes.values())


def test_logs_of_unknown_clusters_and_processes_are_refused(
    platform: Platform, shared_cluster: ClusterRecord
) -> None:
    with pytest.raises(errors.NotFound):
        platform.clusters.log_file("nosuch", "etcd-0")
    with pytest.raises(errors.NotFound, match="no single process"):
        platform.clusters.log_file(SHARED_CLUSTER, "etcd-7")
