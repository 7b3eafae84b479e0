"""etcd backups, restores and DR drills of a real local cluster, through the real CLI.

One cluster of this module's own (real etcd, kube-apiserver, controllers and
kwok) is backed up with etcdctl, damaged, restored with etcdutl, drilled into
a scratch cluster and backed up on a cron schedule. Backups also go to a real
S3-compatible server (SeaweedFS, started here from the binary
``scripts/setup.sh --dev`` builds): the restore from S3 is killed with SIGKILL
at two different steps and resumed each time, and must finish with no step
that took effect done twice and every process started exactly once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from lightkube import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Namespace

from pilothouse import errors
from pilothouse.binaries.cache import BinaryCache
from pilothouse.fleet import backup_plan, operations
from pilothouse.fleet.backup_storage import S3Bucket, sha256_file
from pilothouse.fleet.leases import holder_is_dead
from pilothouse.kube import client as kube_client
from pilothouse.platform import Platform
from pilothouse.providers.local.provider import LocalRuntime
from pilothouse.settings import Settings
from pilothouse.store.clusters import ClusterRecord
from pilothouse.store.operations import OperationRecord
from pilothouse.vocabulary import BackupStatus, OperationPhase
from tests.integration.kube_helpers import eventually

PILOTHOUSE = str(Path(sys.executable).with_name("pilothouse"))
CLUSTER = "backup-own"
NAMESPACE = "precious"


def _cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PILOTHOUSE, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def cli_env(pilothouse_env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **pilothouse_env}


@pytest.fixture(scope="module")
async def own_cluster(
    platform: Platform, installed_binaries: BinaryCache, cli_env: dict[str, str]
) -> AsyncIterator[ClusterRecord]:
    """Created by the CLI, as a user would: its processes are not children of this test process,
    which would leave them zombies (and a CLI stopping them waiting) until pytest reaps them."""
    created = _cli(cli_env, "cluster", "create", CLUSTER, "--nodes=2")
    assert created.returncode == 0, created.stderr
    record = platform.clusters.get(CLUSTER)
    try:
        yield record
    finally:
        if platform.clusters.store.find(CLUSTER) is not None:
            await platform.clusters.delete(CLUSTER)
        for backup in platform.backups.records(CLUSTER):
            platform.backups.delete(backup.id)


async def _namespace_uid(platform: Platform, name: str) -> str | None:
    async with kube_client.open_client(platform.clusters.credentials(CLUSTER)) as client:
        try:
            namespace = await client.get(Namespace, name)
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise
        return namespace.metadata.uid


def _size(path: Path) -> int:
    return path.stat().st_size


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _exists(path: Path) -> bool:
    return path.exists()


def _pids(platform: Platform) -> dict[str, int]:
    runtime = LocalRuntime.from_dict(platform.clusters.get(CLUSTER).runtime)
    return {name: record.pid for name, record in runtime.processes.items()}


def _starts(platform: Platform) -> dict[str, int]:
    runtime = LocalRuntime.from_dict(platform.clusters.get(CLUSTER).runtime)
    return {
        name: runtime.layout.log_file(name)
        .read_text(errors="replace")
        .count(f"--- pilothouse: starting {name} ")
        for name in runtime.processes
    }


@pytest.mark.slow
@pytest.mark.own_cluster
async def test_backup_then_restore_brings_back_a_deleted_namespace_and_bad_input_is_refused(
    platform: Platform, cli_env: dict[str, str], own_cluster: ClusterRecord
) -> None:
    creds = platform.clusters.credentials(CLUSTER)
    async with kube_client.open_client(creds) as client:
        await client.create(Namespace(metadata=ObjectMeta(name=NAMESPACE)))
        await client.create(
            ConfigMap(metadata=ObjectMeta(name="ledger", namespace=NAMESPACE), data={"balance": "42"})
        )
    uid = await _namespace_uid(platform, NAMESPACE)

    created = _cli(cli_env, "backup", "create", CLUSTER, "--json")
    assert created.returncode == 0, created.stderr
    backup = json.loads(created.stdout)
    assert backup["status"] == "completed"
    assert backup["etcd_revision"] > 0
    assert sha256_file(Path(backup["location"])) == backup["sha256"]
    assert _size(Path(backup["location"])) == backup["size_bytes"]
    listed = json.loads(_cli(cli_env, "backup", "list", CLUSTER, "--json").stdout)
    assert backup["id"] in [b["id"] for b in listed]

    async with kube_client.open_client(creds) as client:
        await client.delete(Namespace, NAMESPACE)
    await eventually(lambda: _namespace_uid(platform, NAMESPACE), lambda found: found is None, timeout=60)

    # ---- refusals: each says why and what to do, and changes nothing ----
    pids = _pids(platform)
    damaged = await platform.backups.create(CLUSTER)
    snapshot = Path(damaged.location)
    intact = _read(snapshot)
    refusals = [
        (("backup", "restore", CLUSTER, backup["id"]), "is running", "--force"),
        (("backup", "restore", CLUSTER, "f00dfeed"), "no backup 'f00dfeed'", "backup list"),
    ]
    for args, message, hint in refusals:
        result = _cli(cli_env, *args)
        assert result.returncode == 1, result.stdout
        assert message in result.stderr, result.stderr
        assert hint in result.stderr, result.stderr
    _write(snapshot, intact[: len(intact) // 2])  # truncated
    truncated = _cli(cli_env, "backup", "restore", CLUSTER, damaged.id[:10], "--force")
    assert truncated.returncode == 1
    assert f"backup {damaged.id} is truncated" in truncated.stderr, truncated.stderr
    assert "nothing was changed" in truncated.stderr
    assert "restore another backup" in truncated.stderr
    _write(snapshot, intact[:100] + bytes([intact[100] ^ 0xFF]) + intact[101:])  # one bit flipped
    corrupt = _cli(cli_env, "backup", "restore", CLUSTER, damaged.id, "--force")
    assert corrupt.returncode == 1
    assert "is corrupt: the sha256" in corrupt.stderr, corrupt.stderr
    assert "Traceback" not in truncated.stderr + corrupt.stderr
    assert platform.operations.store.list(cluster=CLUSTER) == []
    assert _pids(platform) == pids
    assert platform.clusters.get(CLUSTER).phase == "Running"
    assert _cli(cli_env, "backup", "delete", damaged.id).returncode == 0
    assert not _exists(snapshot)

    # ---- the restore ----
    restored = _cli(cli_env, "backup", "restore", CLUSTER, backup["id"][:10], "--force")
    assert restored.returncode == 0, restored.stderr
    (record,) = platform.operations.store.list(cluster=CLUSTER)
    assert record.phase is OperationPhase.SUCCEEDED, record.message
    assert all(s.acted <= 1 and s.attempts == 1 for s in operations.journal(record))
    assert await _namespace_uid(platform, NAMESPACE) == uid
    async with kube_client.open_client(creds) as client:
        ledger = await client.get(ConfigMap, "ledger", namespace=NAMESPACE)
    assert ledger.data == {"balance": "42"}
    assert platform.clusters.get(CLUSTER).phase == "Running"
    assert set(_pids(platform)) == set(pids)
    assert not set(_pids(platform).values()) & set(pids.values())  # every process was restarted
    root = LocalRuntime.from_dict(platform.clusters.get(CLUSTER).runtime).layout.root
    assert sorted(p.name for p in root.glob("etcd-*")) == ["etcd-0"]  # replaced data removed


# ----- an S3-compatible store: SeaweedFS, a real server process (built by scripts/setup.sh --dev) -----

S3_KEY, S3_SECRET, S3_BUCKET = "pilothouse-test", "pilothouse-test-secret", "backups"


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="module")
def s3_endpoint(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SeaweedFS server (master, volume, filer and S3 gateway in one process) with one identity."""
    weed = settings.cache_dir / "seaweedfs" / "weed"
    if not weed.is_file():
        pytest.fail(f"the S3 test server {weed} is missing: run `scripts/setup.sh --dev` to build it")
    root = tmp_path_factory.mktemp("seaweedfs")
    identities = {
        "identities": [
            {
                "name": "pilothouse",
                "credentials": [{"accessKey": S3_KEY, "secretKey": S3_SECRET}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (root / "s3.json").write_text(json.dumps(identities))
    names = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
             "filer.port.grpc", "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance",
             "admin.port", "admin.port.grpc"]  # fmt: skip
    ports = dict(zip(names, _free_ports(len(names)), strict=True))
    (root / "data").mkdir()
    argv = [str(weed), "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-webdav=false",
            "-admin.ui=false", f"-s3.config={root / 's3.json'}", f"-bucket={S3_BUCKET}",
            *(f"-{name}={port}" for name, port in ports.items())]  # fmt: skip
    with (root / "weed.log").open("wb") as log:
        server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    client = _s3_client(endpoint, S3_SECRET)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (root / "weed.log").read_text()[-2000:]
            try:
                client.head_bucket(Bucket=S3_BUCKET)
                break
            except Exception:
                assert time.monotonic() < deadline, (root / "weed.log").read_text()[-2000:]
                time.sleep(0.5)
        yield endpoint
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _s3_client(endpoint: str, secret: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=secret,
    )


def test_s3_bucket_stores_checks_and_refuses_bad_credentials(s3_endpoint: str, tmp_path: Path) -> None:
    bucket = S3Bucket(bucket=S3_BUCKET, prefix="unit", client=_s3_client(s3_endpoint, S3_SECRET))
    snapshot = tmp_path / "snap.db"
    snapshot.write_bytes(os.urandom(9 * 1024 * 1024 + 7))  # multipart upload
    digest = sha256_file(snapshot)
    location = bucket.put(
        snapshot,
        "c/one.db",
        sha256=digest,
    )
    assert location == f"s3://{S3_BUCKET}/unit/c/one.db"
    assert not snapshot.exists()  # consumed
    head = bucket.client.head_object(Bucket=S3_BUCKET, Key="unit/c/one.db")
    assert head["Metadata"] == {"sha256": digest}
    copy = bucket.local_copy(location, tmp_path / "dl")
    assert sha256_file(copy) == digest
    bucket.delete(location)
    with pytest.raises(errors.NotFound, match="is gone from the bucket"):
        bucket.local_copy(location, tmp_path / "dl2")
    forged = S3Bucket(bucket=S3_BUCKET, client=_s3_client(s3_endpoint, "wrong-secret"))
    snapshot.write_bytes(b"x")
    with pytest.raises(errors.PilothouseError, match="SignatureDoesNotMatch") as info:
        forged.put(snapshot, "c/two.db", sha256="0" * 64)
    assert "credentials" in info.value.hint


def _s3_env(cli_env: dict[str, str], endpoint: str) -> dict[str, str]:
    """The CLI's environment with backups going to the SeaweedFS bucket."""
    return {
        **cli_env,
        "PILOTHOUSE_BACKUP_STORAGE": "s3",
        "PILOTHOUSE_BACKUP_S3_ENDPOINT_URL": endpoint,
        "PILOTHOUSE_BACKUP_S3_BUCKET": S3_BUCKET,
        "PILOTHOUSE_BACKUP_S3_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": S3_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
    }


@pytest.mark.slow
@pytest.mark.own_cluster
def test_backup_to_s3_is_checksummed_and_a_damaged_object_is_refused(
    platform: Platform, cli_env: dict[str, str], own_cluster: ClusterRecord, s3_endpoint: str
) -> None:
    env = _s3_env(cli_env, s3_endpoint)
    created = _cli(env, "backup", "create", CLUSTER, "--json")
    assert created.returncode == 0, created.stderr
    backup = json.loads(created.stdout)
    assert backup["storage"] == "s3"
    assert backup["location"].startswith(f"s3://{S3_BUCKET}/pilothouse/{CLUSTER}/")
    key = backup["location"].split("/", 3)[3]
    client = _s3_client(s3_endpoint, S3_SECRET)
    stored = client.get_object(Bucket=S3_BUCKET, Key=key)["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == backup["sha256"]
    assert len(stored) == backup["size_bytes"]

    pids = _pids(platform)
    client.put_object(Bucket=S3_BUCKET, Key=key, Body=stored[:-4096])  # truncated in the store
    refused = _cli(env, "backup", "restore", CLUSTER, backup["id"], "--force")
    assert refused.returncode == 1
    assert f"backup {backup['id']} is truncated" in refused.stderr, refused.stderr
    assert not [
        r for r in platform.operations.store.list(cluster=CLUSTER) if r.spec.get("backup") == backup["id"]
    ]
    assert _pids(platform) == pids

    assert _cli(env, "backup", "delete", backup["id"]).returncode == 0
    with pytest.raises(ClientError):
        client.head_object(Bucket=S3_BUCKET, Key=key)


async def _wait_for_step(platform: Platform, step: str, *, timeout: float = 120) -> OperationRecord:
    deadline = time.monotonic() + timeout
    while True:
        records = [r for r in platform.operations.store.list(cluster=CLUSTER) if not r.phase.finished]
        if records:
            running = {
                s.name for s in operations.journal(records[0]) if s.state is operations.StepState.RUNNING
            }
            if step in running:
                return records[0]
        assert time.monotonic() < deadline, f"the restore never reached {step}"
        await asyncio.sleep(0.05)


async def _kill_at_step(
    platform: Platform, env: dict[str, str], step: str, *args: str, settle: float = 0.0
) -> OperationRecord:
    """Run ``pilothouse ARGS`` until the operation it drives has been in ``step`` for ``settle``
    seconds, then SIGKILL it."""
    process = await asyncio.create_subprocess_exec(
        PILOTHOUSE, *args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    record = await _wait_for_step(platform, step)
    await asyncio.sleep(settle)
    process.send_signal(signal.SIGKILL)
    await process.wait()
    return record


@pytest.mark.slow
@pytest.mark.own_cluster
async def test_restore_from_s3_killed_at_two_steps_resumes_without_repeating_anything(
    platform: Platform, cli_env: dict[str, str], own_cluster: ClusterRecord, s3_endpoint: str
) -> None:
    env = _s3_env(cli_env, s3_endpoint)
    created = _cli(env, "backup", "create", CLUSTER, "--json")
    assert created.returncode == 0, created.stderr
    backup_id = json.loads(created.stdout)["id"]
    async with kube_client.open_client(platform.clusters.credentials(CLUSTER)) as client:
        await client.create(ConfigMap(metadata=ObjectMeta(name="written-after", namespace="default")))
    before = _starts(platform)

    record = await _kill_at_step(
        platform, env, "stop-cluster", "backup", "restore", CLUSTER, backup_id, "--force"
    )
    holder = platform.clusters.get(CLUSTER).lease_holder
    assert holder is not None
    assert holder_is_dead(holder)

    # let it start some processes before the kill
    await _kill_at_step(platform, env, "start-cluster", "operations", "resume", record.id, settle=1.0)

    finished = _cli(env, "operations", "resume", record.id)  # the third run finishes it
    assert finished.returncode == 0, finished.stderr
    done = platform.operations.store.get(record.id)
    assert done.phase is OperationPhase.SUCCEEDED, done.message
    steps = {s.name: s for s in operations.journal(done)}
    assert all(s.state is operations.StepState.DONE for s in steps.values())
    assert all(s.acted <= 1 for s in steps.values()), [(s.name, s.acted) for s in steps.values()]
    assert steps["stop-cluster"].attempts == 2
    assert steps["start-cluster"].attempts == 2
    assert (steps["restore-etcd"].attempts, steps["restore-etcd"].acted) == (1, 1)
    assert steps["swap-data"].acted == 1
    after = _starts(platform)
    assert after == {name: count + 1 for name, count in before.items()}, (before, after)
    async with kube_client.open_client(platform.clusters.credentials(CLUSTER)) as client:
        names = [c.metadata.name async for c in client.list(ConfigMap, namespace="default")]
    assert "written-after" not in names  # the cluster is back at the backup's revision
    assert platform.clusters.get(CLUSTER).phase == "Running"
    assert _cli(env, "backup", "delete", backup_id).returncode == 0


@pytest.mark.slow
@pytest.mark.own_cluster
async def test_restore_killed_then_aborted_leaves_the_cluster_serving_its_previous_data(
    platform: Platform, cli_env: dict[str, str], own_cluster: ClusterRecord
) -> None:
    created = _cli(cli_env, "backup", "create", CLUSTER, "--json")
    assert created.returncode == 0, created.stderr
    backup_id = json.loads(created.stdout)["id"]
    async with kube_client.open_client(platform.clusters.credentials(CLUSTER)) as client:
        await client.create(ConfigMap(metadata=ObjectMeta(name="kept-by-abort", namespace="default")))

    record = await _kill_at_step(
        platform, cli_env, "stop-cluster", "backup", "restore", CLUSTER, backup_id, "--force"
    )

    aborted = _cli(cli_env, "operations", "abort", record.id[:10])
    assert aborted.returncode == 0, aborted.stderr
    said = " ".join(aborted.stdout.split())  # Rich wraps at the terminal's width
    assert "no process drives it, aborting here" in said
    assert "Aborted: aborted before stop every process of the cluster" in said
    done = platform.operations.store.get(record.id)
    assert done.phase is OperationPhase.ABORTED, done.message
    assert "the cluster runs on its previous data" in done.message
    steps = {s.name: s for s in operations.journal(done)}
    assert steps["swap-data"].attempts == 0  # nothing of the backup was swapped in
    assert platform.clusters.get(CLUSTER).phase == "Running"
    async with kube_client.open_client(platform.clusters.credentials(CLUSTER)) as client:
        names = [c.metadata.name async for c in client.list(ConfigMap, namespace="default")]
    assert "kept-by-abort" in names  # written after the backup: still there
    root = LocalRuntime.from_dict(platform.clusters.get(CLUSTER).runtime).layout.root
    assert sorted(p.name for p in root.glob("etcd-*")) == ["etcd-0"]  # no staged or replaced data
    again = _cli(cli_env, "operations", "abort", record.id)
    assert again.returncode == 1
    assert "there is nothing to abort" in again.stderr, again.stderr
    assert "Traceback" not in again.stderr
    assert _cli(cli_env, "backup", "delete", backup_id).returncode == 0


@pytest.mark.slow
@pytest.mark.own_cluster
def test_dr_drill_reports_equal_objects_rpo_and_rto(
    platform: Platform, cli_env: dict[str, str], own_cluster: ClusterRecord
) -> None:
    before = {b.id for b in platform.backups.records(CLUSTER)}
    result = _cli(cli_env, "dr", "drill", CLUSTER, "--json", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout)
    comparison = report["comparison"]
    assert comparison["ok"], comparison["examples"]
    assert comparison["source_objects"] > 100
    assert comparison["missing"] == comparison["mismatched"] == comparison["unexpected"] == 0
    assert (
        comparison["equal"] + comparison["updated_after_restore"] + comparison["replaced_after_restore"]
        == (comparison["source_objects"])
    )
    resources = {r["resource"] for r in comparison["resources"]}
    assert {"namespaces", "configmaps", "nodes", "clusterroles.rbac.authorization.k8s.io"} <= resources
    assert 0 <= report["rpo_seconds"] < 60
    assert 0 < report["time_to_serving_seconds"] <= report["rto_seconds"] < 300
    assert report["last_backup_age_seconds"] is not None  # the earlier tests' backups
    assert platform.clusters.store.find(report["scratch"]) is None
    assert {b.id for b in platform.backups.records(CLUSTER)} == before  # the drill's backup is gone
    (drill,) = [r for r in platform.operations.store.list(cluster=CLUSTER) if r.kind == "dr-drill"]
    assert drill.phase is OperationPhase.SUCCEEDED


@pytest.mark.slow
@pytest.mark.own_cluster
async def test_scheduled_backups_take_each_cron_slot_once_and_keep_the_last_two(
    platform: Platform, own_cluster: ClusterRecord
) -> None:
    schedule = backup_plan.BackupSchedule(
        name="every-5m", cron="*/5 * * * *", clusters=(CLUSTER,), keep_last=2
    )
    other = backup_plan.BackupSchedule(name="elsewhere", cron="* * * * *", clusters=("no-match-*",))
    now = datetime.now(UTC)
    # 30 s into a 5-minute slot, so that +1 minute stays in it whenever the test runs
    base = now.replace(second=30, microsecond=0) - timedelta(minutes=now.minute % 5)
    made = []
    for offset in (0, 0, 1, 5, 10):
        made.append(
            await platform.backups.run_schedules(
                schedules=[schedule, other], now=base + timedelta(minutes=offset)
            )
        )
    assert [len(m) for m in made] == [1, 0, 0, 1, 1]
    slots = [m[0].scheduled_for for m in made if m]
    first_slot = backup_plan.due_slot(schedule.cron, base, last_slot=None)
    assert first_slot is not None
    assert slots == [first_slot, first_slot + timedelta(minutes=5), first_slot + timedelta(minutes=10)]
    kept = platform.backups.store.list(cluster=CLUSTER, schedule="every-5m")
    assert [b.scheduled_for for b in kept] == slots[:0:-1]  # newest first, the oldest pruned
    assert all(b.status is BackupStatus.COMPLETED for b in kept)
    assert all(_exists(Path(b.location)) for b in kept)
    assert not _exists(Path(made[0][0].location))  # pruned with its file


def test_backups_of_unknown_clusters_are_refused(cli_env: dict[str, str]) -> None:
    for args in (
        ("backup", "create", "ghost"),
        ("dr", "drill", "ghost"),
        ("backup", "restore", "ghost", "b1"),
    ):
        result = _cli(cli_env, *args, timeout=60)
        assert result.returncode == 1
        assert "no cluster named 'ghost'" in result.stderr, result.stderr
        assert "cluster list" in result.stderr
        assert "Traceback" not in result.stderr
