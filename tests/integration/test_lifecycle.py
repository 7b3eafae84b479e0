"""Stop, start, crash-resume and `pilothouse up`, each on a cluster of its own."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap

from pilothouse.binaries.cache import BinaryCache
from pilothouse.fleet import requests
from pilothouse.fleet.leases import holder_is_dead
from pilothouse.kube import client as kube_client
from pilothouse.platform import Platform
from pilothouse.providers.local.provider import LocalRuntime
from pilothouse.vocabulary import ClusterPhase
from tests.integration.api_server import free_port

pytestmark = [pytest.mark.own_cluster]
PILOTHOUSE = str(Path(sys.executable).with_name("pilothouse"))


def _listening(pairs: list[tuple[str, int]]) -> list[tuple[str, int]]:
    busy = []
    for host, port in pairs:
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                busy.append((host, port))
    return busy


def _alive(pids: list[int]) -> list[int]:
    return [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


async def test_stop_frees_everything_and_start_brings_back_the_same_cluster(
    platform: Platform, installed_binaries: BinaryCache
) -> None:
    name = "stop-start"
    record = await platform.clusters.create_local(
        requests.parse(requests.CreateLocalCluster, name=name, nodes=2)
    )
    creds = platform.clusters.credentials(name)
    async with kube_client.open_client(creds) as client:
        await client.create(ConfigMap(metadata=ObjectMeta(name="kept", namespace="default"), data={"k": "v"}))
    runtime = LocalRuntime.from_dict(record.runtime)
    pids = [r.pid for r in runtime.processes.values()]
    pairs = runtime.ports.all_ports()

    # A process of this cluster whose record was lost (a crash between start and persist).
    stray = await asyncio.create_subprocess_exec("sh", "-c", "sleep 300", f"{runtime.root}/stray")

    stopped = await platform.clusters.stop(name)

    assert stopped.phase == ClusterPhase.STOPPED
    assert _alive(pids) == []
    assert await asyncio.wait_for(stray.wait(), timeout=5) is not None, (
        "the unrecorded process was stopped too"
    )
    assert _listening(pairs) == []
    assert stopped.runtime["processes"] == {}
    assert await platform.clusters.reconcile_local() == [], "a stopped cluster stays stopped"

    started = await platform.clusters.start(name)

    assert started.phase == ClusterPhase.RUNNING
    assert started.server_url == record.server_url
    async with kube_client.open_client(platform.clusters.credentials(name)) as client:
        kept = await client.get(ConfigMap, "kept", namespace="default")
        assert kept.data == {"k": "v"}, "etcd data survives stop/start"
    await platform.clusters.delete(name)
    assert _listening(pairs) == []
    assert not (platform.settings.clusters_dir / name).exists()


@pytest.mark.slow
async def test_create_killed_mid_way_is_resumed_by_the_reconciler(
    platform: Platform, pilothouse_env: dict[str, str], installed_binaries: BinaryCache
) -> None:
    name = "crashed-create"
    cli = await asyncio.create_subprocess_exec(
        PILOTHOUSE,
        "cluster",
        "create",
        name,
        "--nodes",
        "4",
        env={**os.environ, **pilothouse_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Wait until the first processes are recorded, then kill the CLI without warning.
    deadline = time.monotonic() + 60
    while True:
        found = platform.clusters.store.find(name)
        if found is not None and "kube-apiserver-0" in found.runtime.get("processes", {}):
            break
        assert time.monotonic() < deadline, "the create never got as far as the API server"
        await asyncio.sleep(0.05)
    cli.send_signal(signal.SIGKILL)
    await cli.wait()
    interrupted = platform.clusters.get(name)
    assert interrupted.phase == ClusterPhase.PROVISIONING
    etcd_pid = interrupted.runtime["processes"]["etcd-0"]["pid"]

    # The lease's holder (the killed CLI) is gone from this host: the reconciler takes over at once.
    assert interrupted.lease_holder is not None
    assert holder_is_dead(interrupted.lease_holder)
    assert await platform.clusters.reconcile_local() == [name]

    resumed = platform.clusters.view(name)
    assert resumed.record.phase == ClusterPhase.RUNNING
    assert all(resumed.processes.values())
    assert resumed.record.runtime["processes"]["etcd-0"]["pid"] == etcd_pid, "etcd was not started twice"
    etcd_processes = [
        p
        for p in psutil.process_iter(["cmdline"])
        if any("--name=etcd-0" in a for a in p.info["cmdline"] or [])
        and any(str(platform.settings.clusters_dir / name) in a for a in p.info["cmdline"] or [])
    ]
    assert len(etcd_processes) == 1
    await platform.clusters.delete(name)


@pytest.mark.slow
def test_pilothouse_up_serves_the_api_and_brings_up_the_demo_cluster(
    pilothouse_env: dict[str, str], installed_binaries: BinaryCache, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        **pilothouse_env,
        "PILOTHOUSE_DATA_DIR": str(tmp_path / "data"),
        "PILOTHOUSE_CONFIG_DIR": str(tmp_path / "config"),
        "PILOTHOUSE_RECONCILE_INTERVAL_SECONDS": "2",
    }
    up = subprocess.Popen(
        [PILOTHOUSE, "up", "--port", str(port), "--demo-nodes", "6"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        token = ""
        deadline = time.monotonic() + 30
        assert up.stdout is not None
        while not token and time.monotonic() < deadline:
            line = up.stdout.readline()
            if line.startswith("ph_"):
                token = line.strip()
        assert token, "the bootstrap token was printed"
        headers = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        demo: dict[str, object] = {}
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"{base}/api/v1/clusters/demo", headers=headers)
                demo = response.json()
                if demo.get("phase") == "Running":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert demo.get("phase") == "Running", demo
        assert demo["control_planes"] == 3
        assert demo["nodes"] == 6
        assert httpx.get(f"{base}/api/v1/clusters").status_code == 401
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=30)
        finally:
            if up.poll() is None:
                up.kill()
        subprocess.run(
            [PILOTHOUSE, "cluster", "delete", "demo", "-y"], env=env, check=False, capture_output=True
        )
    assert up.returncode == 0
    listed = subprocess.run(
        [PILOTHOUSE, "cluster", "list"], env=env, capture_output=True, text=True, check=True
    )
    assert "demo" not in listed.stdout
