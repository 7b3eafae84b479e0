"""Backups and DR drills as plain data: schedules, retention, snapshot checks, object comparison (pure).

Nothing here does I/O, so every decision is tested on plain values; the
effects live in ``fleet.backups`` (snapshots, storage, restores) and
``fleet.dr_drill``. ``croniter`` parses cron expressions; the time is always
passed in.

- **Schedules.** A ``BackupSchedule`` names a cron expression, the clusters it
  covers (shell patterns) and its retention. Each cron slot is attempted at
  most once per cluster: ``due_slot`` answers the latest slot at or before
  ``now`` unless a backup was already attempted for it. Slots missed while
  Pilothouse was down collapse into one catch-up backup, never a burst.
- **Retention** (``plan_retention``) applies to one schedule's backups of one
  cluster: keep the newest ``keep_last`` and drop what is older than
  ``max_age_hours``, but never the newest completed backup; a failed attempt
  is dropped once a newer backup completed. Manual and drill backups are kept
  until someone deletes them.
- **Snapshot checks.** ``check_artifact`` compares a file's size and sha256
  with the record (truncated and corrupt files are told apart);
  ``parse_snapshot_status`` reads ``etcdutl snapshot status -w json``.
- **Object comparison** (``compare_objects``) of a source cluster as of the
  snapshot's etcd revision R with a restored one, object by object (resource,
  namespace/name → uid, resourceVersion). A restored object whose
  resourceVersion is beyond R was written by the restored control plane after
  the restore (restores bump the revision): updated in place (same uid) or
  deleted and created again (an API server's identity lease); one at or below
  R must match the source exactly.
"""

from __future__ import annotations

import fnmatch
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pilothouse import errors
from pilothouse.vocabulary import BackupStatus

#: ``etcdutl snapshot restore --bump-revision``: clients that saw newer revisions of the
#: cluster before the restore relist instead of waiting for revisions that will never come.
REVISION_BUMP = 1_000_000_000

# ----- schedules -------------------------------------------------------------------------------


class BackupSchedule(BaseModel):
    """One entry of ``Settings.backup_schedules``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    cron: str
    clusters: tuple[str, ...] = ("*",)
    keep_last: int | None = Field(default=7, ge=1)
    max_age_hours: float | None = Field(default=None, gt=0)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (e.g. '0 * * * *' for hourly)")
        return value

    def covers(self, cluster: str) -> bool:
        return any(fnmatch.fnmatchcase(cluster, pattern) for pattern in self.clusters)

    @property
    def max_age(self) -> timedelta | None:
        return timedelta(hours=self.max_age_hours) if self.max_age_hours is not None else None


def parse_schedules(entries: Sequence[Mapping[str, object]]) -> tuple[BackupSchedule, ...]:
    """Validate ``Settings.backup_schedules``; ``InvalidInput`` naming each bad entry."""
    from pydantic import ValidationError

    schedules = []
    for index, entry in enumerate(entries):
        try:
            schedules.append(BackupSchedule.model_validate(entry))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in exc.errors()
            )
            raise errors.InvalidInput(
                f"backup schedule #{index + 1} is invalid: {problems}",
                hint="fix backup_schedules in the Pilothouse config file "
                "(name, cron, clusters, keep_last, max_age_hours)",
            ) from None
    names = [s.name for s in schedules]
    if len(set(names)) != len(names):
        raise errors.InvalidInput(
            f"backup schedule names must be unique: {names}", hint="rename one of the schedules"
        )
    return tuple(schedules)


def due_slot(cron: str, now: datetime, *, last_slot: datetime | None) -> datetime | None:
    """The cron slot to back up for now, or None when the latest slot was already attempted."""
    latest: datetime = croniter(cron, now).get_prev(datetime)
    # croniter's get_prev is strictly before ``now``; a slot exactly at ``now`` is due now
    following: datetime = croniter(cron, latest).get_next(datetime)
    if following <= now:
        latest = following
    if last_slot is not None and last_slot >= latest:
        return None
    return latest


def next_slot(cron: str, now: datetime) -> datetime:
    result: datetime = croniter(cron, now).get_next(datetime)
    return result


# ----- retention -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetainedBackup:
    """What retention reads of a backup record."""

    id: str
    created_at: datetime
    status: BackupStatus


def plan_retention(
    backups: Sequence[RetainedBackup],
    *,
    keep_last: int | None,
    max_age: timedelta | None,
    now: datetime,
) -> list[str]:
    """Ids of backups to delete, oldest first (see the module docstring)."""
    ordered = sorted(backups, key=lambda b: b.created_at, reverse=True)
    completed = [b for b in ordered if b.status is BackupStatus.COMPLETED]
    newest_completed = completed[0] if completed else None
    doomed: list[RetainedBackup] = []
    for rank, backup in enumerate(completed):
        if backup is newest_completed:
            continue
        too_many = keep_last is not None and rank >= keep_last
        too_old = max_age is not None and now - backup.created_at > max_age
        if too_many or too_old:
            doomed.append(backup)
    for backup in ordered:
        if backup.status is not BackupStatus.FAILED:
            continue
        superseded = newest_completed is not None and newest_completed.created_at > backup.created_at
        too_old = max_age is not None and now - backup.created_at > max_age
        if superseded or too_old:
            doomed.append(backup)
    return [b.id for b in sorted(doomed, key=lambda b: b.created_at)]


# ----- snapshot files --------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotStatus:
    """``etcdutl snapshot status -w json``."""

    hash: int
    revision: int
    total_keys: int
    total_size: int
    version: str


def parse_snapshot_status(text: str, *, source: str) -> SnapshotStatus:
    try:
        body = json.loads(text)
        return SnapshotStatus(
            hash=int(body["hash"]),
            revision=int(body["revision"]),
            total_keys=int(body["totalKey"]),
            total_size=int(body["totalSize"]),
            version=str(body.get("version", "")),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.BinaryError(
            f"cannot read the status of the etcd snapshot {source}: {exc}: {text.strip()[:200]!r}",
            hint="check the etcdutl binary (`pilothouse binaries verify`)",
        ) from None


def check_artifact(
    backup_id: str, *, where: str, expected_size: int, expected_sha256: str, size: int, sha256: str
) -> None:
    """``ChecksumMismatch`` unless the snapshot file is the one the record describes."""
    hint = (
        "the snapshot was damaged after it was written; restore another backup "
        "(`pilothouse backup list`) or take a new one (`pilothouse backup create`)"
    )
    if size != expected_size:
        state = "truncated" if size < expected_size else "larger than recorded"
        raise errors.ChecksumMismatch(
            f"backup {backup_id} is {state}: {where} has {size} bytes, the backup record says "
            f"{expected_size}; nothing was changed",
            hint=hint,
            file=where,
        )
    if sha256 != expected_sha256:
        raise errors.ChecksumMismatch(
            f"backup {backup_id} is corrupt: the sha256 of {where} is {sha256}, the backup record "
            f"says {expected_sha256}; nothing was changed",
            hint=hint,
            file=where,
            expected=expected_sha256,
            got=sha256,
        )


# ----- object comparison -----------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class ObjectKey:
    resource: str  # "configmaps", "deployments.apps"
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.resource} {where}"


@dataclass(frozen=True)
class ObjectVersion:
    uid: str
    resource_version: str


@dataclass(frozen=True)
class Mismatch:
    key: ObjectKey
    source: ObjectVersion
    restored: ObjectVersion


@dataclass(frozen=True)
class ResourceCount:
    resource: str
    source: int
    restored: int
    equal: int
    missing: int
    mismatched: int


@dataclass(frozen=True)
class Comparison:
    source_objects: int
    restored_objects: int
    equal: int
    #: present with the same uid, rewritten by the restored control plane after the restore
    updated_after_restore: int
    #: deleted and created again by the restored control plane (e.g. API server identity leases)
    replaced_after_restore: int
    created_after_restore: int
    missing: tuple[ObjectKey, ...]
    mismatched: tuple[Mismatch, ...]
    #: in the restored cluster at or below the snapshot's revision, but not in the source
    unexpected: tuple[ObjectKey, ...]
    resources: tuple[ResourceCount, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not (self.missing or self.mismatched or self.unexpected)

    @property
    def present(self) -> int:
        return self.equal + self.updated_after_restore + self.replaced_after_restore

    def to_dict(self, *, limit: int = 50) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source_objects": self.source_objects,
            "restored_objects": self.restored_objects,
            "equal": self.equal,
            "updated_after_restore": self.updated_after_restore,
            "replaced_after_restore": self.replaced_after_restore,
            "created_after_restore": self.created_after_restore,
            "missing": len(self.missing),
            "mismatched": len(self.mismatched),
            "unexpected": len(self.unexpected),
            "examples": {
                "missing": [str(k) for k in self.missing[:limit]],
                "mismatched": [
                    f"{m.key}: uid {m.source.uid} rv {m.source.resource_version} → "
                    f"uid {m.restored.uid} rv {m.restored.resource_version}"
                    for m in self.mismatched[:limit]
                ],
                "unexpected": [str(k) for k in self.unexpected[:limit]],
            },
            "resources": [asdict(r) for r in self.resources],
        }


def _revision(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def compare_objects(
    source: Mapping[ObjectKey, ObjectVersion],
    restored: Mapping[ObjectKey, ObjectVersion],
    *,
    snapshot_revision: int,
) -> Comparison:
    """Compare a source listing as of ``snapshot_revision`` with a restored cluster's listing."""
    equal = updated = replaced = created = 0
    missing: list[ObjectKey] = []
    mismatched: list[Mismatch] = []
    unexpected: list[ObjectKey] = []
    per_equal: Counter[str] = Counter()
    per_missing: Counter[str] = Counter()
    per_mismatched: Counter[str] = Counter()
    for key, want in source.items():
        got = restored.get(key)
        if got is None:
            missing.append(key)
            per_missing[key.resource] += 1
        elif got == want:
            equal += 1
            per_equal[key.resource] += 1
        elif (_revision(got.resource_version) or 0) > snapshot_revision:
            if got.uid == want.uid:
                updated += 1
            else:
                replaced += 1
            per_equal[key.resource] += 1
        else:
            mismatched.append(Mismatch(key, want, got))
            per_mismatched[key.resource] += 1
    for key, got in restored.items():
        if key in source:
            continue
        revision = _revision(got.resource_version)
        if revision is not None and revision > snapshot_revision:
            created += 1
        else:
            unexpected.append(key)
    source_per = Counter(k.resource for k in source)
    restored_per = Counter(k.resource for k in restored)
    resources = tuple(
        ResourceCount(
            resource=r,
            source=source_per[r],
            restored=restored_per[r],
            equal=per_equal[r],
            missing=per_missing[r],
            mismatched=per_mismatched[r],
        )
        for r in sorted(set(source_per) | set(restored_per))
    )
    return Comparison(
        source_objects=len(source),
        restored_objects=len(restored),
        equal=equal,
        updated_after_restore=updated,
        replaced_after_restore=replaced,
        created_after_restore=created,
        missing=tuple(sorted(missing)),
        mismatched=tuple(sorted(mismatched, key=lambda m: m.key)),
        unexpected=tuple(sorted(unexpected)),
        resources=resources,
    )


# ----- the drill's figures ---------------------------------------------------------------------


@dataclass(frozen=True)
class DrillTimes:
    """The moments a DR drill records (UTC)."""

    snapshot_at: datetime  # the snapshot was taken (the restore point)
    restore_started_at: datetime  # the simulated disaster: recovery starts
    serving_at: datetime  # the scratch cluster's API serves (control plane up, nodes Ready)
    verified_at: datetime  # every compared object checked

    @property
    def rpo(self) -> timedelta:
        """Recovery point: how old the restore point is when recovery starts (what is lost)."""
        return self.restore_started_at - self.snapshot_at

    @property
    def rto(self) -> timedelta:
        """Recovery time: from the start of recovery until the restored cluster serves every
        object of the snapshot."""
        return self.verified_at - self.restore_started_at
