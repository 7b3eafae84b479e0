"""Tests for pilothouse.fleet.backup_plan: cron slots, retention, snapshot checks, object comparison."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pilothouse import errors
from pilothouse.fleet import backup_plan
from pilothouse.fleet.backup_plan import ObjectKey, ObjectVersion
from pilothouse.providers.local import etcd_snapshots, topology
from pilothouse.providers.local.layout import ClusterLayout
from pilothouse.vocabulary import BackupStatus, Component

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


# ----- schedules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "last", "expected"),
    [
        (T0, None, T0),  # a slot exactly now is due now
        (T0 + timedelta(minutes=59), None, T0),  # never run: catch up the latest slot
        (T0 + timedelta(minutes=59), T0, None),  # that slot was attempted
        (T0 + timedelta(hours=1), T0, T0 + timedelta(hours=1)),
        (T0 + timedelta(hours=5, minutes=3), T0, T0 + timedelta(hours=5)),  # missed slots collapse into one
        (T0 + timedelta(minutes=30), T0 + timedelta(hours=1), None),  # clock went back: nothing
    ],
)
def test_due_slot_hourly(now: datetime, last: datetime | None, expected: datetime | None) -> None:
    assert backup_plan.due_slot("0 * * * *", now, last_slot=last) == expected


def test_due_slot_every_five_minutes_runs_each_slot_once() -> None:
    now, last, taken = T0, None, []
    for _ in range(31):  # 15 minutes in 30 s passes
        slot = backup_plan.due_slot("*/5 * * * *", now, last_slot=last)
        if slot is not None:
            taken.append(slot)
            last = slot
        now += timedelta(seconds=30)
    assert taken == [T0 + timedelta(minutes=m) for m in (0, 5, 10, 15)]


def test_next_slot() -> None:
    assert backup_plan.next_slot("30 2 * * *", T0) == datetime(2026, 11, 26, 2, 30, tzinfo=UTC)


def test_schedule_covers_shell_patterns() -> None:
    schedule = backup_plan.BackupSchedule(name="prod", cron="@hourly", clusters=("prod-*", "billing"))
    assert [schedule.covers(c) for c in ("prod-eu", "billing", "staging", "billing-2")] == [
        True,
        True,
        False,
        False,
    ]
    assert backup_plan.BackupSchedule(name="all", cron="0 3 * * *").covers("anything")


def test_parse_schedules_names_each_problem() -> None:
    parsed = backup_plan.parse_schedules([{"name": "nightly", "cron": "0 3 * * *", "keep_last": 14}])
    assert (parsed[0].keep_last, parsed[0].max_age) == (14, None)
    with pytest.raises(errors.InvalidInput) as info:
        backup_plan.parse_schedules([{"name": "x", "cron": "every hour", "keep_last": 0}])
    assert "schedule #1" in info.value.message
    assert "not a cron expression" in info.value.message
    assert "keep_last" in info.value.message
    assert "backup_schedules" in info.value.hint
    with pytest.raises(errors.InvalidInput, match="unique"):
        backup_plan.parse_schedules([{"name": "a", "cron": "@daily"}, {"name": "a", "cron": "@hourly"}])
    with pytest.raises(errors.InvalidInput, match="Extra inputs"):
        backup_plan.parse_schedules([{"name": "a", "cron": "@daily", "keep": 3}])


# ----- retention -------------------------------------------------------------------------------


def _backups(*specs: tuple[str, int, BackupStatus]) -> list[backup_plan.RetainedBackup]:
    return [backup_plan.RetainedBackup(i, T0 - timedelta(hours=h), s) for i, h, s in specs]


OK, FAILED, RUNNING = BackupStatus.COMPLETED, BackupStatus.FAILED, BackupStatus.RUNNING


def test_retention_keeps_the_newest_n() -> None:
    backups = _backups(("a", 4, OK), ("b", 3, OK), ("c", 2, OK), ("d", 1, OK))
    assert backup_plan.plan_retention(backups, keep_last=2, max_age=None, now=T0) == ["a", "b"]
    assert backup_plan.plan_retention(backups, keep_last=None, max_age=None, now=T0) == []


def test_retention_by_age_never_drops_the_newest_completed() -> None:
    backups = _backups(("old", 50, OK), ("older", 60, OK), ("running", 70, RUNNING))
    doomed = backup_plan.plan_retention(backups, keep_last=None, max_age=timedelta(hours=24), now=T0)
    assert doomed == ["older"]  # "old" is too old too, but it is the only restorable backup left


def test_retention_combines_count_and_age() -> None:
    backups = _backups(("a", 30, OK), ("b", 3, OK), ("c", 2, OK), ("d", 1, OK))
    doomed = backup_plan.plan_retention(backups, keep_last=3, max_age=timedelta(hours=2, minutes=30), now=T0)
    assert doomed == ["a", "b"]


def test_retention_drops_failed_attempts_once_superseded() -> None:
    backups = _backups(("f-old", 5, FAILED), ("ok", 4, OK), ("f-new", 1, FAILED))
    assert backup_plan.plan_retention(backups, keep_last=5, max_age=None, now=T0) == ["f-old"]
    only_failed = _backups(("f", 1, FAILED))
    assert backup_plan.plan_retention(only_failed, keep_last=1, max_age=None, now=T0) == []
    assert backup_plan.plan_retention(only_failed, keep_last=1, max_age=timedelta(minutes=30), now=T0) == [
        "f"
    ]


# ----- snapshot files --------------------------------------------------------------------------


def test_check_artifact_tells_truncated_from_corrupt() -> None:
    good: dict[str, Any] = {"expected_size": 100, "expected_sha256": "a" * 64}
    backup_plan.check_artifact("b1", where="/x.db", size=100, sha256="a" * 64, **good)
    with pytest.raises(errors.ChecksumMismatch) as truncated:
        backup_plan.check_artifact("b1", where="/x.db", size=60, sha256="b" * 64, **good)
    assert truncated.value.message.startswith("backup b1 is truncated: /x.db has 60 bytes")
    assert "nothing was changed" in truncated.value.message
    assert "restore another backup" in truncated.value.hint
    with pytest.raises(errors.ChecksumMismatch) as corrupt:
        backup_plan.check_artifact("b1", where="/x.db", size=100, sha256="b" * 64, **good)
    assert "is corrupt: the sha256 of /x.db is bbbb" in corrupt.value.message


def test_parse_snapshot_status() -> None:
    text = '{"hash":3041375390,"revision":5313,"totalKey":1012,"totalSize":4218880,"version":"3.6.0"}\n'
    status = backup_plan.parse_snapshot_status(text, source="s.db")
    assert (status.revision, status.total_keys, status.total_size, status.version) == (
        5313,
        1012,
        4218880,
        "3.6.0",
    )
    with pytest.raises(errors.BinaryError, match=r"cannot read the status of the etcd snapshot s\.db"):
        backup_plan.parse_snapshot_status("Error: snapshot file is truncated", source="s.db")


def test_restore_argv_matches_the_flags_etcd_starts_with() -> None:
    """The restored members must form exactly the cluster ``topology`` starts etcd as."""
    ports = topology.PortPlan(
        apiserver=6443,
        etcd_client=(2379, 2479, 2579),
        etcd_peer=(2380, 2480, 2580),
        etcd_metrics=(2381, 2481, 2581),
        controller_manager=(1, 2, 3),
        scheduler=(4, 5, 6),
        kwok=7,
        load_balancer=8,
    )
    layout = ClusterLayout(Path("/data/clusters/prod"))
    spec = topology.LocalClusterSpec("prod", "1.36.3", 3, 1)
    binaries = {c: Path(f"/bin/{c}") for c in Component}
    etcd = next(p for p in topology.plan_processes(spec, ports, layout, binaries) if p.name == "etcd-1")
    argv = etcd_snapshots.restore_argv(
        Path("/bin/etcdutl"),
        Path("/s.db"),
        cluster="prod",
        ports=ports,
        member=1,
        data_dir=Path("/d"),
        bump_revision=backup_plan.REVISION_BUMP,
    )
    for flag in ("--name", "--initial-cluster", "--initial-cluster-token", "--initial-advertise-peer-urls"):
        started = next(a for a in etcd.argv if a.startswith(f"{flag}="))
        assert started in argv
    assert argv[:4] == ["/bin/etcdutl", "snapshot", "restore", "/s.db"]
    assert argv[-2:] == ["--bump-revision=1000000000", "--mark-compacted"]
    save = etcd_snapshots.save_argv(Path("/bin/etcdctl"), layout, ports, 2, Path("/out.db"))
    assert "--endpoints=https://127.0.0.1:2579" in save
    assert save[-3:] == ["snapshot", "save", "/out.db"]


# ----- object comparison -----------------------------------------------------------------------


def _key(name: str, resource: str = "configmaps", ns: str = "default") -> ObjectKey:
    return ObjectKey(resource, ns, name)


def test_compare_identical_listings() -> None:
    source = {_key(f"cm-{i}"): ObjectVersion(f"u{i}", str(100 + i)) for i in range(5)}
    result = backup_plan.compare_objects(source, dict(source), snapshot_revision=200)
    assert result.ok
    assert (result.equal, result.present) == (5, 5)
    assert [(r.resource, r.source, r.equal) for r in result.resources] == [("configmaps", 5, 5)]


def test_compare_classifies_every_difference() -> None:
    revision = 500
    bumped = revision + backup_plan.REVISION_BUMP
    source = {
        _key("same"): ObjectVersion("u1", "100"),
        _key("touched"): ObjectVersion("u2", "101"),
        _key("lease", "leases.coordination.k8s.io", "kube-system"): ObjectVersion("u3", "102"),
        _key("gone"): ObjectVersion("u4", "103"),
        _key("forged"): ObjectVersion("u5", "104"),
    }
    restored = {
        _key("same"): ObjectVersion("u1", "100"),
        _key("touched"): ObjectVersion("u2", str(bumped + 3)),  # status update after the restore
        _key("lease", "leases.coordination.k8s.io", "kube-system"): ObjectVersion("u9", str(bumped + 1)),
        _key("forged"): ObjectVersion("u6", "104"),  # same revision, another object: corruption
        _key("event", "events"): ObjectVersion("u7", str(bumped + 2)),  # written after the restore
        _key("stray"): ObjectVersion("u8", "90"),  # old, yet not in the source
    }
    result = backup_plan.compare_objects(source, restored, snapshot_revision=revision)
    assert not result.ok
    assert (result.equal, result.updated_after_restore, result.replaced_after_restore) == (1, 1, 1)
    assert result.created_after_restore == 1
    assert result.missing == (_key("gone"),)
    assert [m.key for m in result.mismatched] == [_key("forged")]
    assert result.unexpected == (_key("stray"),)
    summary = result.to_dict()
    assert summary["examples"]["missing"] == ["configmaps default/gone"]
    assert summary["examples"]["mismatched"] == ["configmaps default/forged: uid u5 rv 104 → uid u6 rv 104"]
    by_resource = {r["resource"]: r for r in summary["resources"]}
    assert by_resource["configmaps"]["missing"] == 1
    assert (by_resource["events"]["source"], by_resource["events"]["restored"]) == (0, 1)


def test_drill_times() -> None:
    times = backup_plan.DrillTimes(
        snapshot_at=T0,
        restore_started_at=T0 + timedelta(seconds=2),
        serving_at=T0 + timedelta(seconds=20),
        verified_at=T0 + timedelta(seconds=24),
    )
    assert times.rpo == timedelta(seconds=2)
    assert times.rto == timedelta(seconds=22)
