"""Control-plane upgrades of real local clusters, 1.35 → 1.36, through the durable operation.

The HA test upgrades three API servers, controller-managers and schedulers
behind a real HAProxy while a client sends requests through the load balancer
the whole time (a new connection each, as a fleet of clients would), and
kills the process driving the upgrade with SIGKILL twice, at two different
steps; the operation is resumed each time and must finish with no failed
request, no step that took effect done twice and every process on 1.36.
"""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import pytest

from pilothouse.binaries.cache import BinaryCache
from pilothouse.fleet import certificates, operations, requests, upgrades
from pilothouse.fleet.leases import holder_is_dead
from pilothouse.fleet.registry import local_spec
from pilothouse.kube import client as kube_client
from pilothouse.platform import Platform
from pilothouse.providers.local import supervisor, topology
from pilothouse.providers.local.provider import LocalRuntime
from pilothouse.store.clusters import ClusterRecord
from pilothouse.store.operations import OperationRecord
from pilothouse.vocabulary import OperationPhase
from tests.conftest import SHARED_CLUSTER

PILOTHOUSE = str(Path(sys.executable).with_name("pilothouse"))
FROM, TO = "1.35.4", "1.36.3"


@pytest.fixture(scope="module")
def both_versions(installed_binaries: BinaryCache) -> BinaryCache:
    installed_binaries.require(FROM)
    installed_binaries.require(TO)
    return installed_binaries


@dataclass
class LoadBalancerClient:
    """Sends an authenticated GET through the load balancer every few milliseconds, each on a
    new connection, from a thread of its own; records every failure."""

    url: str
    context: ssl.SSLContext
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(verify=self.context, timeout=10.0, limits=limits, trust_env=False) as http:
            while not self._stop.is_set():
                try:
                    response = http.get(self.url)
                    if response.status_code == 200:
                        self.ok += 1
                    else:
                        self.failures.append(
                            f"{time.strftime('%X')} HTTP {response.status_code}: {response.text[:200]}"
                        )
                except httpx.HTTPError as exc:
                    self.failures.append(f"{time.strftime('%X')} {type(exc).__name__}: {exc}")
                time.sleep(0.02)


def _client_context(runtime: LocalRuntime) -> ssl.SSLContext:
    pki = runtime.layout.pki
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return context


async def _wait_for_step(
    platform: Platform, name: str, step: str, *, kind: str = upgrades.KIND, timeout: float = 240
) -> OperationRecord:
    """The cluster's newest operation of ``kind`` once ``step`` is RUNNING."""
    deadline = time.monotonic() + timeout
    while True:
        records = platform.operations.store.list(cluster=name, kind=kind)
        if records:
            running = {
                s.name for s in operations.journal(records[0]) if s.state is operations.StepState.RUNNING
            }
            if step in running:
                return records[0]
            assert not records[0].phase.finished, f"the upgrade ended before {step}: {records[0].message}"
        assert time.monotonic() < deadline, f"the upgrade never reached {step}"
        await asyncio.sleep(0.05)


def _starts(runtime: LocalRuntime, process: str) -> int:
    text = runtime.layout.log_file(process).read_text(errors="replace")
    return text.count(f"--- pilothouse: starting {process} ")


@pytest.fixture(scope="module")
async def ha_cluster(platform: Platform, both_versions: BinaryCache) -> AsyncIterator[ClusterRecord]:
    """An HA cluster on the older version, for the upgrade and then the certificate rotation."""
    record = await platform.clusters.create_local(
        requests.parse(requests.CreateLocalCluster, name="ops-ha", nodes=2, control_planes=3, version=FROM)
    )
    yield record
    await platform.clusters.delete(record.name)


CONTROL_PLANE = [
    f"{c}-{i}" for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler") for i in range(3)
]


@pytest.mark.slow
@pytest.mark.own_cluster
async def test_ha_upgrade_has_no_failed_request_and_survives_kill_9_at_two_steps(
    platform: Platform, pilothouse_env: dict[str, str], both_versions: BinaryCache, ha_cluster: ClusterRecord
) -> None:
    name = ha_cluster.name
    runtime = LocalRuntime.from_dict(ha_cluster.runtime)
    context = _client_context(runtime)
    assert runtime.ports.load_balancer is not None
    client = LoadBalancerClient(
        f"https://127.0.0.1:{runtime.ports.load_balancer}/api/v1/namespaces/default", context
    )
    env = {**os.environ, **pilothouse_env}
    try:
        plan = await platform.upgrades.plan(name, TO)
        assert plan.allowed, plan.blockers
        assert [s.name for s in plan.steps][:2] == ["preflight", "kube-apiserver-0"]

        client.start()
        await asyncio.sleep(2)
        cli = await asyncio.create_subprocess_exec(
            PILOTHOUSE,
            "upgrade",
            "apply",
            name,
            "--to",
            TO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        first = await _wait_for_step(platform, name, "kube-apiserver-1")
        cli.send_signal(signal.SIGKILL)
        await cli.wait()
        interrupted = platform.clusters.get(name)
        assert interrupted.lease_holder is not None
        assert holder_is_dead(interrupted.lease_holder)

        again = await asyncio.create_subprocess_exec(
            PILOTHOUSE,
            "operations",
            "resume",
            first.id,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await _wait_for_step(platform, name, "kube-scheduler-0")
        again.send_signal(signal.SIGKILL)
        await again.wait()

        done = await platform.operations.run(first.id)
        await asyncio.sleep(2)
        client.stop()

        assert done.phase is OperationPhase.SUCCEEDED, done.message
        assert client.failures == [], (
            client.failures[:5],
            [(s.name, s.started_at, s.finished_at) for s in operations.journal(done)],
        )
        assert client.ok > 100
        steps = operations.journal(done)
        assert all(s.state is operations.StepState.DONE for s in steps)
        assert all(s.acted <= 1 for s in steps), [(s.name, s.acted) for s in steps]
        by_name = {s.name: s for s in steps}
        assert by_name["kube-apiserver-1"].attempts == 2  # interrupted once, finished on resume
        assert by_name["kube-scheduler-0"].attempts == 2

        upgraded = platform.clusters.get(name)
        after = LocalRuntime.from_dict(upgraded.runtime)
        assert upgraded.kubernetes_version == TO
        assert after.versions == {}
        creds = platform.clusters.credentials(name)
        for i in range(3):
            member = replace(creds, server=f"https://{topology.member_host(i, 3)}:{after.ports.apiserver}")
            assert (await kube_client.get_json(member, "/version"))["gitVersion"] == f"v{TO}"
        for process in CONTROL_PLANE:
            assert supervisor.executable(after.processes[process]) == both_versions.path(
                TO, process.rsplit("-", 1)[0]
            )
            assert _starts(after, process) == 2, f"{process} was restarted more than once"
    finally:
        client.stop()


@pytest.mark.slow
@pytest.mark.own_cluster
async def test_ha_certificate_rotation_keeps_serving_and_survives_kill_9(
    platform: Platform, pilothouse_env: dict[str, str], ha_cluster: ClusterRecord
) -> None:
    name = ha_cluster.name
    runtime = LocalRuntime.from_dict(platform.clusters.get(name).runtime)
    before = {c.path: c for c in platform.certificates.status(name)}
    processes = [p for p, _title in certificates.rotation_steps(local_spec(platform.clusters.get(name)))[1:]]
    starts = {p: _starts(runtime, p) for p in processes}
    assert runtime.ports.load_balancer is not None
    client = LoadBalancerClient(
        f"https://127.0.0.1:{runtime.ports.load_balancer}/api/v1/namespaces/default", _client_context(runtime)
    )
    client.start()
    try:
        cli = await asyncio.create_subprocess_exec(
            PILOTHOUSE,
            "certificates",
            "rotate",
            name,
            env={**os.environ, **pilothouse_env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        first = await _wait_for_step(platform, name, "kube-apiserver-1", kind=certificates.KIND)
        cli.send_signal(signal.SIGKILL)
        await cli.wait()
        done = await platform.operations.run(first.id)
        await asyncio.sleep(2)
    finally:
        client.stop()

    assert done.phase is OperationPhase.SUCCEEDED, done.message
    assert client.failures == [], client.failures[:5]
    steps = operations.journal(done)
    assert all(s.acted <= 1 for s in steps), [(s.name, s.acted) for s in steps]
    after = {c.path: c for c in platform.certificates.status(name)}
    assert set(after) == set(before)
    for path, cert in after.items():
        if cert.is_ca:
            assert cert.not_before == before[path].not_before, f"the CA {path} changed"
        else:
            assert cert.not_before > before[path].not_before, f"{path} was not re-issued"
    runtime = LocalRuntime.from_dict(platform.clusters.get(name).runtime)
    assert {p: _starts(runtime, p) for p in processes} == {p: n + 1 for p, n in starts.items()}
    creds = platform.clusters.credentials(name)  # the stored admin kubeconfig carries the new certificate
    assert creds.client_cert_pem == (runtime.layout.pki / "admin.crt").read_bytes()
    assert (await kube_client.get_json(creds, "/version"))["gitVersion"].startswith("v1.")


def test_refused_upgrades_say_why_and_record_nothing(
    platform: Platform, pilothouse_env: dict[str, str], shared_cluster: ClusterRecord
) -> None:
    env = {**os.environ, **pilothouse_env}
    before = platform.operations.store.list(cluster=SHARED_CLUSTER)
    for target, expected in (
        (FROM, "is not newer"),
        ("1.99.0", "not a release Pilothouse supports"),
        ("latest", "malformed target version 'latest'"),
    ):
        result = subprocess.run(
            [PILOTHOUSE, "upgrade", "apply", SHARED_CLUSTER, "--to", target],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode != 0
        assert expected in result.stdout + result.stderr, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
    assert platform.operations.store.list(cluster=SHARED_CLUSTER) == before
